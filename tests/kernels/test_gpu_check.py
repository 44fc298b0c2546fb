"""bench/gpu_check.py stays importable, refuses to run without CUDA, and its sections run
(CPU dry run under the interpreter; the correctness sections run tests/gpu's CPU rehearsal)."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"
interpreter_only = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                      reason="the dry run is a CPU interpreter rehearsal")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_check", None)


def _report(tmp_path) -> dict:
    (path,) = tmp_path.glob("gpu_check-*.json")
    return json.loads(path.read_text())


@interpreter_only
def test_dry_run_correctness_sections(gpu_check, tmp_path):
    only = "env,correctness_kernels,correctness_dip"
    assert gpu_check.main(["--dry-run", "--only", only, "--out-dir", str(tmp_path)]) == 0
    report = _report(tmp_path)
    assert report["dry_run"] and report["failed"] == []
    assert set(report["sections"]) == set(only.split(","))
    kernels = report["sections"]["correctness_kernels"]
    outcome = {t["test"].rsplit("::", 1)[-1]: t["outcome"] for t in kernels["tests"]}
    assert outcome["test_histogram_counts_exact"] == "passed"
    assert outcome["test_spectral_scores_match_references[6x3x40x56]"] == "passed"
    assert sum(o == "passed" and n.startswith("test_upsample_conv_matches_float64") for n, o in outcome.items()) >= 4
    assert kernels["failed"] == [] and kernels["skip_reasons"] == ["the CPU rehearsal runs the smallest case only"]
    dip = {t["test"].rsplit("::", 1)[-1]: t for t in report["sections"]["correctness_dip"]["tests"]}
    assert dip["test_bf16_dip_runs_and_starts_where_fp32_does[eager]"]["outcome"] == "passed"
    graph = dip["test_graph_cohort_first_losses_match_solo_runs"]
    assert graph["outcome"] == "skipped" and "needs a GPU" in graph["message"]


def test_refuses_without_cuda(gpu_check, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out-dir", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    assert gpu_check.main(["--dry-run", "--only", "nope", "--out-dir", str(tmp_path)]) == 2
    assert list(gpu_check.SECTIONS)[0] == "env"


def test_correctness_sections_report_a_missing_test_file(gpu_check, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "TESTS", tmp_path)
    ctx = gpu_check.Context(device=torch.device("cpu"), dry_run=True, args=None)
    result = gpu_check.section_correctness_kernels(ctx)
    assert not result["ok"] and "not found" in result["error"]


@interpreter_only
def test_dry_run_dip_sections(gpu_check, tmp_path):
    only = "dip_full,dip_cohort,dip_variants,dip_precision"
    assert gpu_check.main(["--dry-run", "--only", only, "--out-dir", str(tmp_path)]) == 0
    report = _report(tmp_path)
    assert report["failed"] == [] and set(report["sections"]) == set(only.split(","))
    full = report["sections"]["dip_full"]
    runs = full["runs"]
    assert runs["eager_fp32"]["psnr"] > 0 and runs["compiled_bf16"]["psnr"] > 0
    assert runs["compiled_fp32"]["psnr"] > 0 and "compiled_bf16_minus_compiled_fp32_db" in full
    assert "skipped" in runs["graph_bf16"]  # CUDA graphs need a GPU
    variants = report["sections"]["dip_variants"]["runs"]
    assert variants["compiled_bf16_warm_cache"]["psnr"] > 0 and "skipped" in variants["graph_fp32"]
    assert variants["compiled_tf32"]["options"]["precision"] == "tf32" and variants["eager_tf32"]["psnr"] > 0
    assert runs["eager_fp32"]["options"]["precision"] == "fp32"  # float32 math, not the CUDA default tf32
    precision = report["sections"]["dip_precision"]["paths"]
    assert "skipped" in precision["graph"]
    diffs = precision["compiled"]["differences_db"]
    assert set(diffs) == {"bf16_minus_fp32", "tf32_minus_fp32", "bf16_minus_tf32", "fp32_again_minus_fp32"}
    assert all(len(d) == 2 for d in diffs.values())  # the dry run's two seeds
    assert "dip_precision" in gpu_check.ON_REQUEST  # too long for the default run
    names = [r["name"] for r in report["rows"]]
    assert any(n.startswith("dip_step/") for n in names) and any(n.startswith("cohort/") for n in names)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="the dry run is a CPU interpreter rehearsal")
def test_dry_run_search_e2e(gpu_check, tmp_path):
    assert "search_e2e" in gpu_check.ON_REQUEST
    assert gpu_check.main(["--dry-run", "--only", "env,search_e2e", "--out-dir", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("gpu_check-*.json")
    runs = json.loads(path.read_text())["sections"]["search_e2e"]["runs"]
    assert set(runs) == {"paper_cold", "paper_warm", "quick", "nasdip_paper_budget"}
    assert all(r["psnr"] > 0 and "score" in r["timings_s"] for k, r in runs.items() if k != "nasdip_paper_budget")
    assert runs["nasdip_paper_budget"]["genotype"] == "158,1111101111001110001100001"


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="the dry run is a CPU interpreter rehearsal")
def test_dry_run_suite_throughput(gpu_check, tmp_path):
    assert gpu_check.main(["--dry-run", "--only", "env,suite_throughput", "--out-dir", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("gpu_check-*.json")
    sec = json.loads(path.read_text())["sections"]["suite_throughput"]
    assert sec["ok"] and sec["speedup_together"] > 0 and sec["fast_jobs_per_hour"] > 0
