"""Print every benchmark result in bench/results/ as ratio rows (DESIGN §7).

Reads the JSON row files the bench_*.py scripts write and the ``rows`` of
gpu_check reports; prints ``ratio = reference_ms / fast_ms`` (> 1: the fast
path is faster) with the device each was measured on.

    python bench/report.py [FILES...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def rows_of(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        data = data.get("rows", [])
    return [r for r in data if isinstance(r, dict) and "name" in r]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files = [Path(a) for a in args] or sorted(RESULTS.glob("*.json"))
    if not files:
        print(f"no results in {RESULTS}; run a bench/bench_*.py script first")
        return 1
    for f in files:
        rows = rows_of(f)
        if not rows:
            continue
        print(f"== {f.name} ({rows[0].get('device', '?')})")
        for r in rows:
            ratio = r.get("ratio")
            ratio_s = f"{ratio:7.2f}x" if isinstance(ratio, (int, float)) else "    n/a"
            print(f"  {ratio_s}  {r['name']}  (reference {r['reference_ms']:.3f} ms, fast {r['fast_ms']:.3f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
