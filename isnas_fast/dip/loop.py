"""The Deep Image Prior loop (docs/design.md §6): fit networks to corrupted images.

Adam (lr 0.01) on the task loss; the input code ``z ~ U(0, 0.1)`` is fixed and
each step feeds ``z + N(0, sigma_reg^2)`` with ``sigma_reg = 1/30``.  The
estimate averages over steps (the exponential moving average with weight
0.99, or an early-stopping detector's window); the run averages the
network's weights over those steps in blocks, each block's network on one
of its noisy inputs (:mod:`~isnas_fast.dip.averaging`), and returns what
that small ensemble computes -- which is also what a saved or exported
network computes.  BatchNorm stays in training mode throughout.  Ground truth, when given, is
only used to record a PSNR curve: it never influences the fit.

The loop reads in one screen: the step is planned once
(:mod:`~isnas_fast.dip.plan`), run by a strategy (:mod:`~isnas_fast.dip.steps`)
and recorded by a monitor per member (:mod:`~isnas_fast.dip.monitor`).
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import InputError
from ..network import batch_statistics_only
from ..tasks import Observation
from .monitor import DIPResult, Monitor
from .readout import clipped_noise_readout
from .plan import StepPlan, plan_step
from .progress import LogLines
from .settings import DIPSettings, EarlyStopping, RunOptions, precision_context
from .steps import build_step

__all__ = ["fit_dip", "fit_dip_group", "fit_group", "make_input_code"]


def make_input_code(channels: int, size: tuple[int, int], seed: int, scale: float = 0.1,
                    device: torch.device | None = None) -> Tensor:
    """Input code ``z ~ U(0, scale)`` of shape (1, channels, H, W), seeded (drawn on CPU)."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.rand((1, channels, *size), generator=g) * scale
    return z.to(device) if device is not None else z


def _per_member(value, n: int, what: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise InputError(f"need one {what} per network: {len(value)} for {n} networks")
        return list(value)
    return [value] * n


def fit_dip_group(
    networks: Sequence[nn.Module],
    observation: Union[Observation, Sequence[Observation]],
    settings: DIPSettings,
    *,
    seeds: Sequence[int],
    zs: Optional[Sequence[Optional[Tensor]]] = None,
    ground_truth: Union[Tensor, None, Sequence[Optional[Tensor]]] = None,
    early_stopping: EarlyStopping | None = None,
    compile: Optional[bool] = None,
    precision: Optional[str] = None,
    quiet: bool = False,
    desc: str = "DIP",
    callback: Callable[[int, float], None] | None = None,
    workers: Optional[int] = None,
    cuda_graph: Optional[bool] = None,
    probes: Sequence[EarlyStopping] = (),
    snapshots: Sequence[int] = (),
    served: bool = True,
) -> list[DIPResult]:
    """Fit K networks together, each to its observation, as one program.

    ``observation``: one :class:`~isnas_fast.tasks.Observation` for every
    network, or one per network (``ground_truth`` likewise: one (1, C, H, W)
    image, or one per network, or None).  Member ``k`` gets its own input
    code (``make_input_code(C_in, (H, W), seeds[k])`` unless ``zs[k]`` is
    given) and its own noise stream (seeded ``seeds[k] + 1``), exactly as
    :func:`fit_dip` would give it alone; each step minimises the sum of the
    members' losses (Adam is element-wise, so the sum changes no member's
    update).  Members that early-stop leave the group.  Returns one
    :class:`DIPResult` per network, in order.

    ``compile``, ``cuda_graph``, ``workers``: None = automatic, ``precision``:
    None = the device's default (see :func:`~isnas_fast.dip.plan.plan_step`).
    ``callback(it, loss)`` gets the first active member's loss.  ``probes``:
    early-stopping detectors that watch every member without stopping it
    (recorded in each result's ``probes``).  ``snapshots``: iterations whose
    smoothed output each result keeps.  ``served``: each result's network is
    the :class:`~isnas_fast.dip.averaging.AveragedNetwork` of the run and
    its output that network's image (the default); False keeps the raw
    output average and the last weights (a cohort's members, which are
    only ranked, never served).  The same as :func:`fit_group` with these
    keywords gathered in a :class:`~isnas_fast.dip.settings.RunOptions`.
    """
    options = RunOptions(settings, early_stopping=early_stopping, compile=compile, cuda_graph=cuda_graph,
                         precision=precision, workers=workers, served=served, probes=tuple(probes),
                         snapshots=tuple(snapshots))
    return fit_group(networks, observation, options, seeds=seeds, zs=zs, ground_truth=ground_truth, quiet=quiet,
                     desc=desc, callback=callback)


def fit_group(
    networks: Sequence[nn.Module],
    observation: Union[Observation, Sequence[Observation]],
    options: RunOptions,
    *,
    seeds: Sequence[int],
    zs: Optional[Sequence[Optional[Tensor]]] = None,
    ground_truth: Union[Tensor, None, Sequence[Optional[Tensor]]] = None,
    quiet: bool = False,
    desc: str = "DIP",
    callback: Callable[[int, float], None] | None = None,
) -> list[DIPResult]:
    """:func:`fit_dip_group` with the run's options in one
    :class:`~isnas_fast.dip.settings.RunOptions` (``options.together`` is read
    by whoever builds the group, not here: these networks are one group)."""
    if not networks:
        raise InputError("fit_dip_group needs at least one network")
    n = len(networks)
    if len(seeds) != n:
        raise InputError(f"need one seed per network: {len(seeds)} seeds for {n} networks")
    device = next(networks[0].parameters()).device
    plan, one_thread = _plan(device, n, options)
    with _intra_op_threads(1) if one_thread else contextlib.nullcontext():
        observations = [o.to(device) for o in _per_member(observation, n, "observation")]
        truths = [g.to(device) if g is not None else None for g in _per_member(ground_truth, n, "ground truth")]
        codes = _input_codes(networks, observations, seeds, zs, options.dip.input_scale, device)
        monitors = [Monitor(options.dip.ema, truths[k], options.early_stopping, desc, observation=observations[k],
                            probes=options.probes, snapshots=options.snapshots,
                            network=networks[k] if options.served else None,
                            readout=_readout(observations[k], options)) for k in range(n)]
        seconds, compile_seconds = _run_steps(plan, networks, observations, codes, seeds, monitors, options.dip,
                                              quiet=quiet, desc=desc, callback=callback)
        return [m.result(net, z, seconds, compiled=plan.compiled, compile_seconds=compile_seconds,
                         precision=plan.precision, cuda_graph=plan.cuda_graph)
                for m, net, z in zip(monitors, networks, codes)]


def _readout(observation: Observation, options: RunOptions) -> Optional[Tensor]:
    """The clipped-noise readout of a served run that asks for it and fits a noise level, else None."""
    sigma = observation.task.noise_level
    if not (options.clip_readout and options.served and sigma):
        return None
    return clipped_noise_readout(float(sigma) / 255.0).to(observation.y.device)


def _plan(device: torch.device, n: int, options: RunOptions) -> tuple[StepPlan, bool]:
    """The step's plan, and whether the run goes on one intra-op thread (``member_threads=1``
    on an eager CPU run: one shard per thread of the caller, each member on one thread)."""
    def plan(workers: Optional[int]) -> StepPlan:
        return plan_step(device, n, options.iterations, compile=options.compile, cuda_graph=options.cuda_graph,
                         precision=options.precision, workers=workers)

    first = plan(options.workers)
    if options.member_threads != 1 or device.type != "cpu" or first.compiled:
        return first, False
    return plan(options.workers or min(torch.get_num_threads(), n)), True


@contextlib.contextmanager
def _intra_op_threads(threads: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _input_codes(networks: Sequence[nn.Module], observations: Sequence[Observation], seeds: Sequence[int],
                 zs: Optional[Sequence[Optional[Tensor]]], scale: float, device: torch.device) -> list[Tensor]:
    """Each member's input code on ``device``: ``zs[k]`` when given, else drawn with ``seeds[k]``."""
    codes = []
    for k, net in enumerate(networks):
        z = zs[k] if zs is not None else None
        if z is None:
            c_in = getattr(net, "in_channels", None)
            if c_in is None:
                raise InputError("network has no in_channels attribute; pass z explicitly")
            z = make_input_code(c_in, observations[k].output_size, seeds[k], scale, device)
        codes.append(z.to(device))
    return codes


def _run_steps(plan: StepPlan, networks: Sequence[nn.Module], observations: Sequence[Observation],
               codes: Sequence[Tensor], seeds: Sequence[int], monitors: Sequence[Monitor], settings: DIPSettings,
               *, quiet: bool, desc: str, callback: Callable[[int, float], None] | None) -> tuple[float, float]:
    """The loop: every step, the active members' noisy inputs through the planned step into
    their monitors.  Returns (seconds of the loop, seconds of the first, compiling, step)."""
    device, n, reg = plan.device, len(networks), settings.reg_noise_std
    noise = [torch.Generator(device=device).manual_seed(int(s) + 1) for s in seeds]
    t0 = time.perf_counter()
    compile_seconds = 0.0
    bar = tqdm(total=settings.iterations, desc=desc, disable=True if quiet else None, leave=False, unit="it")
    lines = LogLines(settings.iterations, desc, enabled=bool(bar.disable) and not quiet)  # a log has no bar
    # BatchNorm normalises with the batch statistics throughout DIP; its running
    # statistics are never read, so the fit does not update them.
    with precision_context(plan.precision, device), contextlib.ExitStack() as stack:
        for net in networks:
            stack.enter_context(batch_statistics_only(net.train()))
        step = build_step(plan, networks, [o.loss for o in observations], settings.lr)
        stack.callback(step.close)
        if plan.compiled and not quiet:
            # the first step compiles: say so before the wait (minutes on a CPU)
            bar.set_description(f"{desc} (compiling)")
            tqdm.write(f"{desc}: compiling the DIP step with torch.compile (the first step waits for it)",
                       file=sys.stderr)
        for it in range(1, settings.iterations + 1):
            active = [k for k in range(n) if monitors[k].active]
            if not active:
                break
            t_step = time.perf_counter()
            inputs = [codes[k] + reg * torch.randn(codes[k].shape, generator=noise[k], device=device,
                                                   dtype=codes[k].dtype) for k in active]
            for k, x in zip(active, inputs):
                monitors[k].before_step(it, x)
            outs, losses = step(active, inputs)
            with torch.no_grad():
                values = torch.stack([l.detach() for l in losses]).tolist()
                for k, out, value in zip(active, outs, values):
                    monitors[k].record(it, out, value)
            if it == 1 and plan.compiled:
                compile_seconds = time.perf_counter() - t_step
                bar.set_description(desc)
            if callback is not None:
                callback(it, values[0])
            bar.update(1)
            lines.update(it)
            if it % 25 == 0:
                bar.set_postfix(loss=f"{values[0]:.2e}", refresh=False)
    bar.close()
    return time.perf_counter() - t0, compile_seconds


def fit_dip(
    network: nn.Module,
    observation: Observation,
    settings: DIPSettings,
    *,
    seed: int = 0,
    z: Tensor | None = None,
    ground_truth: Tensor | None = None,
    early_stopping: EarlyStopping | None = None,
    compile: Optional[bool] = None,
    precision: Optional[str] = None,
    quiet: bool = False,
    desc: str = "DIP",
    callback: Callable[[int, float], None] | None = None,
    cuda_graph: bool = False,
    probes: Sequence[EarlyStopping] = (),
    served: bool = True,
) -> DIPResult:
    """Fit ``network`` to ``observation`` with DIP; the result's ``network`` is the run's
    :class:`~isnas_fast.dip.averaging.AveragedNetwork` and its output that network's image.

    ``network`` maps (1, C_in, H, W) to (1, C, H, W) where (H, W) is
    ``observation.output_size``; it is trained in place (train mode).  ``z``
    defaults to ``make_input_code(C_in, (H, W), seed)`` with C_in read from
    the network's ``in_channels`` attribute.  ``ground_truth`` (1, C, H, W) is
    used only to record PSNR curves.  ``compile``: None = automatic
    (:func:`~isnas_fast.dip.plan.should_compile`).  ``precision``: ``"fp32"``,
    ``"tf32"`` or ``"bf16"``; None = ``"tf32"`` on CUDA, ``"fp32"`` elsewhere.
    ``cuda_graph``: replay the step as a CUDA graph (CUDA only).  ``probes``:
    early-stopping detectors that only watch, ``served``: see :func:`fit_dip_group`.
    Deterministic for a given seed on the same machine and backend -- on the
    CPU; on CUDA, PyTorch's atomic-add backward of reflection padding and
    bilinear upsampling makes runs differ in the last bits, and DIP's Adam
    steps amplify that.
    """
    return fit_dip_group(
        [network], observation, settings, seeds=[seed], zs=[z], ground_truth=ground_truth,
        early_stopping=early_stopping, compile=compile, precision=precision, quiet=quiet, desc=desc,
        callback=callback, cuda_graph=cuda_graph, probes=probes, served=served,
    )[0]
