"""Early stopping without ground truth: detectors that watch a DIP run.

DIP first fits the image's structure and later its noise.  A detector sees,
after every step, the raw output, the smoothed (EMA) output and the loss; it
says when to stop and what the run returns then.

* ``wmv`` -- ES-WMV ("Early Stopping for Deep Image Prior", arXiv
  2112.06074): the variance of the last ``window`` raw outputs; the window of
  smallest variance is kept, and the run stops ``patience`` steps after the
  last new minimum.  Returns that window's mean.
* ``emv`` -- ES-EMV, the same paper's exponential form: an exponential
  moving mean and variance of the raw outputs (weight ``alpha``); returns the
  exponential mean at the smallest variance.
* ``discrepancy`` -- the discrepancy principle (denoising): the mean of the
  last raw outputs (the run's second half, at most ``window`` of them) is
  returned as soon as its residual against the noisy image reaches the
  variance of the (clipped) noise, i.e. before the network fits the noise:
  around that mean, and never above what the noisy image alone reads.
  Needs the task's noise level; other tasks run to the end and return their
  last window's mean.
* ``shift`` -- a pseudo-validation loss from the corrupted image itself, in
  the spirit of self-referenced early stopping (arXiv 2605.25299): the
  smoothed output, through the task's forward operator and shifted by one
  pixel, against the corrupted image.  Neighbouring pixels share almost all
  of the image but none of the noise, so this loss falls while the network
  fits the image and rises once it fits the noise at each pixel; the run
  stops ``patience`` steps after its minimum and returns the smoothed output
  there.

* ``heldout`` -- a stop that reads no noise level: the run fits the image
  with a fifth of its pixels held out, and the window mean (as
  ``discrepancy`` takes it) of least error on those pixels marks the step;
  :func:`~isnas_fast.search.training.train_group` then runs the same
  network on every pixel to that step (``at``) and returns its window mean
  there, so the held-out pixels cost the returned image nothing.

Each detector is fed by :class:`~isnas_fast.dip.monitor.Monitor`; several
can watch one run passively (the study records what each would have
returned) while at most one stops it.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Optional

import torch
from torch import Tensor

from ..errors import InputError
from ..tasks import Observation
from .settings import EarlyStopping

__all__ = ["WindowVariance", "Detector", "WMVDetector", "EMVDetector", "DiscrepancyDetector", "ShiftDetector",
           "HeldOutDetector", "AtDetector",
           "clipped_observation_moments", "ClippedNoiseTable", "clipped_noise_variance", "local_mean_noise_variance",
           "make_detector"]


class WindowVariance:
    """Running mean and variance of the last ``window`` tensors of a stream.

    The window's tensors are kept as given (float32 outputs: half the memory
    of float64) and added to / removed from float64 accumulators, so the
    sums stay exact over any number of steps.  :meth:`push` returns the mean
    over elements of the window's variance (mean squared deviation from its
    mean), or None until the window is full; ``variance=False`` keeps only
    the mean (:meth:`mean`).
    """

    def __init__(self, window: int, variance: bool = True):
        self.window = window
        self.variance = variance
        self.items: deque[Tensor] = deque()
        self.sum: Tensor | None = None
        self.sumsq: Tensor | None = None

    @property
    def full(self) -> bool:
        return len(self.items) >= self.window

    def push(self, x: Tensor) -> float | None:
        x = x.detach()
        x64 = x.to(torch.float64)
        if self.sum is None:
            self.sum = torch.zeros_like(x64)
            self.sumsq = torch.zeros_like(x64) if self.variance else None
        self.items.append(x.clone())
        self.sum += x64
        if self.sumsq is not None:
            self.sumsq += x64 * x64
        if len(self.items) > self.window:
            old = self.items.popleft().to(torch.float64)
            self.sum -= old
            if self.sumsq is not None:
                self.sumsq -= old * old
        if not self.full or self.sumsq is None:
            return None
        mean = self.mean()
        return float((self.sumsq / self.window - mean * mean).clamp_min(0).mean())

    def mean(self) -> Tensor:
        """Mean of the outputs in the window (float64)."""
        assert self.sum is not None
        return self.sum / len(self.items)

    def trim(self, size: int) -> None:
        """Drop the oldest tensors until the window holds at most ``size`` (>= 1)."""
        while len(self.items) > max(1, size):
            old = self.items.popleft().to(torch.float64)
            self.sum -= old
            if self.sumsq is not None:
                self.sumsq -= old * old


class Detector:
    """A stopping rule: fed every step, it keeps the best point so far.

    :meth:`update` takes iteration ``it``, the raw output (1, C, H, W), the
    smoothed output and the loss, and returns True once the run should stop.
    ``best_iteration`` / ``best_output`` (clamped to [0, 1]) are what the run
    returns when it stops now; ``trace`` the detector's signal per
    iteration (variance or validation loss; empty until it starts).

    ``averages`` says how a candidate averages the raw outputs, so that the
    run can average the network's weights the same way
    (:mod:`~isnas_fast.dip.averaging`): ``"window"`` (the last
    :meth:`averaging` outputs), ``"ema"`` (an exponential moving average
    keeping weight :meth:`averaging` of the old value) or ``"smoothed"``
    (the run's own smoothed output).
    """

    name = "detector"
    averages = "smoothed"

    def __init__(self, settings: EarlyStopping):
        self.settings = settings
        self.best_value = float("inf")
        self.best_iteration: Optional[int] = None
        self.best_output: Optional[Tensor] = None
        self.trace: list[float] = []

    def _signal(self, it: int, raw: Tensor, smooth: Tensor, loss: float) -> Optional[tuple[float, Tensor]]:
        """(value, what to return if it is the best) or None before the signal exists."""
        raise NotImplementedError

    def averaging(self) -> float:
        """The current candidate's window length (``averages == "window"``) or EMA weight
        (``"ema"``); 0 for ``"smoothed"``."""
        return 0.0

    def update(self, it: int, raw: Tensor, smooth: Tensor, loss: float) -> bool:
        signal = self._signal(it, raw, smooth, loss)
        if signal is None:
            return False
        value, candidate = signal
        self.trace.append(value)
        if value < self.best_value:
            self.best_value, self.best_iteration = value, it
            self.best_output = candidate.to(raw.dtype).clamp(0, 1)
            return False
        if self.best_iteration is None:
            return False
        rise = self.settings.rise
        return it - self.best_iteration >= self.settings.patience or (rise > 0 and value >= (1 + rise) * self.best_value)


class WMVDetector(Detector):
    """ES-WMV: smallest variance of a window of ``window`` raw outputs; returns the window's mean."""

    name = "wmv"
    averages = "window"

    def __init__(self, settings: EarlyStopping):
        super().__init__(settings)
        self.wv = WindowVariance(settings.window)

    def averaging(self) -> float:
        return len(self.wv.items)

    def _signal(self, it, raw, smooth, loss):
        v = self.wv.push(raw)
        return None if v is None else (v, self.wv.mean())


class EMVDetector(Detector):
    """ES-EMV: exponential moving variance of the raw outputs (weight ``alpha``); returns the
    exponential moving mean.  The first ``window`` iterations only warm the averages up."""

    name = "emv"
    averages = "ema"

    def __init__(self, settings: EarlyStopping):
        super().__init__(settings)
        self.mean: Optional[Tensor] = None
        self.var: Optional[Tensor] = None

    def averaging(self) -> float:
        return 1.0 - self.settings.alpha

    def _signal(self, it, raw, smooth, loss):
        a = self.settings.alpha
        x = raw.detach().to(torch.float64)
        if self.mean is None:
            self.mean, self.var = x.clone(), torch.zeros_like(x)
            return None
        d = x - self.mean
        self.mean += a * d
        self.var = (1 - a) * (self.var + a * d * d)
        if it < self.settings.window:
            return None
        return float(self.var.mean()), self.mean


#: The box (px) and margin of the discrepancy stop's second target, the clipped noise's variance
#: read off the noisy image (:func:`local_mean_noise_variance`): chosen on the tuning crops
#: (bench/README.md, "A target the window mean does not move"); the margin is about the most the
#: reading fell below the noise's variance there, so that on unclipped images it never binds.
OBSERVED_BOX, OBSERVED_MARGIN = 5, 0.02


def _normal(z: Tensor) -> tuple[Tensor, Tensor]:
    """The standard normal CDF and density at ``z``."""
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0))), torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def clipped_observation_moments(x: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """Mean and variance of ``y = clip(x + n, 0, 1)``, ``n ~ N(0, sigma^2)``, per element
    of ``x`` in [0, 1] (float64).

    With ``alpha = -x / sigma`` and ``beta = (1 - x) / sigma`` (where the clip
    starts, standardised; ``Phi``, ``phi``: the normal CDF and density)::

        E[y]   = x (Phi(beta) - Phi(alpha)) + sigma (phi(alpha) - phi(beta)) + 1 - Phi(beta)
        E[y^2] = x^2 (Phi(beta) - Phi(alpha)) + 2 x sigma (phi(alpha) - phi(beta))
                 + sigma^2 [Phi(beta) - Phi(alpha) + alpha phi(alpha) - beta phi(beta)] + 1 - Phi(beta)

    Far from 0 and 1 this is ``(x, sigma^2)``; near them the clip biases the
    mean inwards and shrinks the variance (at ``x = 0``: ``sigma / sqrt(2 pi)``
    and ``sigma^2 (1/2 - 1/(2 pi))``).
    """
    x = x.to(torch.float64)
    (ca, pa), (cb, pb) = _normal(-x / sigma), _normal((1.0 - x) / sigma)
    inside = cb - ca
    mean = x * inside + sigma * (pa - pb) + (1.0 - cb)
    second = (x * x * inside + 2.0 * x * sigma * (pa - pb)
              + sigma * sigma * (inside + (-x / sigma) * pa - ((1.0 - x) / sigma) * pb) + (1.0 - cb))
    return mean, (second - mean * mean).clamp_min(0.0)


class ClippedNoiseTable:
    """``x -> (E[y], Var[y])`` of the clipped observation tabulated on ``grid`` points of
    [0, 1] (:func:`clipped_observation_moments`), built once per noise level."""

    def __init__(self, sigma: float, grid: int = 4097, device: torch.device | str | None = None):
        self.sigma = float(sigma)
        self.levels = torch.linspace(0.0, 1.0, grid, dtype=torch.float64, device=device)
        self.means, self.variances = clipped_observation_moments(self.levels, sigma)
        self.range = (float(self.means[0]), float(self.means[-1]))  # read once, not synced per call

    def variance_at_mean(self, estimate: Tensor) -> Tensor:
        """Var[y] at the ``x`` whose ``E[y]`` is ``estimate`` (linear interpolation; float64)."""
        return self._at_mean(self.variances, estimate)

    def level_at_mean(self, estimate: Tensor) -> Tensor:
        """The ``x`` in [0, 1] whose ``E[y]`` is ``estimate`` (linear interpolation; float64)."""
        return self._at_mean(self.levels, estimate)

    def _at_mean(self, values: Tensor, estimate: Tensor) -> Tensor:
        means, values = self.means.to(estimate.device), values.to(estimate.device)
        m = estimate.to(torch.float64).clamp(*self.range).reshape(-1)
        hi = torch.searchsorted(means, m).clamp(1, len(means) - 1)
        lo = hi - 1
        t = ((m - means[lo]) / (means[hi] - means[lo])).clamp(0.0, 1.0)
        return (values[lo] + t * (values[hi] - values[lo])).reshape(estimate.shape)


def _local_level_variance(y: Tensor, table: ClippedNoiseTable, size: int) -> tuple[float, Tensor]:
    """The mean clipped-noise variance around each pixel's ``size`` x ``size`` box mean of
    ``y`` (edges replicated), and the levels ``x`` those means are ``E[y]`` of."""
    c = int(y.shape[1])
    box = torch.full((c, 1, size, size), 1.0 / (size * size), dtype=y.dtype, device=y.device)
    mean = torch.nn.functional.conv2d(torch.nn.functional.pad(y, (size // 2,) * 4, mode="replicate"), box,
                                      groups=c).clamp(0, 1)
    return float(table.variance_at_mean(mean).mean()), table.level_at_mean(mean)


def local_mean_noise_variance(y: Tensor, table: ClippedNoiseTable, size: int = 5) -> float:
    """The mean variance of the clipped noise (``table``'s level) in the noisy image ``y``
    (1, C, H, W) read from the image alone, in [0, 1] units squared.

    Each pixel's ``size`` x ``size`` box mean is taken as its ``E[y]``
    (:meth:`ClippedNoiseTable.variance_at_mean`).  The box mean still holds
    noise, and the variance is least at 0 and 1, so a noisy level reads it high
    on saturated regions: a parametric bootstrap subtracts that bias (the same
    reading on one noisy copy, fixed seed, of the levels read, less those
    levels' own variance).  Edges, where the box mixes levels, still read high.

    A target for the discrepancy stop that no network output moves: the one
    around the window mean overstates the variance wherever that mean has not
    yet come down (or up) to a clipped level, so on saturated images it lets
    the stop fire while the image is still being fitted.
    """
    y = y.to(torch.float64)
    direct, levels = _local_level_variance(y, table, size)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(levels.shape, generator=g, dtype=torch.float64).to(levels.device)
    again, _ = _local_level_variance((levels + table.sigma * noise).clamp(0, 1), table, size)
    own = float(clipped_observation_moments(levels, table.sigma)[1].mean())
    return direct - (again - own)


def clipped_noise_variance(estimate: Tensor, sigma: float, grid: int = 4097) -> Tensor:
    """The variance of the clipped noisy observation around ``estimate`` (float64).

    A network fitted to ``y = clip(x + n, 0, 1)`` estimates ``E[y]``, which
    the clip pulls away from 0 and 1, so ``estimate`` is taken as that mean:
    ``x`` is recovered by inverting the increasing map ``x -> E[y]`` over
    [0, 1] (tabulated on ``grid`` points, :class:`ClippedNoiseTable`), and
    the variance of ``y`` at that ``x`` is what the residual
    ``mean((estimate - y)^2)`` reaches once the estimate is right.
    Estimates beyond ``E[y]`` at ``x = 0`` or ``x = 1`` are taken at those ends.
    """
    return ClippedNoiseTable(sigma, grid, estimate.device).variance_at_mean(estimate)


class _WindowMean(Detector):
    """Shared by the detectors that return a window mean: the mean of the last raw
    outputs, at most ``window`` and none from the run's first half."""

    averages = "window"

    def __init__(self, settings: EarlyStopping):
        super().__init__(settings)
        self.wv = WindowVariance(settings.window, variance=False)

    def averaging(self) -> float:
        return len(self.wv.items)

    def _push(self, it: int, raw: Tensor) -> None:
        self.wv.push(raw)  # ``it`` counts the outputs seen so far (the loop's 1-based step)
        self.wv.trim(it // 2)


class DiscrepancyDetector(_WindowMean):
    """The discrepancy principle on window means (denoising, where the noise level is known).

    The mean of the last raw outputs is DIP's estimate; its residual against
    the noisy image, ``mean((m - y)^2)``, falls while the network fits the
    image, and would fall below the noise's own variance only by fitting the
    noise.  The run stops at the first window whose residual reaches
    ``kappa`` times the variance the clipped observation has around that
    estimate (:func:`clipped_noise_variance`) or, when less,
    ``1 + OBSERVED_MARGIN`` times the one read off the noisy image alone
    (:func:`local_mean_noise_variance`, computed once), and returns that
    window's mean: an estimate still short of a clipped level reads the
    variance there too high.  After ``k`` steps the window holds the last ``min(window, k // 2)``
    outputs, checked from step ``window // 2`` on: it never reaches back into
    the run's first half, whose start-up outputs (far from any image) would
    drag the mean of a fast network's first windows down.  With a ``start``
    the run does not stop before it; with ``start_met_by`` as well, only when
    the residual first reached the noise level by that step.  Tasks without a
    noise level (inpainting, super-resolution) never stop early: the run
    returns its last window's mean.
    """

    name = "discrepancy"

    def __init__(self, settings: EarlyStopping, observation: Observation):
        super().__init__(settings)
        self.obs = observation
        conditional = settings.start_met_by > 0
        self.start = max(2, settings.window // 2, 0 if conditional else settings.start)
        # a start that holds only when the residual reaches the noise level early
        self.floor = settings.start if conditional else 0
        self.first_met: Optional[int] = None
        sigma = observation.task.noise_level
        self.sigma = None if sigma is None else float(sigma) / 255.0
        self.table = None if self.sigma is None else ClippedNoiseTable(self.sigma, device=observation.y.device)
        self.y64 = observation.y.to(torch.float64)
        self.observed = (None if self.table is None else
                         (1 + OBSERVED_MARGIN) * local_mean_noise_variance(self.y64, self.table, OBSERVED_BOX))

    def _signal(self, it, raw, smooth, loss):
        self._push(it, raw)
        if it < self.start:
            return None
        mean = self.wv.mean()
        self._mean = mean
        with torch.no_grad():
            residual = float((self.obs.task.forward(mean, self.obs.mask) - self.y64).square().mean())
        return residual, mean

    def update(self, it: int, raw: Tensor, smooth: Tensor, loss: float) -> bool:
        super().update(it, raw, smooth, loss)  # the smallest residual so far: the result if it never fires
        if self.sigma is None or not self.trace:
            return False
        kappa, residual = self.settings.kappa, self.trace[-1]
        if residual > kappa * self.sigma ** 2:  # above even the unclipped variance: not yet
            return False
        if residual > kappa * min(self.observed, float(self.table.variance_at_mean(self._mean.clamp(0, 1)).mean())):
            return False
        if self.first_met is None:
            self.first_met = it
        if it < self.floor and self.first_met <= self.settings.start_met_by:
            return False
        self.best_value, self.best_iteration = self.trace[-1], it
        self.best_output = self._mean.to(raw.dtype).clamp(0, 1)
        return True


class ShiftDetector(Detector):
    """Pseudo-validation: the smoothed output through the forward operator, shifted by
    one pixel (right and down), against the corrupted image where both pixels
    are known; returns the smoothed output at the minimum."""

    name = "shift"

    def __init__(self, settings: EarlyStopping, observation: Observation):
        super().__init__(settings)
        self.obs = observation
        y = observation.y
        known = observation.mask if observation.mask is not None else torch.ones_like(y[:, :1])
        # Pairs (p, p + 1 pixel) with both pixels known, horizontally and vertically.
        self.w_h = known[..., :, 1:] * known[..., :, :-1]
        self.w_v = known[..., 1:, :] * known[..., :-1, :]
        self.norm = float(self.w_h.sum() + self.w_v.sum()) * y.shape[1]

    def _signal(self, it, raw, smooth, loss):
        if it < self.settings.window:
            return None
        with torch.no_grad():
            a = self.obs.task.forward(smooth, self.obs.mask)
            y = self.obs.y
            dh = (a[..., :, :-1] - y[..., :, 1:]).square() * self.w_h
            dv = (a[..., :-1, :] - y[..., 1:, :]).square() * self.w_v
            value = float((dh.sum() + dv.sum()) / self.norm)
        return value, smooth.clone()


class HeldOutDetector(_WindowMean):
    """The window mean's mean squared error on the pixels held out of the fit, against
    their observed values (``observation.held`` / ``held_y``), from step
    ``window // 2`` on; returns the window mean of least error, and the run stops
    ``patience`` steps after it (or at ``rise``).  For independent noise that
    error is the true error on those pixels plus the noise variance, the same
    for every step, so its minimum needs no noise level.  Runs every step on
    what the held-out run already computes: one masked sum."""

    name = "heldout"

    def __init__(self, settings: EarlyStopping, observation: Observation):
        super().__init__(settings)
        if observation.held is None or observation.held_y is None:
            raise InputError("the held-out stop needs a problem with held-out pixels (validation_problem)")
        self.held, self.held_y = observation.held, observation.held_y.to(torch.float64)
        self.n = float(self.held.sum()) * observation.channels
        if self.n <= 0:
            raise InputError("no held-out pixels to stop on")
        self.start = max(2, settings.window // 2)

    def _signal(self, it, raw, smooth, loss):
        self._push(it, raw)
        if it < self.start:
            return None
        mean = self.wv.mean()
        with torch.no_grad():
            value = float(((mean - self.held_y) * self.held).square().sum()) / self.n
        return value, mean


class AtDetector(_WindowMean):
    """The window mean at step ``settings.start``, where the run stops: what the held-out
    stop's run on every pixel returns at the step its twin found."""

    name = "at"

    def update(self, it: int, raw: Tensor, smooth: Tensor, loss: float) -> bool:
        self._push(it, raw)
        if it < self.settings.start:
            return False
        self.best_value, self.best_iteration = 0.0, it
        self.best_output = self.wv.mean().to(raw.dtype).clamp(0, 1)
        return True


def make_detector(settings: EarlyStopping, observation: Observation) -> Detector:
    """The detector ``settings.method`` names, for a run fitting ``observation``."""
    if settings.method == "heldout":
        return HeldOutDetector(settings, observation)
    if settings.method == "at":
        return AtDetector(settings)
    if settings.method == "wmv":
        return WMVDetector(settings)
    if settings.method == "emv":
        return EMVDetector(settings)
    if settings.method == "discrepancy":
        return DiscrepancyDetector(settings, observation)
    return ShiftDetector(settings, observation)
