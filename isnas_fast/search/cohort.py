"""The cohort stage (docs/design.md §1 steps 2-4): the K best-scoring candidates per
metric, trained on the small problem, and the pick of each metric's cohort."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import Tensor

from ..dip import DIPResult
from ..genotype import Genotype
from ..tasks import Observation
from .candidates import genotype_seed
from .selection import select_member
from .settings import SearchSettings
from .training import GroupMember, train_group

__all__ = ["CohortMember", "rank_cohort", "train_cohort", "select_in_cohort"]


@dataclass
class CohortMember:
    """One cohort member: its genotype, metric value and selection score (PSNR to the average, dB)."""

    genotype: Genotype
    metric_value: float
    selection_psnr: float = float("nan")
    selected: bool = False
    train_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "genotype": str(self.genotype),
            "metric_value": self.metric_value,
            "selection_psnr": self.selection_psnr,
            "selected": self.selected,
            "train_seconds": round(self.train_seconds, 3),
        }


def rank_cohort(genotypes: Sequence[Genotype], values: Tensor, k: int) -> list[CohortMember]:
    """The ``k`` genotypes with the lowest metric ``values`` (N,), best first (ties: genotype order)."""
    order = sorted(range(len(genotypes)), key=lambda i: (float(values[i]), genotypes[i]))[:k]
    return [CohortMember(genotypes[i], float(values[i])) for i in order]


def train_cohort(
    genotypes: Sequence[Genotype],
    small: Observation,
    settings: SearchSettings,
    *,
    seed: int = 0,
    device: torch.device,
    quiet: bool = False,
    snapshots: Sequence[int] = (),
) -> dict[Genotype, DIPResult]:
    """Train each genotype once on the small problem (docs/design.md §1 step 3).

    Every member is built and seeded by its genotype alone
    (:func:`~isnas_fast.search.candidates.genotype_seed`), so a genotype that
    is in several metrics' cohorts trains once and gives the same result.
    ``DIPResult.seconds`` of members trained together is the group's time
    divided by their number.  ``snapshots``: iterations whose outputs each
    result keeps (``DIPResult.snapshots`` / ``raw_snapshots``).
    """
    # Members are only ranked on their output averages, never served: no averaged network.
    options = replace(settings.cohort_run(small.task.name), snapshots=tuple(snapshots))
    members = [GroupMember(g, genotype_seed(seed, g), small.channels, settings.width) for g in genotypes]
    results = [t.result for t in train_group(members, small, options, device=device, quiet=quiet, desc="cohort")]
    if options.together:
        for r in results:
            r.seconds /= len(results)
    return dict(zip(genotypes, results))


def select_in_cohort(members: list[CohortMember], results: dict[Genotype, DIPResult], *,
                     y_channel: bool = False) -> int:
    """Select among ``members`` by their trained outputs (docs/design.md §5); sets each
    member's ``selection_psnr``, ``train_seconds`` and the pick's ``selected``;
    returns the pick's index."""
    for m in members:
        m.train_seconds = results[m.genotype].seconds if m.genotype in results else 0.0
    if len(members) == 1:
        idx = 0
    else:
        outputs = torch.stack([results[m.genotype].output[0] for m in members])
        values = torch.tensor([m.metric_value if math.isfinite(m.metric_value) else 0.0 for m in members])
        idx, scores, _ = select_member(outputs, values, y_channel=y_channel)
        for m, p in zip(members, scores.tolist()):
            m.selection_psnr = p
    members[idx].selected = True
    return idx
