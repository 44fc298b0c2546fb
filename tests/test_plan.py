"""How a DIP step is planned (isnas_fast.dip.plan): one decision, checked once."""
from __future__ import annotations

import pytest
import torch

from isnas_fast.dip import plan_step
from isnas_fast.dip.plan import CPU_COMPILE_STEPS
from isnas_fast.errors import InputError
from isnas_fast.search import SearchSettings

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU


def test_cpu_choices(one_torch_thread):
    p = plan_step(CPU, 1, 100)
    assert (p.strategy, p.shards, p.precision, p.fused_adam) == ("eager", 1, "fp32", False)
    assert plan_step(CPU, 4, 100).strategy == "eager"  # one intra-op thread: one shard
    torch.set_num_threads(2)
    try:
        p = plan_step(CPU, 3, 100)
        assert (p.strategy, p.shards) == ("sharded", 2)
        assert plan_step(CPU, 3, 100, workers=1).strategy == "eager"
        assert plan_step(CPU, 3, 100, workers=5).shards == 3  # never more shards than members
    finally:
        torch.set_num_threads(1)
    assert plan_step(CPU, 1, CPU_COMPILE_STEPS).strategy == "compiled"
    # a group compiles every member's network: more members do not repay it sooner
    assert not plan_step(CPU, 2, CPU_COMPILE_STEPS // 2).compiled
    assert not plan_step(CPU, 15, 9500).compiled
    assert plan_step(CPU, 1, CPU_COMPILE_STEPS, compile=False).strategy == "eager"
    p = plan_step(CPU, 1, 10, compile=True, precision="bf16")
    assert p.compiled and p.fused_adam and p.precision == "bf16"


def test_cuda_choices_without_a_gpu():
    assert plan_step(CUDA, 1, 10).strategy == "compiled"
    p = plan_step(CUDA, 15, 10)
    assert p.cuda_graph and p.capturable_adam and p.fused_adam and p.precision == "tf32"
    assert plan_step(CUDA, 15, 10, compile=True).compiled  # an explicit compile is obeyed
    assert plan_step(CUDA, 15, 10, cuda_graph=False).compiled
    assert plan_step(CUDA, 1, 10, cuda_graph=True).cuda_graph


@pytest.mark.parametrize("kw,match", [
    (dict(device=CPU, cuda_graph=True), "cuda_graph needs a CUDA device"),
    (dict(device=CUDA, compile=True, cuda_graph=True), "alternatives"),
    (dict(device=CUDA, cuda_graph=True, workers=2), "workers must be 1"),
    (dict(device=CPU, compile=True, workers=2), "workers must be 1"),
    (dict(device=CPU, workers=0), "workers must be >= 1"),
    (dict(device=CPU, precision="fp16"), "precision must be one of"),
])
def test_impossible_combinations_are_refused(kw, match):
    device = kw.pop("device")
    with pytest.raises(InputError, match=match):
        plan_step(device, 2, 10, **kw)


def test_search_settings_use_the_same_rule():
    with pytest.raises(InputError, match="alternatives"):
        SearchSettings(compile=True, cuda_graph=True).validate()
