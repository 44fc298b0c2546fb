"""Restarts: several DIP runs of one architecture from different random starts, served as one network.

One DIP run is one draw: its random weights and input code decide where it
lands, and on flat images two starts can end several dB apart.  The mean of
the images of K runs is a better estimate than any one of them (each run's
error is partly its own; bench/README.md measures the gain).

A run's network is an :class:`~isnas_fast.dip.averaging.AveragedNetwork`:
``x̂_k = Σ_j c_kj f_kj(z_k + n_kj)`` on its own code ``z_k``.  Written on the
first run's code ``z_0``, member ``j`` of run ``k`` computes
``f_kj(z_0 + (z_k - z_0 + n_kj))``; so the K networks merge into one
AveragedNetwork on ``z_0`` with offsets ``z_k - z_0 + n_kj`` and
coefficients ``c_kj / K``, whose output is the mean of the K images.  That
merged network is what bundles and exported models serve.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .averaging import AveragedNetwork, network_output
from .monitor import DIPResult

__all__ = ["MAX_RESTARTS", "merge_networks", "merge_restarts"]

#: Most restarts one result may average (each run's network has up to about 17
#: members; a bundle holds at most 64).
MAX_RESTARTS = 3


def _as_averaged(network: nn.Module, z: Tensor) -> AveragedNetwork:
    if isinstance(network, AveragedNetwork):
        return network
    return AveragedNetwork([network], torch.zeros_like(z, dtype=torch.float32), torch.ones(1, device=z.device))


def merge_networks(networks: Sequence[nn.Module], codes: Sequence[Tensor]) -> AveragedNetwork:
    """One :class:`AveragedNetwork` on ``codes[0]`` whose output is the mean of
    ``networks[k](codes[k])`` over k (up to float32 rounding of the sum).

    ``networks``: K networks of one architecture (each an AveragedNetwork, or a
    plain network taken as one of a single member); ``codes``: their input
    codes, (1, C_in, H, W) each, on one device.  A readout (the same for
    every run of one image) applies once, to the mean.
    """
    if not networks or len(networks) != len(codes):
        raise ValueError("merge_networks needs one code per network")
    z0 = codes[0]
    members, offsets, coefficients = [], [], []
    k = len(networks)
    for net, z in zip(networks, codes):
        avg = _as_averaged(net, z)
        members.extend(avg.members)
        offsets.append(avg.offsets + (z - z0).float())
        coefficients.append(avg.coefficients / k)
    return AveragedNetwork(members, torch.cat(offsets), torch.cat(coefficients), _as_averaged(networks[0], z0).readout)


def merge_restarts(results: Sequence[DIPResult], seeds: Sequence[int],
                   psnr: Optional[Callable[[Tensor], float]] = None) -> DIPResult:
    """The result of K restarts of one architecture as one run's: ``network``
    the merged :class:`AveragedNetwork` on the first run's code ``z``,
    ``output`` its output clipped to [0, 1] (the mean of the runs' images),
    ``seconds`` the runs' total; ``restarts`` lists each run (its seed, steps
    run, stop and seconds, and its own image's PSNR with ``psnr``).  The
    curves, losses and stop of the first run stay as they were; ``psnr``
    (image (1, C, H, W) -> dB, with ground truth) also sets ``psnr_at_stop``.
    One result is returned as it is."""
    if len(results) == 1:
        return results[0]
    if len(seeds) != len(results):
        raise ValueError("merge_restarts needs one seed per result")
    first = results[0]
    network = merge_networks([r.network for r in results], [r.z for r in results])
    output = network_output(network, first.z).clamp(0, 1)
    runs = []
    for s, r in zip(seeds, results):
        entry = {"seed": int(s), "iterations_run": r.iterations_run, "stopped_at": r.stopped_at,
                 "seconds": round(r.seconds, 3)}
        if psnr is not None:
            entry["psnr"] = round(psnr(r.output), 4)
        runs.append(entry)
    return replace(
        first, output=output, network=network, seconds=sum(r.seconds for r in results),
        output_average=None, psnr_at_stop=psnr(output) if psnr is not None else first.psnr_at_stop,
        averaged_over=f"the mean of {len(results)} restarts' images (different random starts), each "
                      + first.averaged_over,
        snapshots={}, raw_snapshots={}, restarts=runs)
