"""The search as a user drives it from the command line: several metrics, the final picks."""
from __future__ import annotations

import json

from isnas_fast.cli import main
from isnas_fast.io import save_image

TINY = ["--candidates", "4", "--cohort-size", "2", "--cohort-iterations", "3", "--iterations", "3",
        "--width", "16"]


def test_one_cohort_table_per_metric(tmp_path, sample, capsys):
    clean = tmp_path / "clean.png"
    save_image(sample[..., :64, :64], clean)
    assert main(["corrupt", str(clean), "--task", "denoise", "-o", str(tmp_path / "noisy.png"), "-q"]) == 0
    capsys.readouterr()
    metrics = "psd_db_strip_mse,psd_strip_hist_emd,random"
    rc = main(["restore", str(tmp_path / "noisy.png"), "--task", "denoise", "-o", str(tmp_path / "r.png"),
               "--metric", metrics, "--final", "all", "--ground-truth", str(clean),
               "--json", str(tmp_path / "r.json"), *TINY])
    assert rc == 0
    err = capsys.readouterr().err
    for m in metrics.split(","):
        assert err.count(f"cohort of {m} (pick: ") == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["metrics"]) == metrics.split(",")
    for m, entry in report["metrics"].items():
        # the two best-scoring candidates and NAS-DIP's genotype (the quick preset's validated selection)
        assert len(entry["cohort"]) == 3 and sum(c["selected"] for c in entry["cohort"]) == 1
        assert entry["pick"] == next(c["genotype"] for c in entry["cohort"] if c["selected"])
        assert entry["final"]["psnr"] > 0  # --final all: every pick restored, with ground truth
    assert report["genotype"] == report["metrics"]["psd_db_strip_mse"]["pick"]
    assert report["search"]["stage_sizes"]["cohort"]["output"] == [64, 64]


def test_cohort_table_says_why_nothing_was_trained(tmp_path, sample, capsys):
    """Super-resolution has no pixel to hold out: the validated selection ranks nothing, the
    table says so and shows untrained members as "-", never nan."""
    clean = tmp_path / "clean.png"
    save_image(sample[..., :64, :64], clean)
    assert main(["corrupt", str(clean), "--task", "sr", "-o", str(tmp_path / "low.png"), "-q"]) == 0
    capsys.readouterr()
    assert main(["restore", str(tmp_path / "low.png"), "--task", "sr", "-o", str(tmp_path / "r.png"), *TINY]) == 0
    err = capsys.readouterr().err
    assert "cohort of psd_db_strip_mse (pick: nasdip-sr); not trained: no pixel of the sr task can be held out" in err
    assert "held-out PSNR" in err and "nan" not in err
    rows = [line for line in err.splitlines() if line.startswith("  ") and line.rstrip().endswith(("-", "*"))]
    assert len(rows) == 3 and sum(line.endswith("*") for line in rows) == 1
