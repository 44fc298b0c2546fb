"""What a DIP run records per member: the smoothed output, losses, PSNR
curves, early stopping (docs/design.md §6), and the :class:`DIPResult` it ends with.

The loop calls :meth:`Monitor.record` after every step with the member's raw
output and loss; the monitor owns everything derived from them, so how a
step runs (:mod:`isnas_fast.dip.steps`) and what is recorded stay apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from torch import Tensor, nn

from ..quality import psnr
from ..tasks import Observation
from .averaging import BlockAverages, Member, block_length, build_averaged, ema_span, network_output
from .early_stopping import Detector, make_detector
from .settings import EarlyStopping

__all__ = ["DIPResult", "Monitor", "probe_name"]


@dataclass
class DIPResult:
    """Outcome of one DIP run.

    ``output``: the returned image, (1, C, H, W) in [0, 1]: ``network(z)``
    where ``network`` is the run's
    :class:`~isnas_fast.dip.averaging.AveragedNetwork` -- block-averaged
    weights over the steps the run's estimate averages, each block on one
    of its noisy inputs -- computed without autocast, BatchNorm using batch
    statistics, so it is what a saved or exported network computes.
    ``output_average``: the average of the raw outputs themselves over the
    same steps (their EMA, or with early stopping the mean of the
    detector's window ending at ``stopped_at``).  ``psnr_at_stop`` is
    ``output``'s PSNR when ground truth is given (with a detector).
    ``averaged_over``: in words, what ``output`` averages.  With
    ``served=False`` (:func:`~isnas_fast.dip.fit_dip_group`) ``output`` is
    ``output_average`` and ``network`` the last step's.
    ``last_output``: the network's raw output f(z + noise) of the last step.
    ``losses``: task loss per step.  ``psnr_curve`` / ``psnr_raw_curve``:
    per-step PSNR (dB) of the smoothed / raw output, only with ground truth
    (measured as the task measures it: :meth:`~isnas_fast.tasks.Task.psnr`).
    ``seconds``: wall time of the loop; ``compile_seconds``: of which spent
    in the first (compiling) step when compiled.  ``cuda_graph``: whether the
    step was replayed as a CUDA graph.  ``precision``: the precision the run
    used (``"fp32"``, ``"tf32"`` or ``"bf16"``, the default resolved).
    ``variance_curve``: the stopping detector's signal per iteration.
    ``probes``: per watching detector (:func:`probe_name`), ``fired_at``
    (None: never), ``iteration`` it would have returned and that output's
    ``psnr`` (with ground truth).  ``snapshots`` / ``raw_snapshots``: the
    smoothed / raw output at the iterations asked for, (1, C, H, W) each.
    ``restarts``: with several random starts averaged
    (:func:`~isnas_fast.dip.restarts.merge_restarts`), one entry per run;
    the other fields then describe the first run, ``output`` and ``network``
    the mean of all.  ``blended``: likewise, with runs of different
    architectures averaged (:func:`~isnas_fast.dip.blend.blend_results`).
    ``anchored``: with the starts' mean shrunk toward a classical image
    (:func:`~isnas_fast.dip.anchor.anchor_results`), its name, the weight
    kept and the number of starts; ``output`` and ``network`` are then the
    shrunk image's.
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
    raw_snapshots: dict[int, Tensor] = field(default_factory=dict)
    output_average: Optional[Tensor] = None
    averaged_over: str = ""
    restarts: list[dict] = field(default_factory=list)
    blended: list[dict] = field(default_factory=list)
    anchored: dict = field(default_factory=dict)


def probe_name(settings: EarlyStopping) -> str:
    """A short name of a detector's settings, e.g. ``wmv/w100/p1000``."""
    extra = {k: v for k, v in settings.parameters().items() if k not in ("window", "patience", "rise")}
    name = f"{settings.method}/w{settings.window}/p{settings.patience}"
    name += "".join(f"/{k[0]}{v:g}" for k, v in extra.items())
    return name + (f"/r{settings.rise:g}" if settings.rise > 0 else "")


class _Probe:
    """A detector watching passively: what it would have returned, had it stopped the run."""

    def __init__(self, detector: Detector, gt: Optional[Tensor], measure: Callable[[Tensor, Tensor], Tensor]):
        self.detector, self.gt, self.measure = detector, gt, measure
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
            self.psnr = float(self.measure(d.best_output, self.gt)[0])

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
    ``observation``: what the run fits (needed by the ``shift`` detector);
    its task decides how every PSNR is measured (:meth:`~isnas_fast.tasks.Task.psnr`:
    the Y channel for RGB super-resolution), so the curves, the PSNR at the
    stop and the probes' agree with the PSNR a report states.
    ``snapshots``: iterations at which the smoothed output is kept (a run's
    state at step S is what an S-step run ends with).  ``network``: the
    member's network; its weights are block-averaged over the steps the
    returned estimate averages (:class:`~isnas_fast.dip.averaging.BlockAverages`,
    fed by :meth:`before_step`) and the result's network is the
    :class:`~isnas_fast.dip.averaging.AveragedNetwork` they make, with
    ``readout`` (a (n,) table, :mod:`~isnas_fast.dip.readout`) applied to its
    output when given.  Probes record output averages only.
    """

    def __init__(self, ema: float, ground_truth: Optional[Tensor] = None,
                 early_stopping: Optional[EarlyStopping] = None, name: str = "DIP", *,
                 observation: Optional[Observation] = None, probes: Sequence[EarlyStopping] = (),
                 snapshots: Sequence[int] = (), network: Optional[nn.Module] = None,
                 readout: Optional[Tensor] = None):
        self.ema = ema
        self.readout = readout
        self.snapshot_at = set(snapshots)
        self.snapshots: dict[int, Tensor] = {}
        self.raw_snapshots: dict[int, Tensor] = {}
        self.gt = ground_truth
        self.name = name
        self.psnr = observation.task.psnr if observation is not None else psnr
        self.detector = make_detector(early_stopping, observation) if early_stopping is not None else None
        self.probes = {probe_name(p): _Probe(make_detector(p, observation), ground_truth, self.psnr)
                       for p in probes}
        self.smooth: Optional[Tensor] = None
        self.last: Optional[Tensor] = None
        self.losses: list[float] = []
        self.curve: Optional[list[float]] = [] if ground_truth is not None else None
        self.raw_curve: Optional[list[float]] = [] if ground_truth is not None else None
        self.psnr_at_stop: Optional[float] = None
        self.active = True
        self.early = False
        self.iterations = 0
        self.weights: Optional[BlockAverages] = None
        self.best_blocks: Optional[tuple[list[Member], list[float]]] = None
        self.best_what = ""
        if network is not None:
            det = self.detector
            if det is not None and det.averages == "window":
                span = det.settings.window
            else:
                span = ema_span(det.averaging() if det is not None and det.averages == "ema" else ema)
            block = block_length(span)
            self.weights = BlockAverages(network, block, span + block)

    def before_step(self, it: int, x: Tensor) -> None:
        """Take the weights step ``it`` starts from and its noisy input ``x``."""
        if self.weights is not None:
            self.weights.add(it, x)

    def _ema_blocks(self, decay: float, it: int) -> tuple[tuple[list[Member], list[float]], str]:
        assert self.weights is not None
        blocks = self.weights.ema(decay)
        return blocks, (f"the exponential moving average ({decay:g}) up to step {it}, over "
                        f"{len(blocks[0])} block(s) of up to {self.weights.block} steps")

    def _keep_best_weights(self, it: int) -> None:
        """The blocks that stand for the detector's new candidate (found at step ``it``)."""
        det, w = self.detector, self.weights
        assert det is not None and w is not None
        if det.averages == "window":
            span = int(det.averaging())
            self.best_blocks = w.window(span)
            self.best_what = (f"steps {it - span + 1}-{it} (the detector's window), over "
                              f"{len(self.best_blocks[0])} block(s) of up to {w.block} steps")
        else:
            decay = self.ema if det.averages == "smoothed" else det.averaging()
            self.best_blocks, self.best_what = self._ema_blocks(decay, it)

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
            self.raw_snapshots[it] = o.clamp(0, 1)
        if self.gt is not None:
            self.curve.append(float(self.psnr(self.smooth.clamp(0, 1), self.gt)[0]))
            self.raw_curve.append(float(self.psnr(o.clamp(0, 1), self.gt)[0]))
        for probe in self.probes.values():
            probe.update(it, o, self.smooth, loss)
        if self.detector is None:
            return
        best_before = self.detector.best_iteration
        stop = self.detector.update(it, o, self.smooth, loss)
        if self.detector.best_iteration != best_before:
            if self.gt is not None:
                self.psnr_at_stop = float(self.psnr(self.detector.best_output, self.gt)[0])
            if self.weights is not None:
                self._keep_best_weights(it)
        if stop:
            self.early = True
            self.active = False
            # a replayed CUDA graph (compiled or not) reuses its output buffers:
            # keep this member's last output out of them
            self.last = o.clone()

    def result(self, network: nn.Module, z: Tensor, seconds: float, *, compiled: bool, compile_seconds: float,
               precision: str, cuda_graph: bool) -> DIPResult:
        """The run's :class:`DIPResult`: its network is the
        :class:`~isnas_fast.dip.averaging.AveragedNetwork` of the blocks that stand for the
        returned estimate and its output that network's image on ``z`` (without a ``network``
        given to the monitor, the raw-output average and ``network`` itself)."""
        assert self.smooth is not None and self.last is not None
        det = self.detector
        detected = det is not None and det.best_output is not None
        average = (det.best_output if detected else self.smooth).clamp(0, 1)
        out, what, psnr_at_stop = average, "", self.psnr_at_stop
        if self.weights is not None and self.weights.blocks:
            if detected and self.best_blocks is not None:
                (members, coefs), what = self.best_blocks, self.best_what
            else:
                (members, coefs), what = self._ema_blocks(self.ema, self.iterations)
            network = build_averaged(network, z, members, coefs, self.readout)
            out = network_output(network, z).clamp(0, 1)
            what = ("sum_j c_j f_{w_j}(z + n_j) over blocks j of consecutive steps (w_j: the block's mean "
                    "weights, n_j: one of its input noises, c_j: its share), weighted as " + what)
            if self.readout is not None:
                what += ", then read through the clipped-noise readout (the bias of clip(x + n) removed)"
            if self.gt is not None and det is not None:
                psnr_at_stop = float(self.psnr(out, self.gt)[0])
        return DIPResult(
            output=out, output_average=average, averaged_over=what,
            last_output=self.last.clamp(0, 1), network=network, z=z,
            losses=self.losses, iterations_run=self.iterations, seconds=seconds, psnr_curve=self.curve,
            psnr_raw_curve=self.raw_curve, stopped_at=det.best_iteration if det is not None else None,
            early_stopped=self.early, variance_curve=det.trace if det is not None else [],
            compiled=compiled, compile_seconds=compile_seconds, precision=precision,
            psnr_at_stop=psnr_at_stop, cuda_graph=cuda_graph,
            probes={name: p.record() for name, p in self.probes.items()}, snapshots=self.snapshots,
            raw_snapshots=self.raw_snapshots,
        )
