"""``isnas-fast suite`` / ``run_suite`` end to end on tiny images: rows, files,
tables (against SciPy), re-run commands, batching, resume after SIGKILL, and
bad input.  Every run is 64 px, width 16, a few steps, one torch thread per job."""
from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from isnas_fast.cli import main
from isnas_fast.errors import InputError
from isnas_fast.io import load_image, save_image
from isnas_fast.quality import psnr
from isnas_fast.search import candidate_list
from isnas_fast.suite import ORACLE_LABEL, LocalExecutor, run_suite
from isnas_fast.suite.executors import cpu_cores
from isnas_fast.suite.jobs import parse_methods, parse_seeds
from isnas_fast.suite.store import ResultStore

#: The search knobs of every run here (API keywords and the same as CLI options).
TINY = dict(width=16, iterations=3, cohort_iterations=2, num_candidates=3, cohort_size=2)
TINY_ARGS = ["--width", "16", "--iterations", "3", "--cohort-iterations", "2", "--candidates", "3",
             "--cohort-size", "2", "--threads", "1", "-q"]
ALL = "isnas,nasdip,dip-skip,random,cohort-best"


def _images(folder: Path, sample: torch.Tensor, n: int = 2) -> Path:
    """``n`` clean crops of the sample (the second 70x100: cropped to 64x96), and an unreadable file."""
    folder.mkdir()
    crops = [sample[..., :64, :64], sample[..., 20:90, 10:110], sample[..., 64:, 64:]]
    for i in range(n):
        save_image(crops[i], folder / f"img{i}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def suite(tmp_path_factory, sample):
    """One denoising suite: two images (one unreadable file beside them), every method, two seeds."""
    root = tmp_path_factory.mktemp("suite")
    images = _images(root / "images", sample)
    with pytest.warns(UserWarning, match="skipping image .*broken.png"):
        result = run_suite(images, "denoise", out=root / "out", methods=ALL, seeds=2, sigma=25,
                           executor=LocalExecutor(threads=1), quiet=True, **TINY)
    return result


def test_rows_and_files(suite):
    folder = suite.folder
    rows = _rows(folder)
    assert suite.complete and len(rows) == len(suite.jobs) == 2 * 5 * 2
    assert len({r["job"] for r in rows}) == len(rows)
    for r in rows:
        for key in ("psnr", "ssim", "genotype", "timings_s", "iterations", "device", "versions", "rerun",
                    "early_stopping", "restored"):
            assert key in r, key
        saved, clean = load_image(folder / r["restored"]), load_image(folder / r["ground_truth"])
        assert saved.shape == clean.shape and clean.shape[-2:] in ((64, 64), (70, 100))  # sizes kept
        # the PSNR recomputed from the saved PNG is the row's, and 8-bit rounding moves it little
        assert float(psnr(saved, clean)[0]) == pytest.approx(r["psnr_png"], abs=1e-9)
        assert abs(r["psnr_png"] - r["psnr"]) < 0.05
        assert r["iterations"] == {"requested": 3, "run": 3} and r["timings_s"]["total"] > 0
        assert (folder / r["input"]).is_file() and (folder / r["curve"]).is_file()
    by = {(r["image"], r["method"], r["seed"]): r for r in rows}
    for (image, method, seed), r in by.items():
        if method == "cohort-best":  # the oracle: its pick is the best member, and isnas's pick is a member
            assert r["oracle"] and ORACLE_LABEL in r["label"]
            assert r["psnr"] == max(m["psnr"] for m in r["search"]["cohort"])
            assert r["psnr"] >= by[(image, "isnas", seed)]["psnr"]
        if method == "random":
            pool, _ = candidate_list("builtin", 3, seed)
            assert r["genotype"] == str(pool[r["pool"]["index"]]) and r["pool"]["size"] == 3
        if method in ("nasdip", "dip-skip"):
            assert r["in_channels"] == 32 and r["width"] == (128 if method == "dip-skip" else 16)
    # each (image, seed) has its own corruption; the inputs are files a rerun reads
    assert len({r["corruption_seed"] for r in rows}) == 4


def test_summary_statistics_match_scipy(suite):
    import csv

    st = pytest.importorskip("scipy.stats")
    rows = _rows(suite.folder)
    table = {r["method"]: r for r in csv.DictReader((suite.folder / "summary.csv").open())}
    for method, t in table.items():
        values = [r["psnr"] for r in rows if r["method"] == method]
        lo, hi = st.t.interval(0.95, len(values) - 1, loc=sum(values) / len(values), scale=st.sem(values))
        assert int(t["n"]) == len(values) == 4
        assert float(t["psnr_ci95_low"]) == pytest.approx(lo, rel=1e-6)
        assert float(t["psnr_ci95_high"]) == pytest.approx(hi, rel=1e-6)
    paired = {r["method"]: r for r in csv.DictReader((suite.folder / "paired.csv").open())}
    assert set(paired) == {"nasdip", "dip-skip", "random", "cohort-best"}
    ours = {(r["image"], r["seed"]): r["psnr"] for r in rows if r["method"] == "isnas"}
    for method, p in paired.items():
        diffs = [ours[(r["image"], r["seed"])] - r["psnr"] for r in rows if r["method"] == method]
        mean = sum(diffs) / len(diffs)
        assert float(p["diff_mean"]) == pytest.approx(mean, rel=1e-6, abs=1e-9)
        if st.sem(diffs) > 0:
            lo, hi = st.t.interval(0.95, len(diffs) - 1, loc=mean, scale=st.sem(diffs))
            assert float(p["diff_ci95_low"]) == pytest.approx(lo, rel=1e-6)
            assert float(p["diff_ci95_high"]) == pytest.approx(hi, rel=1e-6)
        assert int(p["wins"]) == sum(d > 0 for d in diffs) and int(p["losses"]) == sum(d < 0 for d in diffs)
    md = (suite.folder / "summary.md").read_text()
    assert "the discrepancy principle (window 100, kappa 1)" in md and ORACLE_LABEL in md and "saved images" in md
    assert "## Skipped images" in md and "broken.png" in md
    per_image = list(csv.DictReader((suite.folder / "per_image.csv").open()))
    assert len(per_image) == 2 * 5


def test_plots_written(suite):
    pytest.importorskip("matplotlib")
    for name in ("psnr_per_image.png", "curves-img0.png", "grid-img1.png"):
        assert (suite.folder / "plots" / name).stat().st_size > 1000


def test_rerun_command_reproduces_its_row(suite, monkeypatch, capsys):
    rows = {r["job"]: r for r in _rows(suite.folder)}
    monkeypatch.chdir(suite.folder)
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the command's OMP_NUM_THREADS=1
    try:
        for key in ("img1:isnas:1", "img0:random:0"):
            words = shlex.split(rows[key]["rerun"])
            assert words[0] == "OMP_NUM_THREADS=1" and words[1:3] == ["isnas-fast", "restore"]
            capsys.readouterr()
            assert main(words[2:] + ["--json", "-", "-q"]) == 0
            report = json.loads(capsys.readouterr().out)
            # the report names what was restored as the row's architecture does: a genotype's text,
            # or a baseline's name (the validated search keeping NAS-DIP restores it by name)
            assert report["psnr"] == round(rows[key]["psnr"], 4) and report["genotype"] == rows[key]["architecture"]
    finally:
        torch.set_num_threads(n)


@pytest.mark.skipif(cpu_cores() < 2, reason="two worker processes need two cores")
def test_worker_processes_give_the_in_process_rows(suite, tmp_path):
    with pytest.warns(UserWarning, match="skipping image"):
        res = run_suite(suite.folder.parent / "images", "denoise", out=tmp_path / "out", methods="nasdip,random",
                        seeds=[1], executor=LocalExecutor(workers=2, threads=1), quiet=True, plot=False, **TINY)
    before = {r["job"]: r for r in _rows(suite.folder)}
    assert len(res.rows) == 4
    for r in res.rows:
        assert r["executor"]["workers"] == 2
        assert (r["psnr"], r["ssim"], r["genotype"]) == (before[r["job"]]["psnr"], before[r["job"]]["ssim"],
                                                         before[r["job"]]["genotype"])


def test_same_command_again_runs_nothing(suite):
    before = _rows(suite.folder)
    with pytest.warns(UserWarning, match="skipping image"):
        again = run_suite(suite.folder.parent / "images", "denoise", out=suite.folder, methods="nasdip",
                          seeds=[0, 1], executor=LocalExecutor(threads=1), quiet=True, plot=False, **TINY)
    assert again.ran == 0 and again.complete and _rows(suite.folder) == before


@pytest.mark.parametrize("task,params", [("inpaint", {"p": 50}), ("sr", {"factor": 2})])
def test_inpainting_and_super_resolution(tmp_path, sample, task, params):
    images = _images(tmp_path / "images", sample, n=1)
    with pytest.warns(UserWarning):
        result = run_suite(images, task, out=tmp_path / "out", methods="nasdip,random", seeds=1,
                           executor=LocalExecutor(threads=1), quiet=True, plot=False, **params, **TINY)
    rows = _rows(result.folder)
    assert len(rows) == 2
    for r in rows:
        clean = load_image(result.folder / r["ground_truth"])
        assert load_image(result.folder / r["restored"]).shape == clean.shape
        observed = load_image(result.folder / r["input"])
        if task == "inpaint":
            mask = load_image(result.folder / r["mask"])
            assert set(mask.unique().tolist()) == {0.0, 1.0} and "--mask" in r["rerun"]
            assert torch.equal(observed * mask, observed)
        else:
            assert observed.shape[-1] * 2 == clean.shape[-1] and r["psnr_y_channel"]
            assert "--factor 2" in r["rerun"]


def test_batch_rows_equal_one_by_one_rows(tmp_path, sample):
    """The full-size runs of several jobs (the search's pick, fixed architectures) trained together give the rows
    the jobs give one by one with one torch thread (members sharded over the
    threads, one intra-op thread each)."""
    images = _images(tmp_path / "images", sample)
    kw = dict(methods="isnas,nasdip,dip-skip,random", seeds=2, quiet=True, plot=False, **TINY)
    with pytest.warns(UserWarning):
        alone = run_suite(images, "denoise", out=tmp_path / "alone", executor=LocalExecutor(threads=1), **kw)
    with pytest.warns(UserWarning):
        together = run_suite(images, "denoise", out=tmp_path / "together",
                             executor=LocalExecutor(threads=min(2, cpu_cores()), batch=5), **kw)
    a = {r["job"]: r for r in alone.rows}
    b = {r["job"]: r for r in together.rows}
    assert a.keys() == b.keys()
    # trained_together is the size of the group a run trained in: runs whose step options differ
    # (the validated search's stop start) train in groups of their own within a batch of 5
    sizes = Counter(r["trained_together"] for r in b.values())
    assert 2 <= max(sizes) <= 5 and all(count % n == 0 for n, count in sizes.items()), sizes
    for k in a:
        assert (b[k]["psnr"], b[k]["ssim"], b[k]["genotype"]) == (a[k]["psnr"], a[k]["ssim"], a[k]["genotype"]), k


def _suite_command(images: Path, out: Path) -> list[str]:
    # --blend and --anchor named: the killed program (the preset as shipped) and this process (the
    # preset without its blend and anchor, conftest.py) then run the same settings
    return ["suite", str(images), "--task", "denoise", "--out", str(out), "--methods", "nasdip,random",
            "--seeds", "2", "--no-plots", "--blend", "none", "--anchor", "none", *TINY_ARGS]


def test_resume_after_sigkill(tmp_path, sample):
    images = _images(tmp_path / "images", sample, n=3)
    out = tmp_path / "killed"
    code = "import sys; from isnas_fast.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, *_suite_command(images, out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    try:
        while not (results.exists() and results.read_bytes().count(b"\n") >= 1):
            assert proc.poll() is None, "the suite ended before it could be killed"
            assert time.monotonic() < deadline, "no row within 120 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    lines_at_kill = results.read_bytes().count(b"\n")
    assert 1 <= lines_at_kill < 12
    with results.open("ab") as fh:  # what a kill in the middle of a row's write leaves
        fh.write(b'{"job":"img2:nasdip:1","image":"im')
    assert main(_suite_command(images, out)) == 0
    assert main(_suite_command(images, tmp_path / "clean")) == 0
    resumed, clean = _rows(out), {r["job"]: r for r in _rows(tmp_path / "clean")}
    assert len(resumed) == 12 and {r["job"] for r in resumed} == set(clean)
    for r in resumed:
        assert (r["psnr"], r["ssim"], r["genotype"]) == (clean[r["job"]]["psnr"], clean[r["job"]]["ssim"],
                                                         clean[r["job"]]["genotype"])
    assert not list(out.rglob("*.tmp"))  # no half-written file left behind


def test_store_drops_a_torn_last_line(tmp_path):
    store = ResultStore(tmp_path)
    store.append({"job": "a:nasdip:0", "psnr": 20.0})
    store.append({"job": "b:nasdip:0", "psnr": float("nan")})
    with store.results.open("ab") as fh:
        fh.write(b'{"job": "c:nas')
    rows = store.rows()
    assert list(rows) == ["a:nasdip:0", "b:nasdip:0"] and rows["b:nasdip:0"]["psnr"] is None
    store.append({"job": "c:nasdip:0", "psnr": 21.0})
    assert [json.loads(line)["job"] for line in store.results.read_text().splitlines()] == \
        ["a:nasdip:0", "b:nasdip:0", "c:nasdip:0"]
    with store.locked(), pytest.raises(InputError, match="another suite run"):
        with ResultStore(tmp_path).locked():
            pass


def test_parse_methods_and_seeds():
    assert parse_methods("isnas, nasdip,isnas") == ("isnas", "nasdip")
    assert parse_seeds(3) == (0, 1, 2) and parse_seeds("2", first=5) == (5, 6) and parse_seeds("4,1,") == (4, 1)
    for bad in ("0", "a,b", [-1]):
        with pytest.raises(InputError):
            parse_seeds(bad)
    with pytest.raises(InputError, match="unknown method.*foo"):
        parse_methods("isnas,foo")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("case,match", [
    ("empty", "no images"),
    ("method", "unknown method"),
    ("mask", "--mask does not apply"),
    ("parent", "output folder does not exist"),
    ("unreadable", "none of the 1 image"),
    ("workers", "exceed the"),
])
def test_bad_input_one_line_exit_2(tmp_path, sample, capsys, case, match):
    images = tmp_path / "images"
    images.mkdir()
    save_image(sample[..., :64, :64], images / "a.png")
    args = {"empty": ["suite", str(tmp_path), "--out", str(tmp_path / "o")],
            "method": ["suite", str(images), "--out", str(tmp_path / "o"), "--methods", "isnas,foo"],
            "mask": ["suite", str(images), "--task", "inpaint", "--mask", str(images / "a.png"), "--out",
                     str(tmp_path / "o")],
            "parent": ["suite", str(images), "--out", str(tmp_path / "missing" / "o")],
            "unreadable": ["suite", str(tmp_path / "bad.png"), "--out", str(tmp_path / "o")],
            "workers": ["suite", str(images), "--out", str(tmp_path / "o"), "--workers", str(cpu_cores() + 1),
                        "--threads", "1"]}[case]
    if case == "empty":
        args[1] = str(tmp_path / "nothing")
        (tmp_path / "nothing").mkdir()
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    if "--task" not in args:
        args += ["--task", "denoise"]
    capsys.readouterr()
    if case == "workers" and torch.cuda.is_available():
        pytest.skip("GPU workers may outnumber the cores")
    assert main(args) == 2
    assert match in _error_line(capsys)
    assert not (tmp_path / "o").exists()  # nothing written for a command that cannot run


def test_folder_of_another_suite_is_refused(suite, capsys):
    wider = ["32" if before == "--width" else a for before, a in zip([""] + TINY_ARGS, TINY_ARGS)]
    assert main(["suite", str(suite.folder.parent / "images"), "--task", "denoise", "--out", str(suite.folder),
                 "--methods", "nasdip", *wider]) == 2
    line = _error_line(capsys)
    assert "holds the results of a suite with other settings" in line and "--width: 16 -> 32" in line
    assert main(["suite", str(suite.folder.parent / "images"), "--task", "sr", "--out", str(suite.folder),
                 *TINY_ARGS]) == 2
    assert "task: denoise -> sr" in _error_line(capsys)
    assert len(_rows(suite.folder)) == 20  # nothing lost


def test_changed_image_under_the_same_name_is_refused(tmp_path, sample):
    images = tmp_path / "images"
    images.mkdir()
    save_image(sample[..., :64, :64], images / "a.png")
    kw = dict(methods="nasdip", seeds=1, executor=LocalExecutor(threads=1), quiet=True, plot=False, **TINY)
    run_suite(images, "denoise", out=tmp_path / "out", **kw)
    save_image(sample[..., 64:, 64:], images / "a.png")
    with pytest.raises(InputError, match="image a .* differs"):
        run_suite(images, "denoise", out=tmp_path / "out", **kw)
    assert math.isfinite(_rows(tmp_path / "out")[0]["psnr"])


def test_a_suite_written_before_a_knob_existed_resumes_at_its_default():
    from dataclasses import replace

    from isnas_fast.search import preset
    from isnas_fast.suite.jobs import record_differences, settings_record
    from isnas_fast.tasks import Denoise

    new = settings_record(Denoise(25), "quick", preset("quick", width=16))
    old = json.loads(json.dumps(new))
    del old["search"]["restarts"]  # a folder written before --restarts: it ran one start
    assert record_differences(old, new) == []
    three = settings_record(Denoise(25), "quick", preset("quick", width=16, restarts=3))
    assert record_differences(old, three) == ["--restarts: 1 -> 3"]
    del old["search"]["by_size"]  # its field default (off) is not the quick preset's (on): a difference
    assert record_differences(old, new) == ["--by-size: False -> True"]
    # a detector's parameter added since (the stop start's condition): taken at its default, so it resumes
    old = json.loads(json.dumps(new))
    del old["search"]["early_stopping"]["start_met_by"]
    assert record_differences(old, new) == []
    es = preset("quick").early_stopping
    later = settings_record(Denoise(25), "quick",
                            preset("quick", width=16, early_stopping=replace(es, start_met_by=100)))
    assert record_differences(old, later) == ["start_met_by: 0 -> 100"]
