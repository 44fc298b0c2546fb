"""What a DIP run records per member: the smoothed output, losses, PSNR
curves, early stopping (docs/design.md §6), and the :class:`DIPResult` it ends with.

The loop calls :meth:`Monitor.record` after every step with the member's raw
output and loss; the monitor owns everything derived from them, so how a
step runs (:mod:`isnas_fast.dip.steps`) and what is recorded stay apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from torch import Tensor, nn

from ..quality import psnr
from ..tasks import Observation
from .early_stopping import Detector, make_detector
from .settings import EarlyStopping

__all__ = ["DIPResult", "Monitor", "probe_name"]


@dataclass
class DIPResult:
    """Outcome of one DIP run.

    ``output``: smoothed (EMA) output, (1, C, H, W) in [0, 1] -- or, with
    early stopping on, the mean of the most stable window, ending at
    ``stopped_at`` (``psnr_at_stop`` is its PSNR when ground truth is given).
    ``last_output``: the network's raw output f(z + noise) of the last step.
    ``losses``: task loss per step.  ``psnr_curve`` / ``psnr_raw_curve``:
    per-step PSNR (dB) of the smoothed / raw output, only with ground truth.
    ``seconds``: wall time of the loop; ``compile_seconds``: of which spent
    in the first (compiling) step when compiled.  ``cuda_graph``: whether the
    step was replayed as a CUDA graph.  ``precision``: the precision the run
    used (``"fp32"``, ``"tf32"`` or ``"bf16"``, the default resolved).
    ``variance_curve``: the stopping detector's signal per iteration.
    ``probes``: per watching detector (:func:`probe_name`), ``fired_at``
    (None: never), ``iteration`` it would have returned and that output's
    ``psnr`` (with ground truth).  ``snapshots``: the smoothed output at the
    iterations asked for, (1, C, H, W) each.
    """

    output: Tensor
    last_output: Tensor
    network: nn.Module
    z: Tensor
    losses: list[float]
    iterations_run: int
    seconds: float
    psnr_curve: Optional[list[float]] = None
    psnr_raw_curve: Optional[list[float]] = None
    stopped_at: Optional[int] = None
    early_stopped: bool = False
    variance_curve: list[float] = field(default_factory=list)
    compiled: bool = False
    compile_seconds: float = 0.0
    precision: str = "fp32"
    psnr_at_stop: Optional[float] = None
    cuda_graph: bool = False
    probes: dict[str, dict] = field(default_factory=dict)
    snapshots: dict[int, Tensor] = field(default_factory=dict)


def probe_name(settings: EarlyStopping) -> str:
    """A short name of a detector's settings, e.g. ``wmv/w100/p1000``."""
    extra = {k: v for k, v in settings.parameters().items() if k not in ("window", "patience", "rise")}
    name = f"{settings.method}/w{settings.window}/p{settings.patience}"
    name += "".join(f"/{k[0]}{v:g}" for k, v in extra.items())
    return name + (f"/r{settings.rise:g}" if settings.rise > 0 else "")


class _Probe:
    """A detector watching passively: what it would have returned, had it stopped the run."""

    def __init__(self, detector: Detector, gt: Optional[Tensor]):
        self.detector, self.gt = detector, gt
        self.fired_at: Optional[int] = None
        self.iteration: Optional[int] = None
        self.psnr: Optional[float] = None

    def update(self, it: int, raw: Tensor, smooth: Tensor, loss: float) -> None:
        if self.fired_at is not None:
            return
        if self.detector.update(it, raw, smooth, loss):
            self.fired_at = it
            self._freeze()

    def _freeze(self) -> None:
        d = self.detector
        self.iteration = d.best_iteration
        if self.gt is not None and d.best_output is not None:
            self.psnr = float(psnr(d.best_output, self.gt)[0])

    def record(self) -> dict:
        if self.fired_at is None:
            self._freeze()  # never fired: the run would return the best point at the end
        return {"fired_at": self.fired_at, "iteration": self.iteration, "psnr": self.psnr}


class Monitor:
    """Per-member record of a DIP run: EMA output, losses, curves, early stopping.

    ``ground_truth`` (1, C, H, W) only adds PSNR curves; ``early_stopping``
    None runs every iteration.  ``active`` turns False once the detector
    fires.  ``probes``: detectors that only watch (they never stop the run);
    the result's ``probes`` says, per detector, where it would have stopped
    and the PSNR of what it would have returned (with ground truth).
    ``observation``: what the run fits (needed by the ``shift`` detector).
    ``snapshots``: iterations at which the smoothed output is kept (a run's
    state at step S is what an S-step run ends with).
    """

    def __init__(self, ema: float, ground_truth: Optional[Tensor] = None,
                 early_stopping: Optional[EarlyStopping] = None, name: str = "DIP", *,
                 observation: Optional[Observation] = None, probes: Sequence[EarlyStopping] = (),
                 snapshots: Sequence[int] = ()):
        self.ema = ema
        self.snapshot_at = set(snapshots)
        self.snapshots: dict[int, Tensor] = {}
        self.gt = ground_truth
        self.name = name
        self.detector = make_detector(early_stopping, observation) if early_stopping is not None else None
        self.probes = {probe_name(p): _Probe(make_detector(p, observation), ground_truth) for p in probes}
        self.smooth: Optional[Tensor] = None
        self.last: Optional[Tensor] = None
        self.losses: list[float] = []
        self.curve: Optional[list[float]] = [] if ground_truth is not None else None
        self.raw_curve: Optional[list[float]] = [] if ground_truth is not None else None
        self.psnr_at_stop: Optional[float] = None
        self.active = True
        self.early = False
        self.iterations = 0

    def record(self, it: int, out: Tensor, loss: float) -> None:
        """Take iteration ``it``'s raw output (1, C, H, W) and loss."""
        if loss != loss:  # NaN
            raise RuntimeError(f"{self.name}: the loss became NaN at iteration {it}")
        o = out.detach().float()
        self.last = o
        self.smooth = o.clone() if self.smooth is None else self.smooth.mul_(self.ema).add_(o, alpha=1 - self.ema)
        self.losses.append(loss)
        self.iterations = it
        if it in self.snapshot_at:
            self.snapshots[it] = self.smooth.clamp(0, 1)
        if self.gt is not None:
            self.curve.append(float(psnr(self.smooth.clamp(0, 1), self.gt)[0]))
            self.raw_curve.append(float(psnr(o.clamp(0, 1), self.gt)[0]))
        for probe in self.probes.values():
            probe.update(it, o, self.smooth, loss)
        if self.detector is None:
            return
        best_before = self.detector.best_iteration
        stop = self.detector.update(it, o, self.smooth, loss)
        if self.gt is not None and self.detector.best_iteration != best_before:
            self.psnr_at_stop = float(psnr(self.detector.best_output, self.gt)[0])
        if stop:
            self.early = True
            self.active = False
            # a replayed CUDA graph (compiled or not) reuses its output buffers:
            # keep this member's last output out of them
            self.last = o.clone()

    def result(self, network: nn.Module, z: Tensor, seconds: float, *, compiled: bool, compile_seconds: float,
               precision: str, cuda_graph: bool) -> DIPResult:
        """The run's :class:`DIPResult` (with the detector on, its output is the most stable window's mean)."""
        assert self.smooth is not None and self.last is not None
        det = self.detector
        out = det.best_output if det is not None and det.best_output is not None else self.smooth
        return DIPResult(
            output=out.clamp(0, 1), last_output=self.last.clamp(0, 1), network=network, z=z,
            losses=self.losses, iterations_run=self.iterations, seconds=seconds, psnr_curve=self.curve,
            psnr_raw_curve=self.raw_curve, stopped_at=det.best_iteration if det is not None else None,
            early_stopped=self.early, variance_curve=det.trace if det is not None else [],
            compiled=compiled, compile_seconds=compile_seconds, precision=precision,
            psnr_at_stop=self.psnr_at_stop, cuda_graph=cuda_graph,
            probes={name: p.record() for name, p in self.probes.items()}, snapshots=self.snapshots,
        )
