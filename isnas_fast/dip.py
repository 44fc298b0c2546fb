"""The Deep Image Prior loop (DESIGN §6): fit a network to one corrupted image.

Adam (lr 0.01) on the task loss; the input code ``z ~ U(0, 0.1)`` is fixed and
each step feeds ``z + N(0, sigma_reg^2)`` with ``sigma_reg = 1/30``; the
reported image is the exponential moving average ``s <- 0.99 s + 0.01 out``.
BatchNorm stays in training mode throughout.  Ground truth, when given, is
only used to record a PSNR curve: it never influences the fit.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .errors import InputError
from .quality import psnr as _psnr
from .tasks import Observation

__all__ = ["DIPSettings", "EarlyStopping", "DIPResult", "fit_dip", "make_input_code"]


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
    ``patience`` iterations pass without a new minimum, and the smoothed
    output at the stopping point is returned.
    """

    window: int = 100
    patience: int = 1000

    def __post_init__(self) -> None:
        if self.window < 2 or self.patience < 1:
            raise InputError(f"early stopping needs window >= 2 and patience >= 1, got {self.window}, {self.patience}")


@dataclass
class DIPResult:
    """Outcome of :func:`fit_dip`.

    ``output``: smoothed (EMA) output, (1, C, H, W) in [0, 1] — at the
    detected stopping point ``stopped_at`` when early stopping is on.  ``last_output``: the network's raw
    output f(z) after the last step (what an exported network reproduces).
    ``losses``: task loss per step.  ``psnr_curve`` / ``psnr_raw_curve``:
    per-step PSNR (dB) of the smoothed / raw output, only with ground truth.
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


def make_input_code(channels: int, size: tuple[int, int], seed: int, scale: float = 0.1,
                    device: torch.device | None = None) -> Tensor:
    """Input code ``z ~ U(0, scale)`` of shape (1, channels, H, W), seeded (drawn on CPU)."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.rand((1, channels, *size), generator=g) * scale
    return z.to(device) if device is not None else z


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
        n = float(self.window)
        mean = self.sum / n
        return float((self.sumsq / n - mean * mean).clamp_min(0).mean())


def fit_dip(
    network: nn.Module,
    observation: Observation,
    settings: DIPSettings,
    *,
    seed: int = 0,
    z: Tensor | None = None,
    ground_truth: Tensor | None = None,
    early_stopping: EarlyStopping | None = None,
    quiet: bool = False,
    desc: str = "DIP",
    callback: Callable[[int, float], None] | None = None,
) -> DIPResult:
    """Fit ``network`` to ``observation`` with DIP and return the smoothed output.

    ``network`` maps (1, C_in, H, W) to (1, C, H, W) where (H, W) is
    ``observation.output_size``; it is trained in place (train mode).  ``z``
    defaults to ``make_input_code(C_in, (H, W), seed)`` with C_in read from
    the network's ``in_channels`` attribute.  ``ground_truth`` (1, C, H, W) is
    used only to record PSNR curves.  Deterministic for a given seed on the
    same machine and backend.
    """
    param = next(network.parameters())
    device = param.device
    obs = observation.to(device)
    H, W = obs.output_size
    if z is None:
        c_in = getattr(network, "in_channels", None)
        if c_in is None:
            raise InputError("network has no in_channels attribute; pass z explicitly")
        z = make_input_code(c_in, (H, W), seed, settings.input_scale, device)
    z = z.to(device)
    gt = ground_truth.to(device) if ground_truth is not None else None
    noise_gen = torch.Generator(device=device).manual_seed(int(seed) + 1)
    opt = torch.optim.Adam(network.parameters(), lr=settings.lr)
    network.train()

    losses: list[float] = []
    curve: list[float] | None = [] if gt is not None else None
    raw_curve: list[float] | None = [] if gt is not None else None
    smooth: Tensor | None = None
    out = z  # placeholder for the type checker
    wv = _WindowVariance(early_stopping.window) if early_stopping else None
    best_var, best_it, best_smooth = float("inf"), None, None
    variances: list[float] = []
    early = False
    t0 = time.perf_counter()
    bar = tqdm(total=settings.iterations, desc=desc, disable=quiet, leave=False, unit="it")
    it = 0
    for it in range(1, settings.iterations + 1):
        noise = torch.randn(z.shape, generator=noise_gen, device=device, dtype=z.dtype)
        out = network(z + settings.reg_noise_std * noise)
        loss = obs.loss(out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            o = out.detach()
            smooth = o.clone() if smooth is None else smooth.mul_(settings.ema).add_(o, alpha=1 - settings.ema)
            lv = float(loss)
            if lv != lv:  # NaN
                raise RuntimeError(f"{desc}: the loss became NaN at iteration {it}")
            losses.append(lv)
            if gt is not None:
                curve.append(float(_psnr(smooth.clamp(0, 1), gt)[0]))
                raw_curve.append(float(_psnr(o.clamp(0, 1), gt)[0]))
            if wv is not None:
                v = wv.push(o)
                if v is not None:
                    variances.append(v)
                    if v < best_var:
                        best_var, best_it, best_smooth = v, it, smooth.clone()
                    elif best_it is not None and it - best_it >= early_stopping.patience:
                        early = True
        if callback is not None:
            callback(it, lv)
        bar.update(1)
        if it % 25 == 0:
            bar.set_postfix(loss=f"{lv:.2e}", refresh=False)
        if early:
            break
    bar.close()
    seconds = time.perf_counter() - t0
    assert smooth is not None
    # With the detector on, the result is the smoothed output at the detected point.
    result_img = best_smooth if best_smooth is not None else smooth
    return DIPResult(
        output=result_img.clamp(0, 1),
        last_output=out.detach().clamp(0, 1),
        network=network,
        z=z,
        losses=losses,
        iterations_run=it,
        seconds=seconds,
        psnr_curve=curve,
        psnr_raw_curve=raw_curve,
        stopped_at=best_it if wv is not None else None,
        early_stopped=early,
        variance_curve=variances,
    )
