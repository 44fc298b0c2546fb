"""bench/report.py on hand-made result files (no timing)."""
from __future__ import annotations

import json

import report


def _bench(group, path, median_s, **extra):
    return {"group": group, "name": f"test_x[{path}]", "param": f"case-{path}", "params": {"path": path},
            "extra_info": {"device": "cpu (x86_64, 2 threads)", **extra},
            "stats": {"median": median_s, "min": median_s, "rounds": 3}}


def test_pytest_benchmark_groups_become_ratios(tmp_path, capsys):
    data = {"machine_info": {}, "benchmarks": [
        _bench("spectral/strip/B4xC3x64x64", "reference", 0.030),
        _bench("spectral/strip/B4xC3x64x64", "fast", 0.010),
        # extra_info["ms"] on both sides wins over pytest-benchmark's median
        _bench("authors/fwd256/158/w128", "reference", 1.0, ms=900.0, ms_source="interleaved median",
               reference="authors' code", fast="isnas_fast"),
        _bench("authors/fwd256/158/w128", "fast", 1.0, ms=600.0, ms_source="interleaved median"),
        # on one side only: pytest-benchmark's medians
        _bench("cohort/k4/w32/64x64", "reference", 0.2, ms=50.0),
        _bench("cohort/k4/w32/64x64", "fast", 0.1),
        _bench("dip_step/nasdip-denoise/w32/64x64", "reference", 2.0),  # fast skipped
        {"group": "other", "name": "test_unrelated", "params": {}, "stats": {"median": 1.0}},
    ]}
    (tmp_path / "bench-cpu.json").write_text(json.dumps(data))
    (tmp_path / "study.json").write_text(json.dumps({"device": "cpu", "runs": []}))
    (tmp_path / "rows-cpu.json").write_text(json.dumps([{"name": "export/x", "reference_ms": 8.0, "fast_ms": 2.0,
                                                           "ratio": 4.0, "device": "cpu"}]))
    assert report.main([str(p) for p in sorted(tmp_path.iterdir())]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = {ln.split()[1]: ln for ln in lines if not ln.startswith("==")}
    assert "3.00x" in line["spectral/strip/B4xC3x64x64"] and "30.000 ms" in line["spectral/strip/B4xC3x64x64"]
    assert "1.50x" in line["authors/fwd256/158/w128"] and "authors' code 900.000 ms" in line["authors/fwd256/158/w128"]
    assert "interleaved median" in line["authors/fwd256/158/w128"]
    assert "2.00x" in line["cohort/k4/w32/64x64"] and "200.000 ms" in line["cohort/k4/w32/64x64"]
    assert "n/a" in line["dip_step/nasdip-denoise/w32/64x64"] and "2000.000 ms" in line["dip_step/nasdip-denoise/w32/64x64"]
    assert "4.00x" in line["export/x"]
    assert "other" not in line and not any("study.json" in ln for ln in lines)
    assert "== bench-cpu.json (cpu (x86_64, 2 threads))" in lines


def test_no_results(tmp_path, capsys):
    (tmp_path / "study.json").write_text(json.dumps({"runs": []}))
    assert report.main([str(tmp_path / "study.json")]) == 1
    assert "no benchmark results" in capsys.readouterr().out
