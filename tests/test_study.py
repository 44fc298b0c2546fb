"""The NAS-dataset study of one image (isnas_fast.study): rows, analysis, resume, CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats as st

from isnas_fast.cli import main
from isnas_fast.dip import EarlyStopping
from isnas_fast.errors import InputError
from isnas_fast.io import save_image
from isnas_fast.study import run_study
from isnas_fast.study.analysis import TOP_FRACTION
from isnas_fast.tasks import Denoise

TINY = dict(models="builtin522", num_candidates=5, iterations=12, cohort_iterations=3, cohort_size=2)
PROBES = (EarlyStopping(window=4, patience=3, method="wmv"), EarlyStopping(window=4, patience=2, method="shift"))


@pytest.fixture(scope="module")
def problem(sample):
    clean = sample[..., 32:96, 32:96].clone()
    return Denoise(25).corrupt(clean, seed=1).y, clean


@pytest.fixture(scope="module")
def study(problem, tmp_path_factory):
    noisy, clean = problem
    out = tmp_path_factory.mktemp("study") / "out"
    return run_study(noisy, "denoise", ground_truth=clean, out=out, quiet=True, group=3, probes=PROBES, **TINY), out


def _rows(out):
    return [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]


def test_rows_and_outputs(study):
    result, out = study
    rows = _rows(out)
    cands = [r for r in rows if r.get("kind") == "genotype" and r["role"] == "candidate"]
    assert len(cands) == 5 and sum(r.get("role") == "nasdip" for r in rows) == 1
    assert sum(r.get("kind") == "pick" for r in rows) == 1
    for r in cands:
        assert set(r["metrics"]) >= {"psd_db_strip_mse", "psd_strip_hist_emd", "psd_db_mse", "random"}
        assert r["best_psnr"] == max(r["psnr_curve"]) or r["best_psnr"] >= max(r["psnr_curve"])
        assert 1 <= r["best_iteration"] <= 12 and r["iterations"] == 12 and math.isfinite(r["final_psnr"])
        assert r["probes"]["discrepancy/w100/p1000/k1"]["psnr"] is None  # the preset's: its window exceeds 12 steps
        for name in ("wmv/w4/p3", "shift/w4/p2"):
            p = r["probes"][name]
            assert p["psnr"] is not None and p["gap"] == pytest.approx(r["best_passed_psnr"] - p["psnr"])
            assert p["gap"] >= -1e-9  # nothing returned beats the best the run passed through
    for name in ("study.json", "study.md"):
        assert (out / name).is_file()
    assert "## Early stopping" in (out / "study.md").read_text()


def test_analysis_agrees_with_an_independent_recomputation(study):
    result, out = study
    cands = [r for r in _rows(out) if r.get("kind") == "genotype" and r["role"] == "candidate"]
    best = np.array([r["best_psnr"] for r in cands])
    analysis = json.loads((out / "study.json").read_text())["analysis"]
    for m, entry in analysis["metrics"].items():
        values = np.array([r["metrics_mean"][m] for r in cands])
        ref = st.kendalltau(values, best)
        assert entry["best_psnr"]["kendall_tau"] == pytest.approx(ref.statistic, abs=1e-12)
        assert entry["best_psnr"]["kendall_p"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert entry["best_psnr"]["spearman_rho"] == pytest.approx(st.spearmanr(values, best).statistic, abs=1e-12)
        n_top = max(1, math.ceil(TOP_FRACTION * len(best)))
        top = set(np.argsort(-best, kind="stable")[:n_top])
        assert entry["best_psnr"]["top1"] == (int(np.argmin(values)) in top)
    pick = analysis["picks"]["psd_db_strip_mse"]
    row = next(r for r in cands if r["genotype"] == pick["genotype"])
    assert pick["best"]["psnr"] == row["best_psnr"]
    assert pick["best"]["gap_to_best"] == pytest.approx(best.max() - row["best_psnr"])
    assert pick["best"]["gap_to_median"] == pytest.approx(np.median(best) - row["best_psnr"])
    assert pick["best"]["percentile"] == pytest.approx(100 * (np.sum(best < row["best_psnr"]) + 0.5) / len(best))
    es = analysis["early_stopping"]["wmv/w4/p3"]
    trained = [r for r in _rows(out) if r.get("kind") == "genotype"]
    gaps = [r["probes"]["wmv/w4/p3"]["gap"] for r in trained]
    assert es["runs"] == 6 and es["worst_gap"] == pytest.approx(max(gaps))
    assert es["within"] == pytest.approx(np.mean(np.array(gaps) <= 0.5))


def test_rerun_resumes_and_changed_settings_are_refused(problem, study):
    noisy, clean = problem
    result, out = study
    before = (out / "rows.jsonl").read_text()
    lines = before.splitlines()
    # A kill in the middle of a write leaves a torn last line; the rerun drops it and redoes that genotype.
    (out / "rows.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    again = run_study(noisy, "denoise", ground_truth=clean, out=out, quiet=True, group=3, probes=PROBES, **TINY)
    rows = _rows(out)
    assert len(rows) == len(lines)
    assert len({r.get("genotype") for r in rows if r.get("kind") == "genotype"}) == 6
    assert again.analysis["metrics"].keys() == result.analysis["metrics"].keys()
    with pytest.raises(InputError, match="other settings"):
        run_study(noisy, "denoise", ground_truth=clean, out=out, quiet=True, probes=PROBES,
                  **dict(TINY, iterations=13))


def test_ground_truth_is_required(problem, tmp_path):
    noisy, _ = problem
    with pytest.raises(InputError, match="ground truth"):
        run_study(noisy, "denoise", ground_truth=None, out=tmp_path / "s")


def test_cli(problem, tmp_path, capsys):
    noisy, clean = problem
    save_image(noisy, tmp_path / "noisy.png")
    save_image(clean, tmp_path / "clean.png")
    argv = ["study", str(tmp_path / "noisy.png"), "--task", "denoise", "--ground-truth", str(tmp_path / "clean.png"),
            "--out", str(tmp_path / "st"), "--models", "random:3", "--iterations", "6", "--cohort-iterations", "2",
            "--cohort-size", "2", "-q", "--json", "-"]
    assert main(argv) == 0
    analysis = json.loads(capsys.readouterr().out)
    assert analysis["n"] == 3 and "psd_db_strip_mse" in analysis["picks"]
    with pytest.raises(SystemExit) as no_ground_truth:  # a required option: argparse's usage error
        main(["study", str(tmp_path / "noisy.png"), "--task", "denoise", "--out", str(tmp_path / "x")])
    assert no_ground_truth.value.code == 2 and "--ground-truth" in capsys.readouterr().err
    assert main(["study", str(tmp_path / "noisy.png"), "--task", "denoise", "--ground-truth",
                 str(tmp_path / "clean.png"), "--out", str(tmp_path / "nope" / "x"), "-q"]) == 2
    assert "output folder does not exist" in capsys.readouterr().err
