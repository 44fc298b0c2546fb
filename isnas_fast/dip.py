"""The Deep Image Prior loop (DESIGN §6, §7): fit networks to one corrupted image.

Adam (lr 0.01) on the task loss; the input code ``z ~ U(0, 0.1)`` is fixed and
each step feeds ``z + N(0, sigma_reg^2)`` with ``sigma_reg = 1/30``; the
reported image is the exponential moving average ``s <- 0.99 s + 0.01 out``.
BatchNorm stays in training mode throughout.  Ground truth, when given, is
only used to record a PSNR curve: it never influences the fit.

Fast paths (each with the plain eager loop as its reference):

- ``compile=True``: the forward pass and task loss of every member (and so,
  through AOTAutograd, their backward) compiled with ``torch.compile``
  (:mod:`isnas_fast.compiling`: CUDA graphs on CUDA; on the CPU, activation
  masks recomputed instead of saved, no layout optimisation, the C++
  wrapper), with the fused Adam update.
- :func:`fit_dip_group`: K networks trained together.  The step sums
  their independent losses; each member's gradient is that of its own loss
  and Adam is element-wise, so every member follows the trajectory it would
  follow alone (tested), while the group runs as one graph (GPU, compiled) or,
  on an eager CPU run, as one shard per core stepping side by side.
- ``cuda_graph=True`` (CUDA only, no compiler): after a few eager warm-up
  steps, the whole step of the group (each member's forward, loss and
  backward on a CUDA stream of its own, then one fused Adam) is captured as
  one CUDA graph and replayed: no compile time, no per-kernel launch cost,
  and the members' small kernels can run at once (:class:`_CudaGraphStep`).
- ``precision``: ``"fp32"`` is float32 math throughout (on CUDA TF32 is
  switched off for the run: cuDNN would otherwise run float32 convolutions
  in TF32); ``"tf32"`` lets convolutions and matmuls use TF32 tensor cores
  (PyTorch's own default for cuDNN, and the default here on CUDA); ``"bf16"``
  is bf16 autocast.  On the CPU all three but bf16 are the same float32 math.
  1200-step 512^2 runs on an H200, compiled, gave bf16 - tf32 = +0.00,
  -0.28, -0.30 dB over three seeds
  (``bench/results/gpu_check-nvidia-h200-precision.json``); single runs
  cannot resolve 0.1 dB, though: in a CPU emulation over 16 seeds a one-ulp
  nudge of the input moved the best PSNR by up to 0.44 dB, and neither TF32
  nor bf16 rounding differed from that nudge on average
  (``bench/precision_emulation.py --study``).
- ES-WMV early stopping (:class:`EarlyStopping`), no ground truth needed.
"""
from __future__ import annotations

import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .compiling import compile_step
from .errors import InputError
from .network import batch_statistics_only
from .quality import psnr as _psnr
from .tasks import Observation

__all__ = [
    "DIPSettings",
    "EarlyStopping",
    "DIPResult",
    "fit_dip",
    "fit_dip_group",
    "make_input_code",
    "should_compile",
    "graph_group_step",
    "PRECISIONS",
    "resolve_precision",
]

PRECISIONS = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class DIPSettings:
    """Hyper-parameters of one DIP run (defaults are the paper's)."""

    iterations: int
    lr: float = 0.01
    reg_noise_std: float = 1.0 / 30.0
    ema: float = 0.99
    input_scale: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise InputError(f"iterations must be a positive integer, got {self.iterations!r}")
        if not (self.lr > 0):
            raise InputError(f"learning rate must be > 0, got {self.lr}")
        if not 0 <= self.ema < 1:
            raise InputError(f"EMA factor must be in [0, 1), got {self.ema}")


@dataclass(frozen=True)
class EarlyStopping:
    """ES-WMV: windowed moving variance of the raw outputs, no ground truth.

    The variance of a window of the last ``window`` raw outputs is the mean
    squared deviation of the window's outputs from their mean.  The stopping
    point is the iteration of the smallest variance seen; training ends once
    ``patience`` iterations pass without a new minimum.  The result is the
    mean of that most stable window (its outputs averaged uniformly): unlike
    the EMA at an early stopping point, it carries no weight from the first,
    still blurry iterations (measured on a 64 px crop, sigma 25: 27.4 dB for
    the window mean vs 26.1 dB for the EMA at the same point).
    """

    window: int = 100
    patience: int = 1000

    def __post_init__(self) -> None:
        if self.window < 2 or self.patience < 1:
            raise InputError(f"early stopping needs window >= 2 and patience >= 1, got {self.window}, {self.patience}")


@dataclass
class DIPResult:
    """Outcome of one DIP run.

    ``output``: smoothed (EMA) output, (1, C, H, W) in [0, 1] — or, with
    early stopping on, the mean of the most stable window, ending at
    ``stopped_at`` (``psnr_at_stop`` is its PSNR when ground truth is given).
    ``last_output``: the network's raw output f(z + noise) of the last step.
    ``losses``: task loss per step.  ``psnr_curve`` / ``psnr_raw_curve``:
    per-step PSNR (dB) of the smoothed / raw output, only with ground truth.
    ``seconds``: wall time of the loop; ``compile_seconds``: of which spent
    in the first (compiling) step when compiled.  ``cuda_graph``: whether the
    step was replayed as a CUDA graph.  ``precision``: the precision the run
    used (``"fp32"``, ``"tf32"`` or ``"bf16"``, the default resolved).
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


def make_input_code(channels: int, size: tuple[int, int], seed: int, scale: float = 0.1,
                    device: torch.device | None = None) -> Tensor:
    """Input code ``z ~ U(0, scale)`` of shape (1, channels, H, W), seeded (drawn on CPU)."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.rand((1, channels, *size), generator=g) * scale
    return z.to(device) if device is not None else z


def should_compile(device: torch.device, iterations: int, members: int = 1) -> bool:
    """The automatic ``compile`` choice: always on CUDA; on the CPU only for
    runs long enough to repay the compile time (DESIGN §7: 85-155 s to
    compile a U-Net step for a 1.0-1.2x gain), i.e. never for the short
    runs of this package's presets unless they exceed 20000 member-steps."""
    if device.type == "cuda":
        return True
    return iterations * members >= 20000


def graph_group_step(device: torch.device | str, compile: Optional[bool], members: int) -> bool:
    """The automatic choice of ``cuda_graph`` for a group of ``members``
    networks (the search's cohort): on CUDA, when ``compile`` is left
    automatic (None) and there are several members, the eager group step is
    replayed as one CUDA graph with a stream per member instead of being
    compiled.  Measured on an H200 (K = 15, width 128, 64x64): 25.2 ms per
    step against 304.6 ms for the members trained one after another, 12.1x,
    with no compile time; a compiled group compiles every member's different
    network (one network: 46-80 s cold there).  An explicit ``compile`` is
    obeyed."""
    return torch.device(device).type == "cuda" and compile is None and members > 1


def _group_workers(device: torch.device, compiled: bool, members: int) -> int:
    """Automatic shard count of a group step: on an eager CPU run, one shard per
    intra-op thread (small convolutions and BatchNorms of batch-1 DIP scale
    poorly over cores; independent members side by side do not: K = 4 at
    64x64, 2 cores, measured 1.29x the throughput at width 32, 1.05x at width
    64); one program otherwise (GPU, or compiled steps)."""
    if device.type != "cpu" or compiled or members < 2:
        return 1
    return max(1, min(torch.get_num_threads(), members))


class _WindowVariance:
    """Running windowed variance of a stream of tensors (float64 accumulators)."""

    def __init__(self, window: int):
        self.window = window
        self.items: deque[Tensor] = deque()
        self.sum: Tensor | None = None
        self.sumsq: Tensor | None = None

    def push(self, x: Tensor) -> float | None:
        x = x.detach().to(torch.float64)
        if self.sum is None:
            self.sum = torch.zeros_like(x)
            self.sumsq = torch.zeros_like(x)
        self.items.append(x)
        self.sum += x
        self.sumsq += x * x
        if len(self.items) > self.window:
            old = self.items.popleft()
            self.sum -= old
            self.sumsq -= old * old
        if len(self.items) < self.window:
            return None
        mean = self.mean()
        return float((self.sumsq / self.window - mean * mean).clamp_min(0).mean())

    def mean(self) -> Tensor:
        """Mean of the outputs in the window (float64)."""
        assert self.sum is not None
        return self.sum / len(self.items)


def resolve_precision(precision: Optional[str], device: torch.device) -> str:
    """The precision a run uses: ``precision`` checked, or the default for
    ``device`` when None (``"tf32"`` on CUDA, as PyTorch's cuDNN default
    already is; ``"fp32"`` elsewhere)."""
    if precision is None:
        return "tf32" if torch.device(device).type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@contextlib.contextmanager
def _precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """On CUDA, TF32 on for ``"tf32"`` and off for ``"fp32"`` during the run.

    The switches are process-wide: they are set for the run and restored
    after it.  ``"bf16"`` (autocast) and other devices leave them alone.
    """
    if precision == "bf16" or device.type != "cuda":
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


class _Member:
    """Per-network state of a (group) DIP run."""

    def __init__(self, net: nn.Module, z: Tensor, seed: int, device: torch.device,
                 early_stopping: Optional[EarlyStopping], gt: Optional[Tensor]):
        self.net = net
        self.z = z
        self.noise_gen = torch.Generator(device=device).manual_seed(int(seed) + 1)
        self.smooth: Optional[Tensor] = None
        self.last: Optional[Tensor] = None
        self.losses: list[float] = []
        self.curve: Optional[list[float]] = [] if gt is not None else None
        self.raw_curve: Optional[list[float]] = [] if gt is not None else None
        self.wv = _WindowVariance(early_stopping.window) if early_stopping else None
        self.patience = early_stopping.patience if early_stopping else None
        self.best_var, self.best_it, self.best_output = float("inf"), None, None
        self.psnr_at_stop: Optional[float] = None
        self.variances: list[float] = []
        self.active = True
        self.early = False
        self.iterations = 0

    def record(self, it: int, out: Tensor, loss: float, ema: float, gt: Optional[Tensor], desc: str) -> None:
        if loss != loss:  # NaN
            raise RuntimeError(f"{desc}: the loss became NaN at iteration {it}")
        o = out.detach().float()
        self.last = o
        self.smooth = o.clone() if self.smooth is None else self.smooth.mul_(ema).add_(o, alpha=1 - ema)
        self.losses.append(loss)
        self.iterations = it
        if gt is not None:
            self.curve.append(float(_psnr(self.smooth.clamp(0, 1), gt)[0]))
            self.raw_curve.append(float(_psnr(o.clamp(0, 1), gt)[0]))
        if self.wv is not None:
            v = self.wv.push(o)
            if v is not None:
                self.variances.append(v)
                if v < self.best_var:
                    self.best_var, self.best_it = v, it
                    self.best_output = self.wv.mean().to(o.dtype).clamp_(0, 1)
                    if gt is not None:
                        self.psnr_at_stop = float(_psnr(self.best_output, gt)[0])
                elif self.best_it is not None and it - self.best_it >= self.patience:
                    self.early = True
                    self.active = False
                    # a replayed CUDA graph (compiled or not) reuses its output buffers:
                    # keep this member's last output out of them
                    self.last = o.clone()

    def result(self, seconds: float, compiled: bool, compile_seconds: float, precision: str,
               cuda_graph: bool) -> DIPResult:
        assert self.smooth is not None and self.last is not None
        # With the detector on, the result is the mean of the most stable window.
        out = self.best_output if self.best_output is not None else self.smooth
        return DIPResult(
            output=out.clamp(0, 1), last_output=self.last.clamp(0, 1), network=self.net, z=self.z,
            losses=self.losses, iterations_run=self.iterations, seconds=seconds, psnr_curve=self.curve,
            psnr_raw_curve=self.raw_curve, stopped_at=self.best_it if self.wv is not None else None,
            early_stopped=self.early, variance_curve=self.variances, compiled=compiled,
            compile_seconds=compile_seconds, precision=precision, psnr_at_stop=self.psnr_at_stop,
            cuda_graph=cuda_graph,
        )


class _CudaGraphStep:
    """One shard's whole DIP step as a replayed CUDA graph (``cuda_graph=True``).

    ``body(nets, inputs)`` runs every member's forward, loss and backward,
    each on its own CUDA stream, and returns (outputs, losses).  The first
    ``warmup`` steps of a set of members run eagerly on a side stream (as
    CUDA graph capture requires: lazy initialisation, Adam state); the next
    one is captured together with ``opt.step()`` (a capturable fused Adam)
    and every later step copies its inputs into the graph's static inputs
    and replays it.  When the set of active members changes (early
    stopping), the step is captured again.  The returned tensors are the
    graph's static outputs: valid until the next call.
    """

    def __init__(self, body: Callable, opt: torch.optim.Optimizer, device: torch.device, warmup: int = 3):
        self.body, self.opt, self.device, self.warmup = body, opt, device, warmup
        self.side = torch.cuda.Stream(device)
        self.key: Optional[tuple[int, ...]] = None
        self.eager_steps = 0
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.static_in: list[Tensor] = []
        self.static_out: tuple[list[Tensor], list[Tensor]] = ([], [])

    def __call__(self, nets: list[nn.Module], inputs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        key = tuple(id(n) for n in nets)
        if key != self.key:
            self.key, self.eager_steps, self.graph = key, 0, None
        main = torch.cuda.current_stream(self.device)
        if self.eager_steps < self.warmup:
            self.eager_steps += 1
            self.side.wait_stream(main)
            with torch.cuda.stream(self.side):
                self.opt.zero_grad(set_to_none=True)
                outs, losses = self.body(nets, inputs)
                self.opt.step()
            main.wait_stream(self.side)
            return outs, losses
        if self.graph is None:
            self.static_in = [x.clone() for x in inputs]
            self.opt.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outs, losses = self.body(nets, self.static_in)
                self.opt.step()
            self.graph, self.static_out = graph, (outs, losses)
        else:
            for s, x in zip(self.static_in, inputs):
                s.copy_(x)
        self.graph.replay()
        return self.static_out


def fit_dip_group(
    networks: Sequence[nn.Module],
    observation: Observation,
    settings: DIPSettings,
    *,
    seeds: Sequence[int],
    zs: Optional[Sequence[Optional[Tensor]]] = None,
    ground_truth: Tensor | None = None,
    early_stopping: EarlyStopping | None = None,
    compile: Optional[bool] = None,
    precision: Optional[str] = None,
    quiet: bool = False,
    desc: str = "DIP",
    callback: Callable[[int, float], None] | None = None,
    workers: Optional[int] = None,
    cuda_graph: bool = False,
) -> list[DIPResult]:
    """Fit K networks to one observation together, as one program.

    Every member ``k`` gets its own input code (``make_input_code(C_in,
    (H, W), seeds[k])`` unless ``zs[k]`` is given) and its own noise stream
    (seeded ``seeds[k] + 1``), exactly as :func:`fit_dip` would give it
    alone; each step minimises the sum of the members' losses (Adam is
    element-wise, so the sum changes no member's update).
    Members that early-stop leave the group.  Returns one :class:`DIPResult`
    per network, in order.  ``compile``: None = :func:`should_compile`.
    ``workers``: how many shards of the group step at once on threads (None:
    :func:`_group_workers`, i.e. on an eager CPU run one per intra-op thread,
    each shard then using one thread; else 1: the whole group as one program).
    ``cuda_graph``: capture the eager step as one CUDA graph (CUDA only;
    instead of ``compile``, see :class:`_CudaGraphStep`).  ``precision``: as
    in :func:`fit_dip`.
    ``callback(it, loss)`` gets the first active member's loss.
    """
    if not networks:
        raise InputError("fit_dip_group needs at least one network")
    if len(seeds) != len(networks):
        raise InputError(f"need one seed per network: {len(seeds)} seeds for {len(networks)} networks")
    device = next(networks[0].parameters()).device
    precision = resolve_precision(precision, device)
    obs = observation.to(device)
    H, W = obs.output_size
    gt = ground_truth.to(device) if ground_truth is not None else None
    members = []
    for k, net in enumerate(networks):
        z = zs[k] if zs is not None else None
        if z is None:
            c_in = getattr(net, "in_channels", None)
            if c_in is None:
                raise InputError("network has no in_channels attribute; pass z explicitly")
            z = make_input_code(c_in, (H, W), seeds[k], settings.input_scale, device)
        members.append(_Member(net.train(), z.to(device), seeds[k], device, early_stopping, gt))
    if cuda_graph:
        if device.type != "cuda":
            raise InputError(f"cuda_graph needs the networks on a CUDA device, not {device.type}")
        if compile:
            raise InputError("compile=True and cuda_graph=True are alternatives (compiled CUDA steps "
                             "already replay CUDA graphs): choose one")
        if workers not in (None, 1):
            raise InputError(f"cuda_graph steps the group as one program: workers must be 1, got {workers}")
        compile, workers = False, 1
    use_compile = should_compile(device, settings.iterations, len(networks)) if compile is None else bool(compile)
    n_workers = _group_workers(device, use_compile, len(members)) if workers is None else int(workers)
    if n_workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    n_workers = min(n_workers, len(members))
    # Members are dealt round-robin to shards; each shard steps its members as
    # one program (summed losses, one backward, one Adam over its parameters).
    # With several shards (CPU only), the shards run at once on worker threads
    # with one intra-op thread each: members are independent, so this changes
    # only which core computes what.
    shards = [members[i::n_workers] for i in range(n_workers)]
    # Adam: the eager CPU reference keeps PyTorch's default multi-tensor (foreach)
    # path; CUDA and every compiled step use the one-kernel fused Adam (width 64,
    # CPU: 7.5 ms foreach vs 2.8 ms fused per update; a compiled Adam took 4.5 ms
    # after a 64 s compile).  Same update rule, element-wise, rounding aside.
    fused_adam = device.type == "cuda" or use_compile
    # (a CUDA graph needs the capturable variant: its step count lives on the GPU)
    opts = [torch.optim.Adam([p for m in shard for p in m.net.parameters()], lr=settings.lr,
                             fused=True if fused_adam else None, foreach=None if fused_adam else True,
                             capturable=cuda_graph)
            for shard in shards]
    reg = settings.reg_noise_std

    def forward_loss(net: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        # autocast is thread-local: entered here, in whichever thread runs the shard
        # (its weight cache must be off inside a CUDA graph capture)
        with (torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=not cuda_graph)
              if precision == "bf16" else contextlib.nullcontext()):
            out = net(x)
        out = out.float()
        return out, obs.loss(out)

    def forward_losses(nets: list[nn.Module], inputs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        pairs = [forward_loss(net, x) for net, x in zip(nets, inputs)]
        return [o for o, _ in pairs], [l for _, l in pairs]

    streams: list = []  # one CUDA stream per member of the graphed step, made on first use

    def streamed_body(nets: list[nn.Module], inputs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        # every member's forward + backward on a stream of its own, joined before Adam
        here = torch.cuda.current_stream(device)
        while len(streams) < len(nets):
            streams.append(torch.cuda.Stream(device))
        outs, losses = [], []
        for net, x, s in zip(nets, inputs, streams):
            s.wait_stream(here)
            with torch.cuda.stream(s):
                out, loss = forward_loss(net, x)
                loss.backward()
            outs.append(out)
            losses.append(loss)
        for s in streams[:len(nets)]:
            here.wait_stream(s)
        return outs, losses

    step_fn = compile_step(forward_losses, device) if use_compile else forward_losses
    graphed = _CudaGraphStep(streamed_body, opts[0], device) if cuda_graph else None

    def shard_step(k: int, active: list[_Member], inputs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        if graphed is not None:
            return graphed([m.net for m in active], inputs)
        if use_compile and device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # a new training iteration of the CUDA graph trees
        outs, losses = step_fn([m.net for m in active], inputs)
        total = losses[0] if len(losses) == 1 else torch.stack(losses).sum()
        opts[k].zero_grad(set_to_none=True)
        total.backward()
        opts[k].step()
        return outs, losses

    t0 = time.perf_counter()
    compile_seconds = 0.0
    bar = tqdm(total=settings.iterations, desc=desc, disable=quiet, leave=False, unit="it")
    intra_op_threads = torch.get_num_threads()
    # BatchNorm normalises with the batch statistics throughout DIP; its running
    # statistics are never read, so the fit does not spend time updating them
    # (in a compiled step: ~100 buffer writes per step at width 64).
    with _precision_context(precision, device), contextlib.ExitStack() as stack:
        for m in members:
            stack.enter_context(batch_statistics_only(m.net))
        pool = None
        if n_workers > 1:
            pool = stack.enter_context(ThreadPoolExecutor(n_workers, initializer=torch.set_num_threads,
                                                          initargs=(1,)))
            # torch.set_num_threads in the workers also sets the process-wide default:
            # give the caller its thread count back afterwards.
            stack.callback(torch.set_num_threads, intra_op_threads)
        for it in range(1, settings.iterations + 1):
            t_step = time.perf_counter()
            # Noise drawn in order from each member's own generator, before any shard runs.
            active_shards = [(k, [m for m in shard if m.active]) for k, shard in enumerate(shards)]
            jobs = [(k, act, [m.z + reg * torch.randn(m.z.shape, generator=m.noise_gen, device=device,
                                                       dtype=m.z.dtype) for m in act])
                    for k, act in active_shards if act]
            if not jobs:
                break
            if pool is not None and len(jobs) > 1:
                results = list(pool.map(lambda job: shard_step(*job), jobs))
            else:
                results = [shard_step(*job) for job in jobs]
            stepped = {id(m): (o, l) for (_, act, _), r in zip(jobs, results) for m, o, l in zip(act, *r)}
            active = [m for m in members if id(m) in stepped]  # member order
            outs = [stepped[id(m)][0] for m in active]
            losses = [stepped[id(m)][1] for m in active]
            with torch.no_grad():
                values = torch.stack([l.detach() for l in losses]).tolist()
                for m, out, lv in zip(active, outs, values):
                    m.record(it, out, lv, settings.ema, gt, desc)
            if it == 1 and use_compile:
                compile_seconds = time.perf_counter() - t_step
            if callback is not None:
                callback(it, values[0])
            bar.update(1)
            if it % 25 == 0:
                bar.set_postfix(loss=f"{values[0]:.2e}", refresh=False)
    bar.close()
    seconds = time.perf_counter() - t0
    return [m.result(seconds, use_compile, compile_seconds, precision, cuda_graph) for m in members]


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
) -> DIPResult:
    """Fit ``network`` to ``observation`` with DIP and return the smoothed output.

    ``network`` maps (1, C_in, H, W) to (1, C, H, W) where (H, W) is
    ``observation.output_size``; it is trained in place (train mode).  ``z``
    defaults to ``make_input_code(C_in, (H, W), seed)`` with C_in read from
    the network's ``in_channels`` attribute.  ``ground_truth`` (1, C, H, W) is
    used only to record PSNR curves.  ``compile``: None = automatic
    (:func:`should_compile`).  ``precision``: ``"fp32"``, ``"tf32"`` or
    ``"bf16"``; None = :func:`resolve_precision`'s default for the device
    (``"tf32"`` on CUDA, ``"fp32"`` elsewhere).  ``cuda_graph``: replay the
    step as a CUDA graph (CUDA only, see :func:`fit_dip_group`).
    Deterministic for a given seed on the same machine and backend -- on the
    CPU; on CUDA, PyTorch's atomic-add backward of reflection padding and
    bilinear upsampling makes runs differ in the last bits, and DIP's Adam
    steps amplify that (measured on an H200).
    """
    return fit_dip_group(
        [network], observation, settings, seeds=[seed], zs=[z], ground_truth=ground_truth,
        early_stopping=early_stopping, compile=compile, precision=precision, quiet=quiet, desc=desc,
        callback=callback, cuda_graph=cuda_graph,
    )[0]
