"""How a group's DIP step runs, decided once (docs/design.md §7).

:func:`plan_step` turns (device, members, run length, ``compile``,
``cuda_graph``, ``precision``, ``workers``) into a :class:`StepPlan`, and is
the one place where those options are checked against each other
(:func:`check_step_options`).  The strategies themselves live in
:mod:`isnas_fast.dip.steps`.

=============  ==============================================================
strategy       when (automatic choices)
=============  ==============================================================
``eager``      the plain reference: every member's forward, summed losses,
               one backward, one Adam.
``sharded``    an eager CPU run of several members: one shard of members per
               intra-op thread, stepping side by side on worker threads
               (batch-1 DIP's small convolutions scale poorly over cores,
               independent members do not).
``compiled``   ``compile=True``, or automatically on CUDA and for CPU runs long
               enough to repay minutes of compiling (:func:`should_compile`).
``cuda_graph`` ``cuda_graph=True``, or automatically on CUDA for a group of
               several members when ``compile`` is left automatic
               (:func:`graph_group_step`): the eager step captured once and
               replayed, no compile time.
=============  ==============================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import InputError
from .settings import resolve_precision

__all__ = ["StepPlan", "plan_step", "check_step_options", "should_compile", "graph_group_step", "group_workers"]

STRATEGIES = ("eager", "sharded", "compiled", "cuda_graph")

# Steps per member from which a CPU run is compiled automatically (compiling a
# network's step costs minutes there, for a modest gain per step; see
# bench/README.md).  Each member of a group is a different network whose step
# compiles on its own, so the compile time grows with the group's size as fast
# as the time it saves: the threshold is on steps, not on member-steps.
CPU_COMPILE_STEPS = 20000


@dataclass(frozen=True)
class StepPlan:
    """The decided execution of one group's DIP step.

    ``strategy``: one of ``eager``, ``sharded``, ``compiled``,
    ``cuda_graph``; ``shards``: worker threads of a sharded step (1
    otherwise); ``precision``: the resolved precision; ``fused_adam``: the
    one-kernel fused Adam (CUDA and compiled steps; the eager CPU reference
    keeps PyTorch's multi-tensor Adam); ``capturable_adam``: Adam's step
    count on the device, as a CUDA graph capture requires.
    """

    device: torch.device
    members: int
    strategy: str
    shards: int
    precision: str
    fused_adam: bool
    capturable_adam: bool

    @property
    def compiled(self) -> bool:
        return self.strategy == "compiled"

    @property
    def cuda_graph(self) -> bool:
        return self.strategy == "cuda_graph"


def check_step_options(compile: Optional[bool], cuda_graph: Optional[bool],
                       device: torch.device | str | None = None) -> None:
    """The rules between ``compile``, ``cuda_graph`` and the device; InputError when broken.

    ``device`` None checks only what does not depend on it (settings made
    before a device is chosen).
    """
    if cuda_graph and compile:
        raise InputError("compile and cuda_graph are alternatives (a compiled CUDA step already replays "
                         "CUDA graphs): choose one")
    if cuda_graph and device is not None and torch.device(device).type != "cuda":
        raise InputError(f"cuda_graph needs a CUDA device, not {torch.device(device).type} "
                         "(leave it off, or use --device cuda)")


def should_compile(device: torch.device | str, iterations: int, members: int = 1) -> bool:
    """The automatic ``compile`` choice: always on CUDA; on the CPU only for
    runs of at least ``CPU_COMPILE_STEPS`` steps, whatever the number of
    ``members`` (compiling a U-Net step takes minutes there for a modest gain,
    and a group compiles every member's network)."""
    if torch.device(device).type == "cuda":
        return True
    return iterations >= CPU_COMPILE_STEPS


def graph_group_step(device: torch.device | str, compile: Optional[bool], members: int) -> bool:
    """The automatic ``cuda_graph`` choice: on CUDA, for several members, when
    ``compile`` is left automatic (None).  A compiled group would compile
    every member's different network; the captured eager step needs no
    compiler.  An explicit ``compile`` is obeyed."""
    return torch.device(device).type == "cuda" and compile is None and members > 1


def group_workers(device: torch.device, compiled: bool, members: int) -> int:
    """Automatic shard count: on an eager CPU run of several members, one shard
    per intra-op thread; one program otherwise (GPU, or compiled steps)."""
    if device.type != "cpu" or compiled or members < 2:
        return 1
    return max(1, min(torch.get_num_threads(), members))


def plan_step(
    device: torch.device | str,
    members: int,
    iterations: int,
    *,
    compile: Optional[bool] = None,
    cuda_graph: Optional[bool] = None,
    precision: Optional[str] = None,
    workers: Optional[int] = None,
) -> StepPlan:
    """Decide how the DIP step of ``members`` networks on ``device`` runs.

    ``compile`` / ``cuda_graph`` / ``workers``: None = automatic
    (:func:`should_compile`, :func:`graph_group_step`, :func:`group_workers`);
    ``precision``: None = :func:`~isnas_fast.dip.settings.resolve_precision`.
    Raises InputError for combinations that cannot run.
    """
    device = torch.device(device)
    if members < 1:
        raise InputError("a DIP run needs at least one network")
    check_step_options(compile, cuda_graph, device)
    precision = resolve_precision(precision, device)
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise InputError(f"workers must be >= 1, got {workers}")
    if cuda_graph is None:
        cuda_graph = graph_group_step(device, compile, members)
    if cuda_graph:
        if workers not in (None, 1):
            raise InputError(f"cuda_graph steps the group as one program: workers must be 1, got {workers}")
        strategy, shards = "cuda_graph", 1
    else:
        compiled = should_compile(device, iterations, members) if compile is None else bool(compile)
        if compiled and workers not in (None, 1):
            raise InputError(f"a compiled step runs the group as one program: workers must be 1, got {workers}")
        shards = group_workers(device, compiled, members) if workers is None else int(workers)
        shards = min(shards, members)
        strategy = "compiled" if compiled else ("sharded" if shards > 1 else "eager")
    return StepPlan(
        device=device, members=members, strategy=strategy, shards=shards, precision=precision,
        fused_adam=device.type == "cuda" or strategy == "compiled",
        capturable_adam=strategy == "cuda_graph",
    )
