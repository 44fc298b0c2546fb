"""Restoring a large image in overlapping tiles, trained as groups of DIP runs and blended.

A DIP run's memory grows with the pixels it fits (every activation of the
network is a full-size feature map, and early stopping keeps a window of
outputs), so an image too large for the device is cut into overlapping
tiles.  Each tile is fitted by its own network -- the same architecture for
every tile, each with its own seed -- and the tiles are trained together as
one group (:func:`~isnas_fast.search.train_group`), or as several groups one
after the other when one group would not fit the memory budget
(:mod:`isnas_fast.resources` chooses).  The tile outputs are blended with
smooth weights that fall from 1 to 0 across each overlap and sum to 1 at
every pixel, so no seam shows.

Geometry is in output pixels (the high-resolution image for
super-resolution).  Tile sides are multiples of 32 (what the networks
accept), tile corners multiples of :data:`ALIGN` (so a ×2, ×4 or ×8
low-resolution tile starts on a whole pixel), and the tiles of a plan cover
the image exactly: the first starts at 0, the last ends at the image's edge.
"""
from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from .dip import RunOptions
from .errors import InputError
from .genotype import Genotype
from .network import resolve_architecture
from .search import GroupMember, SearchSettings, train_group
from .tasks import Observation, SuperResolve
from .trained import TrainedRun

__all__ = ["ALIGN", "TILE_MULTIPLE", "DEFAULT_OVERLAP", "TilePlan", "plan_tiles", "tile_seed", "split_observation",
           "crop_tiles", "tile_weights", "blend_tiles", "restore_in_tiles"]

#: Tile sides are multiples of this (the networks halve the image five times).
TILE_MULTIPLE = 32
#: Tile corners are multiples of this (a multiple of every SR factor: 2, 4, 8).
ALIGN = 8
#: Overlap between neighbouring tiles, in output pixels, when none is given.
DEFAULT_OVERLAP = 64


def _axis_positions(length: int, tile: int, overlap: int) -> tuple[int, tuple[int, ...]]:
    """(tile side, starts) along one axis of ``length`` px."""
    if tile >= length:
        return length, (0,)
    n = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (n - 1)
    # Rounding each start to ALIGN keeps every gap <= tile - overlap (a
    # multiple of ALIGN), so neighbours overlap by at least ``overlap``; the
    # last start is length - tile exactly (both are multiples of 32).
    starts = tuple(ALIGN * int(math.floor(i * step / ALIGN + 0.5)) for i in range(n))
    return tile, starts


@dataclass(frozen=True)
class TilePlan:
    """Overlapping tiles covering an ``height`` × ``width`` output image.

    ``tile_height`` / ``tile_width``: every tile's size (px; the requested
    tile side, or the image's side where the image is smaller);
    ``tops`` / ``lefts``: the tiles' starts along each axis; the tiles are the
    grid ``tops × lefts`` in row-major order (:attr:`boxes`).  ``overlap``:
    the requested overlap (px); neighbours overlap by at least this much.
    """

    height: int
    width: int
    tile_height: int
    tile_width: int
    overlap: int
    tops: tuple[int, ...]
    lefts: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.tops) * len(self.lefts)

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        """``(top, left, height, width)`` of every tile in output pixels, row-major."""
        return [(t, l, self.tile_height, self.tile_width) for t in self.tops for l in self.lefts]

    @property
    def tile_pixels(self) -> int:
        """Output pixels of one tile."""
        return self.tile_height * self.tile_width

    @property
    def total_pixels(self) -> int:
        """Output pixels fitted over all tiles (overlaps counted once per tile)."""
        return len(self) * self.tile_pixels

    def describe(self) -> str:
        """One line: ``"4 tiles of 160x160 px (2x2, overlap >= 64 px)"`` (sizes width x height)."""
        return (f"{len(self)} tile(s) of {self.tile_width}x{self.tile_height} px "
                f"({len(self.lefts)}x{len(self.tops)}, overlap >= {self.overlap} px)")


def _check_side(value, what: str, multiple: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or value % multiple:
        raise InputError(f"{what} must be a multiple of {multiple} px of at least {minimum}, got {value!r}")
    return int(value)


def plan_tiles(size: tuple[int, int], tile: int, overlap: int = DEFAULT_OVERLAP) -> TilePlan:
    """The tiles of side ``tile`` covering an output image of ``size`` = (H, W) px.

    ``tile``: a multiple of 32, at least 64; ``overlap``: a multiple of 8,
    0 <= overlap < tile.  H and W must be multiples of 32.  Along each axis
    the fewest tiles that overlap by at least ``overlap`` are spread evenly
    (starts rounded to multiples of 8); a side no longer than ``tile`` is one
    tile of the image's side.  Raises InputError for sizes that break these rules.
    """
    tile = _check_side(tile, "tile", TILE_MULTIPLE, 2 * TILE_MULTIPLE)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0 or overlap % ALIGN \
            or overlap >= tile:
        raise InputError(f"tile overlap must be a multiple of {ALIGN} px in [0, {tile}), got {overlap!r}")
    h, w = (int(v) for v in size)
    if h % TILE_MULTIPLE or w % TILE_MULTIPLE or h < 1 or w < 1:
        raise InputError(f"image size {w}x{h} must be multiples of {TILE_MULTIPLE} px to be tiled")
    th, tops = _axis_positions(h, tile, overlap)
    tw, lefts = _axis_positions(w, tile, overlap)
    return TilePlan(h, w, th, tw, int(overlap), tops, lefts)


def tile_seed(seed: int, architecture: Union[Genotype, str], index: int) -> int:
    """The seed of tile ``index``'s network, input code and noise stream.

    Derived from the run's ``seed``, the architecture and the tile's index
    alone (a CRC, in [0, 2^31 - 1)): the same tile gets the same seed in any
    group.  Neighbouring indices give unrelated seeds, so one tile's noise
    stream (seeded ``seed + 1`` by the loop) is never another's input code.
    """
    text = f"{int(seed)}|{architecture}|tile{int(index)}"
    return zlib.crc32(text.encode()) % (2**31 - 1)


def split_observation(observation: Observation, plan: TilePlan) -> list[Observation]:
    """The observation of every tile of ``plan``, in the plan's order.

    Denoising: the crop of ``y``; inpainting: the crops of ``y`` and its mask;
    super-resolution ×f: the low-resolution crop ``y[top/f : (top + h)/f,
    left/f : (left + w)/f]``, whose network output is the tile's h × w.
    ``plan`` must be planned for ``observation.output_size``.
    """
    if (plan.height, plan.width) != tuple(observation.output_size):
        h, w = observation.output_size
        raise InputError(f"tile plan is for {plan.width}x{plan.height} px but the observation's output is {w}x{h}")
    f = observation.task.factor if isinstance(observation.task, SuperResolve) else 1
    tiles = []
    for top, left, th, tw in plan.boxes:
        rows = slice(top // f, (top + th) // f)
        cols = slice(left // f, (left + tw) // f)
        y = observation.y[..., rows, cols].contiguous()
        mask = None if observation.mask is None else observation.mask[..., rows, cols].contiguous()
        tiles.append(Observation(observation.task, y, mask))
    return tiles


def crop_tiles(image: Tensor, plan: TilePlan) -> list[Tensor]:
    """The crops (1, C, tile h, tile w) of an output-size image (1, C, H, W) at the plan's tiles."""
    if tuple(image.shape[-2:]) != (plan.height, plan.width):
        raise InputError(f"image is {image.shape[-1]}x{image.shape[-2]} px, the tile plan "
                         f"{plan.width}x{plan.height}")
    return [image[..., t:t + h, l:l + w] for t, l, h, w in plan.boxes]


def _ramp(side: int, starts: Sequence[int], i: int) -> Tensor:
    """One tile's 1-D weight (float64, length ``side``) along an axis: a raised
    cosine rising over the overlap with the previous tile and falling over the
    overlap with the next, 1 elsewhere and at the image's edges."""
    w = torch.ones(side, dtype=torch.float64)
    x = torch.arange(side, dtype=torch.float64)
    if i > 0:
        n = starts[i - 1] + side - starts[i]  # overlap with the previous tile
        if n > 0:
            rise = torch.sin(0.5 * math.pi * (x[:n] + 0.5) / n) ** 2
            w[:n] *= rise
    if i + 1 < len(starts):
        n = starts[i] + side - starts[i + 1]  # overlap with the next tile
        if n > 0:
            fall = torch.cos(0.5 * math.pi * (x[:n] + 0.5) / n) ** 2
            w[side - n:] *= fall
    return w


def tile_weights(plan: TilePlan) -> list[Tensor]:
    """The blending weight (tile h, tile w) float64 of every tile, in the plan's order.

    Separable raised-cosine ramps across each overlap (positive inside the
    tile, 1 away from its neighbours), normalised so the weights of all tiles
    covering a pixel sum to 1 at every pixel of the image.
    """
    rows = [_ramp(plan.tile_height, plan.tops, i) for i in range(len(plan.tops))]
    cols = [_ramp(plan.tile_width, plan.lefts, j) for j in range(len(plan.lefts))]
    raw = [r[:, None] * c[None, :] for r in rows for c in cols]
    total = torch.zeros(plan.height, plan.width, dtype=torch.float64)
    for (t, l, h, w), wt in zip(plan.boxes, raw):
        total[t:t + h, l:l + w] += wt
    return [wt / total[t:t + h, l:l + w] for (t, l, h, w), wt in zip(plan.boxes, raw)]


def blend_tiles(outputs: Sequence[Tensor], plan: TilePlan) -> Tensor:
    """Blend the tiles' outputs, each (1, C, tile h, tile w), into the image (1, C, H, W).

    The weighted sum with :func:`tile_weights` (accumulated in float64,
    returned as float32 on the first output's device).  Blending the crops
    of one image (:func:`crop_tiles`) gives that image back.
    """
    if len(outputs) != len(plan):
        raise InputError(f"need one output per tile: {len(outputs)} for {len(plan)} tiles")
    first = outputs[0]
    out = torch.zeros((1, first.shape[1], plan.height, plan.width), dtype=torch.float64, device=first.device)
    for (t, l, h, w), wt, o in zip(plan.boxes, tile_weights(plan), outputs):
        if tuple(o.shape[-2:]) != (h, w) or o.shape[1] != first.shape[1]:
            raise InputError(f"tile output of shape {tuple(o.shape)} does not fit a {w}x{h} tile")
        out[..., t:t + h, l:l + w] += o.to(torch.float64) * wt.to(o.device)
    return out.to(torch.float32)


def _train_tiles(arch: Union[Genotype, str], tiles: Sequence[Observation], truths: Sequence[Optional[Tensor]],
                 seeds: Sequence[int], options: RunOptions, *, in_ch: int, width: int,
                 device: torch.device, keep_networks: bool, quiet: bool, desc: str) -> list[TrainedRun]:
    """One group of tiles trained together (:func:`~isnas_fast.search.train_group`); a run per tile."""
    obs = tiles[0]
    c = obs.channels
    members = [GroupMember(arch, s, in_ch, width) for s in seeds]
    trained = train_group(members, list(tiles), options, device=device, ground_truth=list(truths), quiet=quiet,
                          desc=desc)
    runs = []
    for t in trained:
        res = t.result if keep_networks else replace(t.result, network=t.network)
        runs.append(TrainedRun(network=res.network, z=res.z, genotype=str(arch), width=width, in_channels=in_ch,
                               out_channels=c, task=obs.task.name, task_params=dict(obs.task.params()), dip=res))
    return runs


def restore_in_tiles(
    observation: Observation,
    architecture: Union[Genotype, str],
    settings: SearchSettings,
    *,
    tile: int,
    overlap: int = DEFAULT_OVERLAP,
    seed: int = 0,
    in_channels: Optional[int] = None,
    group_size: Optional[int] = None,
    ground_truth: Optional[Tensor] = None,
    device: torch.device | str | None = None,
    keep_networks: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[Tensor, list[TrainedRun]]:
    """Restore ``observation`` in overlapping tiles with one architecture; returns (image, runs).

    ``architecture``: a genotype or baseline name (the search's pick: the
    search runs once per image, every tile uses its pick).  ``settings``: a
    :class:`~isnas_fast.search.SearchSettings`, read as
    :func:`~isnas_fast.search.train_finals` reads it (``width``,
    ``final_iterations`` or the task's step count, ``early_stopping`` -- each
    tile stops on its own --, ``compile``, ``precision``, ``cuda_graph``).
    ``tile`` / ``overlap``: see :func:`plan_tiles` (output pixels).
    ``in_channels``: the input code's channels (default: the image's; 32 for
    the NAS-DIP and DIP baselines).  ``group_size``: tiles trained together
    per group (None: all of them in one group); groups run one after the
    other, so the peak memory is that of one group
    (:func:`isnas_fast.resources.choose_tiling` sizes it).
    ``ground_truth`` (1, C, H, W), output size: only each tile's PSNR curve.
    ``keep_networks``: keep each tile's returned (averaged) network, which
    holds one noisy input code per averaged block (16 × C_in × 4 bytes per
    pixel: 2 KiB per pixel with a 32-channel code) -- kept for every tile,
    that memory grows with the image, not the group.  Off (the default),
    each run keeps its trained network instead (``run.network`` and
    ``run.dip.network``; its ``output()`` is then not the tile's returned
    image), so the peak is one group's plus the tiles' codes and outputs.

    Tile ``k`` gets its own network, input code and noise, seeded by
    :func:`tile_seed` (``seed``, the architecture, ``k``): deterministic
    given the seed, and independent of the group it trains in (up to the
    rounding of the CPU threads it runs on).  Returns the blended image
    (1, C, H, W) float32 in [0, 1] on ``device`` and one
    :class:`~isnas_fast.trained.TrainedRun` per tile in the plan's order
    (``run.dip`` is the tile's :class:`~isnas_fast.dip.DIPResult`).
    """
    say = log or (lambda msg: None)
    arch = resolve_architecture(architecture)
    device = torch.device(device or observation.y.device)
    plan = plan_tiles(observation.output_size, tile, overlap)
    n = len(plan)
    if group_size is None:
        group_size = n
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise InputError(f"group_size must be a positive integer, got {group_size!r}")
    obs = observation.to(device)
    tiles = split_observation(obs, plan)
    truths = crop_tiles(ground_truth.to(device), plan) if ground_truth is not None else [None] * n
    c = obs.channels
    in_ch = in_channels or c
    width = settings.width_of(arch)
    options = settings.final_run(obs.task.name)
    iters = options.iterations
    groups = [list(range(i, min(i + group_size, n))) for i in range(0, n, group_size)]
    say(f"restoring in {plan.describe()}, {len(groups)} group(s) of up to {group_size}, {iters} steps each")
    runs: list[TrainedRun] = []
    t0 = time.perf_counter()
    for g, members in enumerate(groups, 1):
        desc = f"tiles {g}/{len(groups)}" if len(groups) > 1 else "tiles"
        runs += _train_tiles(arch, [tiles[k] for k in members], [truths[k] for k in members],
                             [tile_seed(seed, arch, k) for k in members], options, in_ch=in_ch, width=width,
                             device=device, keep_networks=keep_networks, quiet=quiet, desc=desc)
        if len(groups) > 1:
            say(f"group {g}/{len(groups)} done after {time.perf_counter() - t0:.1f} s")
    image = blend_tiles([r.dip.output for r in runs], plan).clamp_(0, 1)
    return image, runs
