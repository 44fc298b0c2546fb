"""The quick preset's final run sized by the image: a large denoise gets a wider network and a
longer budget (``SearchSettings.for_image``, ``LARGE_DENOISE``), in the API, the CLI, the report and
the suite; what the user gives wins, and other presets and tasks are left alone."""
from __future__ import annotations

import pytest
import torch

import isnas_fast
from isnas_fast.errors import InputError
from isnas_fast.search import LARGE_DENOISE, TASK_ITERATIONS, preset
from isnas_fast.suite.methods import JobInput, train_together
from isnas_fast.suite.jobs import Job
from isnas_fast.tasks import Denoise

SIDE = 192  # LARGE_DENOISE's threshold: 192 x 192 px


def test_the_rule_starts_at_its_threshold():
    assert LARGE_DENOISE.pixels == SIDE * SIDE and LARGE_DENOISE.size_text == "192x192 px"
    q = preset("quick")
    for size in [(64, 64), (128, 128), (160, 224), (SIDE, SIDE - 32)]:
        small = q.for_image("denoise", size)
        assert small is q and small.network_width == 16
        assert small.final_run("denoise").dip.iterations == TASK_ITERATIONS["denoise"]
    for size in [(SIDE, SIDE), (256, 256), (160, 256), (2048, 1536)]:
        big = q.for_image("denoise", size)
        assert (big.network_width, big.final_run("denoise").dip.iterations) == (32, 2400)
        assert big.width == 16  # the search's candidates keep the preset's width
        assert big.for_image("denoise", size) == big  # idempotent


def test_what_the_user_gives_wins_and_other_presets_and_tasks_are_left_alone():
    big = (256, 256)
    assert preset("quick", final_width=16).for_image("denoise", big).network_width == 16
    assert preset("quick", final_iterations=300).for_image("denoise", big).final_iterations == 300
    assert preset("quick", width=64).for_image("denoise", big).network_width == 64  # never narrower
    off = preset("quick", by_size=False)
    assert off.for_image("denoise", big) is off and off.network_width == 16
    paper = preset("paper")
    assert paper.for_image("denoise", big) is paper and paper.network_width == 128
    for task in ("inpaint", "sr"):
        assert preset("quick").for_image(task, big).network_width == 16
    with pytest.raises(InputError, match="final width must be a positive multiple of 16"):
        preset("quick", final_width=24)


def _noisy(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = 0.3 + 0.4 * torch.rand((1, 3, h, w), generator=g)
    return Denoise(25).corrupt(clean, seed=seed).y


def test_restore_sizes_the_final_run_and_reports_it():
    noisy = _noisy(SIDE, SIDE)
    logs: list[str] = []
    r = isnas_fast.restore(noisy, "denoise", sigma=25, arch="nasdip-denoise", iterations=2, quiet=True,
                           log=logs.append)
    assert any("width 32" in m and "192x192" in m for m in logs), logs
    assert r.run.width == 32 and r.report()["width"] == 32
    narrow = isnas_fast.restore(noisy, "denoise", sigma=25, arch="nasdip-denoise", iterations=2, final_width=16,
                                quiet=True)
    assert narrow.run.width == 16
    r = isnas_fast.restore(noisy[..., :SIDE - 32, :], "denoise", sigma=25, arch="nasdip-denoise", iterations=2,
                           quiet=True)
    assert r.run.width == 16
    tiny = isnas_fast.restore(_noisy(64, 64), "denoise", sigma=25, arch="nasdip-denoise", iterations=2, quiet=True)
    assert tiny.report()["iterations"]["requested"] == 2


def test_the_searched_restore_is_sized_too():
    r = isnas_fast.restore(_noisy(SIDE, SIDE), "denoise", sigma=25, candidates=2, cohort_size=1,
                           cohort_iterations=2, iterations=2, quiet=True)
    assert r.run.width == 32 and r.settings.width == 16


def test_a_study_refuses_a_final_width(tmp_path):
    from isnas_fast.study import run_study
    noisy = _noisy(64, 64)
    with pytest.raises(InputError, match="final_width"):
        run_study(noisy, "denoise", sigma=25, ground_truth=noisy, out=tmp_path / "s", final_width=32)


def test_suite_runs_trained_together_are_sized_per_image():
    small, big = _noisy(64, 64), _noisy(SIDE, SIDE, seed=1)
    runs = []
    for name, y in (("small", small), ("big", big)):
        job = Job(image=name, method="nasdip", seed=0)
        inp = JobInput(job=job, task="denoise", task_params={"sigma": 25.0}, preset="quick",
                       options={"iterations": None, "cohort_iterations": 2}, observed=y, mask=None, clean=y)
        runs.append((inp, "nasdip-denoise"))
    # the final budget is the preset's, so give the runs a short one by the settings instead
    runs = [(JobInput(**{**inp.__dict__, "options": {"iterations": 2}}), a) for inp, a in runs]
    records = train_together(runs)
    assert [r.width for r in records] == [16, 32]
    assert all(r.iterations_run == 2 for r in records)
    # the same step options (the widths are the networks'): one group of two
    assert [r.trained_with for r in records] == [2, 2]
    assert [r.trained_with for r in train_together(runs[:1])] == [1]
