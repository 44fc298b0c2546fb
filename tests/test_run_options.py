"""One run configuration from the search's settings to the DIP loop, and the one group trainer."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from isnas_fast import InputError
from isnas_fast.dip import DIPSettings, EarlyStopping, RunOptions
from isnas_fast.search import TASK_ITERATIONS, GroupMember, genotype_seed, preset, train_group
from isnas_fast.tasks import Denoise

ARCHS = ("64,0001010110110101110010111", "158,1111101111001110001100001")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_settings_make_the_run_options():
    quick = preset("quick")
    cohort = quick.cohort_run("denoise")
    assert cohort.iterations == 300 and cohort.served is False and cohort.together is True
    assert cohort.early_stopping is None
    final = quick.final_run("sr")
    assert final.iterations == TASK_ITERATIONS["sr"] and final.served is True
    assert final.early_stopping == EarlyStopping()
    own = preset("paper", cohort_together=False, cohort_iterations=7, final_iterations=9, compile=False,
                 precision="bf16", early_stopping=None)
    assert own.cohort_run("inpaint").together is False and own.cohort_run("inpaint").iterations == 7
    assert (own.final_run("inpaint").iterations, own.final_run("inpaint").compile) == (9, False)
    assert own.final_run("inpaint").precision == "bf16" and own.final_run("inpaint").early_stopping is None


def test_run_options_are_checked():
    with pytest.raises(InputError, match="member_threads"):
        RunOptions(DIPSettings(3), member_threads=2)
    with pytest.raises(InputError, match="DIPSettings"):
        RunOptions(3)  # type: ignore[arg-type]


def test_a_group_trains_as_its_members_alone(small):
    obs = Denoise(25).corrupt(small, seed=0)
    members = [GroupMember(a, genotype_seed(0, a), 3, 16) for a in ARCHS]
    options = RunOptions(DIPSettings(3), member_threads=1)
    together = train_group(members, obs, options, device=torch.device("cpu"), quiet=True)
    alone = train_group(members, obs, replace(options, together=False), device=torch.device("cpu"), quiet=True)
    for a, b in zip(together, alone):
        assert torch.equal(a.result.output, b.result.output) and a.result.iterations_run == 3
