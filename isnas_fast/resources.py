"""What a DIP run will cost before it starts: peak memory and time per step,
and whether (and how) to tile the image so it fits.

The estimate is a measured model in two parts.

* **Per architecture, counted now**: passes of the network on small inputs
  on the meta device (:func:`profile_network`) count, per output pixel, the
  bytes autograd keeps for the backward pass (every feature map of the
  U-Net is a full-size or ×2^-k map, so they grow exactly with the pixels),
  the floating-point operations of a training step, the bytes every
  operation of the step reads and writes (each tensor on its own, so that
  the ones larger than the processor's cache can be told apart at a given
  size) and the bytes of the interpolating upsamplings weighted by their
  taps (4 bilinear, 16 bicubic: slow per byte on the CPU, and not counted
  as floating-point operations).
* **Per device, measured once**: how the process's peak resident memory and
  the step time follow those counts -- ``peak = base + factor · saved +
  monitor`` and ``seconds = per_member · K + flops / rate + per_byte ·
  traffic in tensors up to the cache size + per_spilled_byte · traffic in
  larger tensors + per_tap_byte · interpolation`` -- fitted by
  ``bench/tiling_study.py calibrate`` on the CPU (the constants below; the
  numbers behind them are in bench/README.md and bench/results/tiling-cpu.json).
  ``monitor`` is what the DIP monitor keeps per member, counted from
  the code: the smoothed and last outputs, early stopping's window of raw
  outputs and its float64 sums, and the weight averages' blocks (weights
  and input code each).

On CUDA the memory factors of the CPU fit are used with no process base (not
measured on a GPU) and the time per step is not estimated.
"""
from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .dip import EarlyStopping
from .dip.progress import format_duration
from .errors import InputError
from .genotype import Genotype
from .network import build_network, resolve_architecture
from .search import SearchSettings
from .tasks import Observation
from .tiling import DEFAULT_OVERLAP, TILE_MULTIPLE, TilePlan, plan_tiles

__all__ = ["NetworkProfile", "ResourceEstimate", "ResourcePlan", "profile_network", "estimate_run",
           "step_features", "cpu_step_seconds",
           "available_memory", "plan_resources", "plan_restore", "SEARCH_STAND_IN", "AVERAGING_BLOCKS",
           "CPU_BASE_BYTES", "CPU_SAVED_FACTOR", "CPU_SAVED_FACTOR_DIP_SKIP", "CPU_SECONDS_PER_MEMBER",
           "CPU_FLOPS_PER_SECOND", "CPU_SECONDS_PER_TOUCHED_BYTE", "CPU_SECONDS_PER_SPILLED_BYTE",
           "CPU_SECONDS_PER_TAP_BYTE", "CPU_CACHE_BYTES", "DEFAULT_MEMORY_FRACTION", "GIB"]

GIB = 2**30

# Fitted by `bench/tiling_study.py calibrate` (nasdip-denoise at widths 16-64, dip-skip, and one searched
# pick's skips under bicubic, bilinear and nearest upsampling; 1-4 members, 128-1024 px sides, 5-10 steps each;
# peak RSS read from /proc/self/status VmHWM in a fresh process per point, the median step after two) on a
# 2-core CPU with a 32 MiB L3 cache: bench/README.md, bench/results/tiling-cpu.json.
#: Resident bytes of a process that has imported torch and the package, before the per-pixel part.
CPU_BASE_BYTES = 501e6
#: Peak resident bytes per byte autograd saves, cross-scale U-Nets (activation gradients, oneDNN buffers,
#: the allocator); dip-skip keeps fewer of its saved maps alive at once.
CPU_SAVED_FACTOR = 1.18
CPU_SAVED_FACTOR_DIP_SKIP = 1.05
#: Seconds per step per group member that do not grow with the pixels (Python, Adam, launch).
CPU_SECONDS_PER_MEMBER = 0.0225
#: Floating-point operations per second of the convolutions ...
CPU_FLOPS_PER_SECOND = 112e9
#: ... seconds per byte an operation reads or writes in a tensor that fits the cache ...
CPU_SECONDS_PER_TOUCHED_BYTE = 5.19e-11
#: ... and in a tensor larger than :data:`CPU_CACHE_BYTES` (memory traffic, not cache) ...
CPU_SECONDS_PER_SPILLED_BYTE = 2.63e-10
#: ... and per tap-weighted byte of a bilinear or bicubic upsampling (forward and backward).
CPU_SECONDS_PER_TAP_BYTE = 3.13e-10
#: Size of a tensor above which its traffic is counted as spilled from the cache (fitted).
CPU_CACHE_BYTES = 24 * 2**20

#: Share of the available memory a run may plan to use when no budget is given.
DEFAULT_MEMORY_FRACTION = 0.5

_PROFILE_SIDE = 64


@dataclass(frozen=True)
class NetworkProfile:
    """Per-pixel costs of one network (float32).

    ``saved_bytes_per_pixel``: bytes autograd keeps for the backward pass per
    output pixel; ``fixed_saved_bytes``: what it keeps whatever the size (the
    weights); ``flops_per_pixel``: floating-point operations of one training
    step (forward and backward) per output pixel; ``parameters``: count;
    ``saved_factor``: peak resident bytes per saved byte (measured per
    family of networks, see the constants); ``in_channels``: the input code's;
    ``touch_slopes``: for every tensor an operation of a training step reads
    or writes (views left out) that grows with the image, its bytes per
    output pixel, ascending; ``fixed_touched_bytes``: the bytes of the
    tensors that do not grow (weights, statistics); ``tap_bytes_per_pixel``:
    bytes the bilinear and bicubic upsamplings write (forward and backward)
    per output pixel, times their taps (4 and 16).
    """

    saved_bytes_per_pixel: float
    fixed_saved_bytes: float
    flops_per_pixel: float
    parameters: int
    saved_factor: float = CPU_SAVED_FACTOR
    in_channels: int = 32
    touch_slopes: tuple[float, ...] = ()
    fixed_touched_bytes: float = 0.0
    tap_bytes_per_pixel: float = 0.0

    def saved_bytes(self, pixels: int) -> float:
        """Bytes autograd keeps during one step of a network of ``pixels`` output pixels."""
        return self.fixed_saved_bytes + self.saved_bytes_per_pixel * pixels

    def touched_bytes(self, pixels: int, cache_bytes: float = CPU_CACHE_BYTES) -> tuple[float, float]:
        """Bytes one training step of a ``pixels``-pixel network reads and writes:
        (in tensors of at most ``cache_bytes``, in larger ones)."""
        slopes = self.touch_slopes
        cut = bisect.bisect_right(slopes, cache_bytes / max(1, pixels))
        small = self.fixed_touched_bytes + pixels * math.fsum(slopes[:cut])
        return small, pixels * math.fsum(slopes[cut:])


#: Taps per output value of the interpolating upsamplings (2-D).
_TAPS = {"upsample_bilinear2d": 4, "upsample_bilinear2d_backward": 4,
         "upsample_bicubic2d": 16, "upsample_bicubic2d_backward": 16}


class _Touches(TorchDispatchMode):
    """Records, for every operation that is not a view, the bytes of each tensor it
    reads or writes, and the tap-weighted bytes the interpolating upsamplings write."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.tap_bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
            self.sizes.extend(t.numel() * t.element_size() for t in tensors)
            taps = _TAPS.get(func.overloadpacket.__name__)
            if taps:
                self.tap_bytes += taps * sum(t.numel() * t.element_size() for t in tree_flatten(out)[0]
                                             if isinstance(t, torch.Tensor))
        return out


def _step_counts(net: torch.nn.Module, z: torch.Tensor) -> tuple[int, float, _Touches]:
    """Bytes autograd saves, FLOPs, and touched bytes of one forward and backward pass of
    ``net`` on ``z`` (meta)."""
    # imported here: torch's FLOP counter imports Triton and Inductor, which the package leaves
    # unimported until something compiles
    from torch.utils.flop_counter import FlopCounterMode

    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        storages[st._cdata] = st.nbytes()  # one entry per storage, however many views of it are saved
        return t

    net.zero_grad(set_to_none=True)  # each pass starts from no gradients, so both run the same operations
    touches = _Touches()
    with FlopCounterMode(display=False) as counter, touches:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = net(z)
        out.sum().backward()
    return sum(storages.values()), counter.get_total_flops(), touches


@functools.lru_cache(maxsize=64)
def _profile(arch: Union[Genotype, str], width: int, in_channels: int, out_channels: int,
             task: Optional[str]) -> NetworkProfile:
    # On the meta device: shapes, storages and operation counts without computing anything.
    meta = torch.device("meta")
    with torch.random.fork_rng(devices=[]):
        net = build_network(arch, in_channels, out_channels, width, task=task, device=meta)
    fmt = torch.channels_last  # the CPU layout (docs/design.md §7); the byte counts do not depend on it
    s = _PROFILE_SIDE
    small, flops, one = _step_counts(net, torch.empty(1, in_channels, s, s, device=meta).contiguous(memory_format=fmt))
    large, _, two = _step_counts(net, torch.empty(1, in_channels, s, 2 * s, device=meta).contiguous(
        memory_format=fmt))
    per_px = (large - small) / (s * s)
    if len(one.sizes) != len(two.sizes):
        raise RuntimeError("a network's operations depend on the input size; cannot profile it")
    # the same operations on twice the pixels: each tensor's growth is its bytes per pixel
    slopes = [(b - a) / (s * s) for a, b in zip(one.sizes, two.sizes)]
    fixed = math.fsum(a for a, d in zip(one.sizes, slopes) if d == 0)
    return NetworkProfile(saved_bytes_per_pixel=per_px, fixed_saved_bytes=max(0.0, small - per_px * s * s),
                          flops_per_pixel=flops / (s * s),
                          parameters=sum(p.numel() for p in net.parameters()),
                          saved_factor=CPU_SAVED_FACTOR_DIP_SKIP if arch == "dip-skip" else CPU_SAVED_FACTOR,
                          in_channels=in_channels, touch_slopes=tuple(sorted(d for d in slopes if d > 0)),
                          fixed_touched_bytes=fixed, tap_bytes_per_pixel=(two.tap_bytes - one.tap_bytes) / (s * s))


def profile_network(architecture: Union[Genotype, str], width: int, in_channels: int, out_channels: int,
                    task: Optional[str] = None) -> NetworkProfile:
    """Measure the per-pixel costs of a network (:class:`NetworkProfile`).

    Builds the network on PyTorch's meta device (shapes only, nothing
    computed) and runs it on 64 × 64 and 64 × 128 inputs: the slope is the
    bytes per pixel, the rest the weights autograd keeps; cached per argument set.
    """
    return _profile(resolve_architecture(architecture), int(width), int(in_channels), int(out_channels), task)


def _monitor_bytes_per_pixel(channels: int, iterations: int, early_stopping: Optional[EarlyStopping]) -> float:
    """What the DIP monitor and loop keep per output pixel of one member (bytes):
    the observation, input code noise and outputs (float32), and early
    stopping's window of raw outputs with its float64 sums."""
    per = 6 * 4  # target, smoothed, last, this step's output and its clone, result
    if early_stopping is not None:
        items = min(early_stopping.window, iterations)
        per += 4 * items + 3 * 8  # the window; float64 sum, observation and mean
        if early_stopping.method in ("wmv", "emv"):
            per += 8  # the sum of squares
    return float(channels * per)


#: Weight averages a DIP run keeps per member (:mod:`isnas_fast.dip.averaging`: a window cut into at
#: most 16 blocks, plus the block being filled), each with a copy of the weights and its noisy input code.
AVERAGING_BLOCKS = 17


def _averaging_bytes(profile: "NetworkProfile", pixels: int, iterations: int) -> float:
    """Bytes one member's weight averaging keeps: per block, the weights and the
    (1, C_in, H, W) input code it was fed (counted from the code, not measured)."""
    blocks = min(AVERAGING_BLOCKS, iterations)
    return float(blocks * 4 * (profile.parameters + profile.in_channels * pixels))


@dataclass(frozen=True)
class ResourceEstimate:
    """The estimated cost of a DIP run on a device.

    ``peak_bytes``: the process's peak resident memory (CPU) or the device
    memory the run allocates (CUDA); ``working_bytes``: the part the run adds
    (``peak_bytes`` less what the process holds before it starts), what is
    compared with the available memory; ``seconds_per_step``: one step of
    every group (groups run one after the other), None where not measured
    (CUDA); ``iterations``: steps per member; ``members``: networks trained
    together in the largest group; ``pixels``: output pixels of that group.
    """

    peak_bytes: float
    working_bytes: float
    seconds_per_step: Optional[float]
    iterations: int
    members: int
    pixels: int

    @property
    def seconds(self) -> Optional[float]:
        """The whole run's time if no member stops early (s), None where not measured."""
        return None if self.seconds_per_step is None else self.seconds_per_step * self.iterations

    def describe(self) -> str:
        """One line: ``"about 2.1 GiB peak, 3.4 s per step (1200 steps: about 1.1 h) (estimated)"``."""
        text = f"about {self.peak_bytes / GIB:.1f} GiB peak"
        if self.seconds_per_step is not None:
            text += f", {format_duration(self.seconds_per_step)} per step ({self.iterations} steps: about " \
                    f"{format_duration(self.seconds)})"
        return text + " (estimated)"


def estimate_run(profile: NetworkProfile, member_pixels: Sequence[int], device: torch.device | str, *,
                 channels: int, iterations: int, early_stopping: Optional[EarlyStopping] = None,
                 groups: int = 1, retained_bytes: float = 0.0) -> ResourceEstimate:
    """Estimate a group of DIP runs (fp32) of one network on ``device``.

    ``member_pixels``: output pixels (H·W) of each member of the largest
    group; ``channels``: the image's; ``groups``: how many such groups run
    one after the other (the time per step covers them all, the peak is one
    group's plus ``retained_bytes``, what earlier groups leave behind); the
    ``heldout`` stop trains each member twice, so its estimate counts twice
    the steps.  See the module docstring for the model.
    """
    device = torch.device(device)
    if early_stopping is not None and early_stopping.method == "heldout":
        iterations = 2 * iterations  # a twin run with pixels held out, then the run on every pixel
    k = len(member_pixels)
    pixels = int(sum(member_pixels))
    saved = sum(profile.saved_bytes(p) for p in member_pixels)
    monitor = _monitor_bytes_per_pixel(channels, iterations, early_stopping) * pixels
    monitor += sum(_averaging_bytes(profile, p, iterations) for p in member_pixels)
    # parameters, gradients and Adam's two moments of every member
    state = 4 * 4 * profile.parameters * k
    working = profile.saved_factor * saved + monitor + state + retained_bytes
    if device.type == "cpu":
        peak = CPU_BASE_BYTES + working
        seconds = groups * cpu_step_seconds(profile, member_pixels)
    else:
        peak, seconds = working, None
    return ResourceEstimate(peak_bytes=peak, working_bytes=working, seconds_per_step=seconds,
                            iterations=int(iterations), members=k, pixels=pixels)


def step_features(profile: NetworkProfile, member_pixels: Sequence[int],
                  cache_bytes: float = CPU_CACHE_BYTES) -> dict[str, float]:
    """The counts the CPU time model weighs for one step of a group: ``members``,
    ``flops``, ``touched`` and ``spilled`` bytes (tensors up to / over
    ``cache_bytes``) and ``tap_bytes``, summed over the members."""
    touched = [profile.touched_bytes(p, cache_bytes) for p in member_pixels]
    return {"members": float(len(member_pixels)), "flops": profile.flops_per_pixel * sum(member_pixels),
            "touched": math.fsum(t for t, _ in touched), "spilled": math.fsum(s for _, s in touched),
            "tap_bytes": profile.tap_bytes_per_pixel * sum(member_pixels)}


def cpu_step_seconds(profile: NetworkProfile, member_pixels: Sequence[int]) -> float:
    """Estimated seconds of one CPU training step of a group of members with
    ``member_pixels`` output pixels each (the fitted constants above)."""
    f = step_features(profile, member_pixels)
    return (CPU_SECONDS_PER_MEMBER * f["members"] + f["flops"] / CPU_FLOPS_PER_SECOND
            + CPU_SECONDS_PER_TOUCHED_BYTE * f["touched"] + CPU_SECONDS_PER_SPILLED_BYTE * f["spilled"]
            + CPU_SECONDS_PER_TAP_BYTE * f["tap_bytes"])


def _meminfo(key: str) -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def available_memory(device: torch.device | str) -> Optional[int]:
    """Bytes a new run may use on ``device``: MemAvailable of /proc/meminfo on
    the CPU, the free memory ``torch.cuda.mem_get_info`` reports on CUDA;
    None where it cannot be read (another OS)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return _meminfo("MemAvailable")


@dataclass(frozen=True)
class ResourcePlan:
    """How a run will fit: whole, or in tiles trained in groups.

    ``tile``: the tile side (px), None for the whole image; ``overlap``: px;
    ``group_size``: tiles trained together; ``plan``: the tiles (None when
    whole); ``estimate``: :class:`ResourceEstimate` of the chosen layout;
    ``budget_bytes``: what the run's working memory was allowed
    (None: no limit known).
    """

    tile: Optional[int]
    overlap: int
    group_size: int
    plan: Optional[TilePlan]
    estimate: ResourceEstimate
    budget_bytes: Optional[float]

    def describe(self) -> str:
        """One line for the run's log: the layout and the estimate."""
        layout = "whole image" if self.plan is None else \
            f"{self.plan.describe()}, {self.group_size} per group"
        return f"{layout}: {self.estimate.describe()}"


def _tiled(size, profile, device, channels, iterations, early_stopping, tile, overlap, budget):
    """(tile, plan, group size, estimate) of the largest group that fits ``budget``; group size 0
    (with the estimate of one tile per group) when not even that fits."""
    ov = min(overlap, (tile // 2) // 8 * 8)
    plan = plan_tiles(size, tile, ov)
    n = len(plan)
    h, w = size

    # what every tile's run keeps until the blend (restore_in_tiles without keep_networks): its input
    # code, smoothed and last outputs, and the blended image
    retained = plan.total_pixels * 4 * (profile.in_channels + 2 * channels) + 8 * channels * h * w

    def est(g: int) -> ResourceEstimate:
        return estimate_run(profile, [plan.tile_pixels] * g, device, channels=channels, iterations=iterations,
                            early_stopping=early_stopping, groups=math.ceil(n / g), retained_bytes=retained)

    if budget is not None and est(1).working_bytes > budget:
        return tile, plan, 0, est(1)
    g = n
    if budget is not None:
        g = 1
        while g < n and est(g + 1).working_bytes <= budget:
            g += 1
    g = math.ceil(n / math.ceil(n / g))  # balanced groups
    return tile, plan, g, est(g)


def plan_resources(
    size: tuple[int, int],
    architecture: Union[Genotype, str],
    *,
    width: int,
    in_channels: int,
    channels: int,
    task: str,
    iterations: int,
    device: torch.device | str,
    early_stopping: Optional[EarlyStopping] = None,
    tile: Optional[int] = None,
    overlap: int = DEFAULT_OVERLAP,
    memory_budget: Optional[float] = None,
    memory_fraction: float = DEFAULT_MEMORY_FRACTION,
) -> ResourcePlan:
    """Decide whether to tile an output image of ``size`` = (H, W) px, and how, so the run fits.

    ``width`` / ``in_channels`` / ``channels`` / ``task``: as the network is
    built (the width of ``dip-skip`` is its own); ``iterations`` and
    ``early_stopping``: the final run's.  ``tile``: None = automatic (the
    whole image when it fits, else the tile side whose tiles fit and fit the
    fewest pixels in all, i.e. the least time); a side in px = tile with it
    (a side >= both of the image's is the whole image).  ``memory_budget``:
    bytes the run's working memory may take; None = ``memory_fraction`` of
    :func:`available_memory` (no limit where that cannot be read).
    Groups hold as many tiles as fit the budget.

    Raises InputError, before any training and in one line with the
    estimate and the remedy, when the asked tile -- or, automatically, even
    a 64 px tile alone -- needs more than the budget.
    """
    h, w = (int(v) for v in size)
    profile = profile_network(architecture, width, in_channels, channels, task)
    budget, room = memory_budget, "are allowed"
    if budget is None:
        avail = available_memory(device)
        budget = None if avail is None else memory_fraction * avail
        if avail is not None:
            room = f"are available ({memory_fraction:.0%} of the {avail / GIB:.1f} GiB free)"

    kw = dict(channels=channels, iterations=iterations, early_stopping=early_stopping)

    def gib(b: float) -> str:
        return f"{b / GIB:.1f} GiB"

    whole = estimate_run(profile, [h * w], device, **kw)
    if tile is not None and tile >= max(h, w):
        tile = None if budget is None or whole.working_bytes <= budget else tile
    if tile is None and (budget is None or whole.working_bytes <= budget):
        return ResourcePlan(None, 0, 1, None, whole, budget)

    candidates = [tile] if tile is not None else list(range(max(h, w) // TILE_MULTIPLE * TILE_MULTIPLE,
                                                            2 * TILE_MULTIPLE - 1, -TILE_MULTIPLE))
    best, smallest = None, None
    for t in candidates:
        if t >= max(h, w):
            continue
        found = _tiled((h, w), profile, device, channels, iterations, early_stopping, t, overlap, budget)
        if found[2] == 0:
            if smallest is None or found[3].working_bytes < smallest.working_bytes:
                smallest = found[3]
        elif best is None or found[1].total_pixels < best[1].total_pixels:
            best = found
    if best is None:
        need = smallest if smallest is not None else whole
        what = f"a {tile} px tile" if tile is not None else ("tiles" if smallest is not None else "one piece")
        remedy = "use a smaller --width" if width > 16 else "free memory (--width 16 is the narrowest)"
        if tile is not None:
            fits = [t for t in range(tile - TILE_MULTIPLE, 2 * TILE_MULTIPLE - 1, -TILE_MULTIPLE)
                    if _tiled((h, w), profile, device, channels, iterations, early_stopping, t, overlap,
                              budget)[2] > 0]
            if fits:
                remedy = f"use --tile {fits[0]}" + (" or a smaller --width" if width > 16 else "")
        raise InputError(f"restoring {w}x{h} px in {what} needs about {gib(need.working_bytes)} (estimated) but "
                         f"{gib(budget)} {room}; {remedy}")
    t, plan, g, est = best
    return ResourcePlan(t, plan.overlap, g, plan, est, budget)


#: The network a run is estimated with before the search has picked one: per task, the NAS-DIP
#: baseline's genotype, whose dense skips keep more feature maps than the searched genotypes
#: measured (bench/README.md); its estimate errs on the side of tiling.
SEARCH_STAND_IN = {"denoise": "nasdip-denoise", "inpaint": "nasdip-inpaint", "sr": "nasdip-sr"}


def plan_restore(
    observation: Observation,
    settings: SearchSettings,
    *,
    device: torch.device | str,
    architecture: Union[Genotype, str, None] = None,
    in_channels: Optional[int] = None,
    tile: Optional[int] = None,
    overlap: int = DEFAULT_OVERLAP,
    memory_budget: Optional[float] = None,
    memory_fraction: float = DEFAULT_MEMORY_FRACTION,
) -> ResourcePlan:
    """:func:`plan_resources` for the final run of a restore, read from its settings.

    ``architecture``: the fixed architecture (``--arch``), or None before a
    search (estimated with :data:`SEARCH_STAND_IN`'s genotype for the task,
    with the image's channels as input code, as the search builds its
    networks).  ``in_channels``: the input code's (default: the image's;
    pass :func:`isnas_fast.api.baseline_input_channels` for ``--arch``, 32
    for a baseline by name).  Width,
    step count and early stopping come from ``settings`` as
    :func:`~isnas_fast.search.train_finals` reads them.  Raises InputError
    in one line when the run cannot fit (see :func:`plan_resources`).
    """
    task = observation.task.name
    arch = architecture if architecture is not None else SEARCH_STAND_IN[task]
    return plan_resources(
        observation.output_size, arch, width=settings.width_of(arch), in_channels=in_channels or observation.channels,
        channels=observation.channels, task=task,
        iterations=settings.final_run(task).iterations, device=device,
        early_stopping=settings.early_stopping, tile=tile, overlap=overlap, memory_budget=memory_budget,
        memory_fraction=memory_fraction)
