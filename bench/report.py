"""Print benchmark results as ratio tables (docs/design.md §7: ratios, never a bare absolute time).

    python bench/report.py [FILES...]        # default: every bench/results/*.json

Reads:

* pytest-benchmark JSON (``pytest bench --benchmark-json=...``): one line per
  ``group``, from its ``reference`` and ``fast`` tests (the ``path``
  parameter).  A side's time is ``extra_info["ms"]`` when both sides have
  one (``triton.testing.do_bench`` on CUDA, per-step DIP medians, the
  authors' interleaved medians; ``ms_source`` says which), else
  pytest-benchmark's median.  A group with one side only (the other skipped
  or deselected) prints that side's time and no ratio.
* row files ``[{"name", "reference_ms", "fast_ms", "ratio", "device"}, ...]``
  and the ``rows`` of ``gpu_check.py`` reports.

Other JSON files (studies such as ``precision_emulation.py``'s) are skipped.
Each line: ``ratio = reference / fast`` (> 1: the fast path is faster), the
case, both times and, where it differs from the file's, the device.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

RESULTS = Path(__file__).resolve().parent / "results"


def is_pytest_benchmark(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("benchmarks"), list)


def _path_of(bench: dict) -> Optional[str]:
    """``reference`` / ``fast``: the ``path`` parameter (or the last part of the test id)."""
    path = (bench.get("params") or {}).get("path") or (bench.get("extra_info") or {}).get("path")
    if path is None and bench.get("param"):
        path = str(bench["param"]).rsplit("-", 1)[-1]
    return path if path in ("reference", "fast") else None


def groups_of(data: dict) -> list[dict]:
    """One entry per group of a pytest-benchmark file: ``{"name", "reference_ms", "fast_ms", "ratio",
    "device", "source", "reference", "fast"}`` (a missing side: None), in the file's order."""
    sides: dict[str, dict] = {}
    for b in data["benchmarks"]:
        path = _path_of(b)
        if path is None:
            continue
        sides.setdefault(b.get("group") or b.get("name", "?"), {})[path] = b
    out = []
    for name, pair in sides.items():
        extra = {p: b.get("extra_info") or {} for p, b in pair.items()}
        use_ms = len(pair) == 2 and all("ms" in e for e in extra.values())
        ms = {p: (extra[p]["ms"] if use_ms else b["stats"]["median"] * 1e3) for p, b in pair.items()}

        def info(key):  # from either side, the reference's first
            return next((e[key] for e in (extra.get("reference", {}), extra.get("fast", {})) if e.get(key)), None)

        ref, fast = ms.get("reference"), ms.get("fast")
        out.append({
            "name": name, "reference_ms": ref, "fast_ms": fast,
            "ratio": ref / fast if ref is not None and fast else None,
            "device": info("device") or data.get("machine_info", {}).get("cpu", {}).get("brand_raw", "?"),
            "source": info("ms_source") if use_ms else "pytest-benchmark median",
            "reference": info("reference"), "fast": info("fast"),
        })
    return out


def rows_of(data) -> list[dict]:
    """Row files and gpu_check reports' ``rows``."""
    if isinstance(data, dict):
        data = data.get("rows", [])
    if not isinstance(data, list):
        return []
    return [r for r in data if isinstance(r, dict) and "name" in r and "reference_ms" in r]


def entries_of(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return groups_of(data) if is_pytest_benchmark(data) else rows_of(data)


def _ms(v) -> str:
    return f"{v:.3f} ms" if isinstance(v, (int, float)) else "n/a"


def format_entry(e: dict, file_device: str) -> str:
    ratio = e.get("ratio")
    ratio_s = f"{ratio:7.2f}x" if isinstance(ratio, (int, float)) else "    n/a"
    ref_label = f" {e['reference']}" if e.get("reference") else ""
    fast_label = f" {e['fast']}" if e.get("fast") else ""
    line = (f"  {ratio_s}  {e['name']}  (reference{ref_label} {_ms(e.get('reference_ms'))}, "
            f"fast{fast_label} {_ms(e.get('fast_ms'))}")
    if e.get("source") and e["source"] != "pytest-benchmark median":
        line += f"; {e['source']}"
    line += ")"
    if e.get("device") and e["device"] != file_device:
        line += f"  [{e['device']}]"
    return line


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files = [Path(a) for a in args] or sorted(RESULTS.glob("*.json"))
    if not files:
        print(f"no results in {RESULTS}; run `make bench` (or pytest bench --benchmark-json=...) first")
        return 1
    printed = 0
    for f in files:
        entries = entries_of(f)
        if not entries:
            continue
        device = Counter(e.get("device", "?") for e in entries).most_common(1)[0][0]
        print(f"== {f.name} ({device})")
        for e in entries:
            print(format_entry(e, device))
        printed += 1
    if not printed:
        print("no benchmark results in " + ", ".join(str(f) for f in files))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
