"""Score candidates by the spectrum of their random output (docs/design.md §1 step 1, §4)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..device import seeded
from ..dip import make_input_code
from ..genotype import Genotype
from ..kernels import spectral_scores
from ..kernels.spectral_reference import canonical_metric
from ..network import build_network
from ..tasks import Observation
from .candidates import genotype_seed

__all__ = ["score_candidates", "search_input_channels"]


def search_input_channels(observation: Observation) -> int:
    """Channels of the searched networks' input code: the image's own (docs/design.md §3.1)."""
    return int(observation.y.shape[1])


def score_candidates(
    observation: Observation,
    genotypes: Sequence[Genotype],
    metrics: Sequence[str],
    *,
    width: int = 128,
    seed: int = 0,
    batch: int = 16,
    device: torch.device | None = None,
    backend: str | None = None,
    quiet: bool = False,
) -> Tensor:
    """Score each genotype by its freshly initialised network's random output.

    One forward pass per candidate (train-mode BatchNorm, no grad) on a code
    ``z ~ U(0, 0.1)`` of the output size, seeded per genotype
    (:func:`~isnas_fast.search.candidates.genotype_seed`); outputs go through
    the task's scoring view and are compared with the corrupted image
    ``observation.y``, ``batch`` at a time.  Returns a float64 tensor
    (N, len(metrics)) on the CPU; lower is better.
    """
    device = device or observation.y.device
    obs = observation.to(device)
    c = search_input_channels(obs)
    H, W = obs.output_size
    y = obs.y[0]
    metrics = [canonical_metric(m) for m in metrics]
    rows: list[Tensor] = []
    pending: list[Tensor] = []
    rand_gen = torch.Generator().manual_seed(int(seed))

    def flush() -> None:
        if pending:
            rows.append(spectral_scores(y, torch.cat(pending), metrics, backend=backend, generator=rand_gen).cpu())
            pending.clear()

    for g in tqdm(genotypes, desc="score", disable=True if quiet else None, leave=False, unit="net"):
        s = genotype_seed(seed, g)
        with seeded(s, device):
            net = build_network(g, c, c, width, device=device)
        z = make_input_code(c, (H, W), s, device=device)
        with torch.no_grad():
            pending.append(obs.scoring_view(net.train()(z)).float())
        del net
        if len(pending) >= batch:
            flush()
    flush()
    if not rows:
        return torch.empty(0, len(metrics), dtype=torch.float64)
    return torch.cat(rows).to(torch.float64)
