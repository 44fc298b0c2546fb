"""Training a group of DIP runs: build each member's network, seeded, and fit the group.

The one place outside :mod:`isnas_fast.dip` that runs the DIP loop: the
cohort stage, the full-size runs, the suite's runs trained together, the
tiles of a tiled restore and the study's genotypes all train through
:func:`train_group`, with the :class:`~isnas_fast.dip.RunOptions` the search's
settings make (:meth:`~isnas_fast.search.SearchSettings.cohort_run`,
:meth:`~isnas_fast.search.SearchSettings.final_run`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..device import seeded
from ..dip import DIPResult, EarlyStopping, RunOptions, fit_group
from ..genotype import Genotype
from ..network import build_network
from ..tasks import Observation

__all__ = ["GroupMember", "TrainedMember", "train_group"]


@dataclass(frozen=True)
class GroupMember:
    """One network of a group: its architecture (a genotype or baseline name), the seed of
    its weights, input code and noise, its input code's channels and its width W.
    ``task``: the task whose variant of a named network is built (DIP-skip's
    differs for inpainting); None: the observation's.  A denoise fitted with
    held-out pixels is an inpainting problem that still trains the denoising
    network."""

    architecture: Union[Genotype, str]
    seed: int
    in_channels: int
    width: int
    task: Optional[str] = None


@dataclass
class TrainedMember:
    """A member after training: the network as trained (its last weights) and the run's result
    (whose ``network`` is the averaged network when the run was served)."""

    network: nn.Module
    result: DIPResult


def _each(value, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def train_group(
    members: Sequence[GroupMember],
    observation: Union[Observation, Sequence[Observation]],
    options: RunOptions,
    *,
    device: torch.device,
    ground_truth: Union[Tensor, None, Sequence[Optional[Tensor]]] = None,
    quiet: bool = False,
    desc: str = "DIP",
) -> list[TrainedMember]:
    """Build every member's network on ``device`` under its seed and fit them with ``options``.

    ``observation`` / ``ground_truth``: one for every member or one per
    member (ground truth (1, C, H, W) only records PSNR curves).  The members
    train as one program (:func:`~isnas_fast.dip.fit_group`), or one after
    another when ``options.together`` is False; each follows the trajectory
    it would follow alone (up to the rounding of the CPU threads it runs
    on).  Returns one :class:`TrainedMember` per member, in order.

    With the ``heldout`` stop (``options.early_stopping.method``) each member
    trains twice from the same start: first on its observation with a fifth
    of the pixels held out (seeded by the member's seed), which finds the
    step of least held-out error, then on every pixel to that step (the
    ``at`` stop); the result is the second run's, its ``seconds`` both runs'.
    """
    es = options.early_stopping
    if es is not None and es.method == "heldout" and _each(observation, len(members))[0].held is None:
        return _train_heldout(members, observation, options, device=device, ground_truth=ground_truth,
                              quiet=quiet, desc=desc)
    n = len(members)
    observations = _each(observation, n)
    nets = []
    for m, obs in zip(members, observations):
        with seeded(m.seed, device):
            nets.append(build_network(m.architecture, m.in_channels, obs.channels, m.width,
                                      task=m.task or obs.task.name, device=device))
    seeds = [m.seed for m in members]
    if options.together:
        results = fit_group(nets, observation, options, seeds=seeds, ground_truth=ground_truth, quiet=quiet,
                            desc=desc)
    else:
        truths = _each(ground_truth, n)
        results = [fit_group([net], obs, options, seeds=[s], ground_truth=gt, quiet=quiet,
                             desc=f"{desc} {i + 1}/{n}")[0]
                   for i, (net, obs, s, gt) in enumerate(zip(nets, observations, seeds, truths))]
    return [TrainedMember(net, res) for net, res in zip(nets, results)]


def _train_heldout(members: Sequence[GroupMember], observation: Union[Observation, Sequence[Observation]],
                   options: RunOptions, *, device: torch.device,
                   ground_truth: Union[Tensor, None, Sequence[Optional[Tensor]]], quiet: bool,
                   desc: str) -> list[TrainedMember]:
    """The held-out stop's two runs per member (:func:`train_group`)."""
    from .validation import holdout_mask, validation_problem  # validation imports the cohort, which imports this

    n = len(members)
    observations = _each(observation, n)
    truths = _each(ground_truth, n)
    held = [validation_problem(o, holdout_mask(o, m.seed)) for o, m in zip(observations, members)]
    # the twin trains the network of the member's own task, not that of the held-out problem
    own = [replace(m, task=m.task or o.task.name) for m, o in zip(members, observations)]
    twins = train_group(own, held, replace(options, served=False, probes=(), snapshots=()), device=device,
                        quiet=quiet, desc=f"{desc}, held-out run")
    steps = [t.result.stopped_at or t.result.iterations_run for t in twins]
    out: list[Optional[TrainedMember]] = [None] * n
    for step in dict.fromkeys(steps):  # members stopping at one step train as one group
        idx = [i for i, s_ in enumerate(steps) if s_ == step]
        at = EarlyStopping(method="at", window=options.early_stopping.window, start=step)
        runs = train_group([members[i] for i in idx], [observations[i] for i in idx],
                           replace(options, early_stopping=at), device=device,
                           ground_truth=[truths[i] for i in idx], quiet=quiet, desc=desc)
        for i, run in zip(idx, runs):
            run.result.seconds += twins[i].result.seconds
            out[i] = run
    return out  # type: ignore[return-value]
