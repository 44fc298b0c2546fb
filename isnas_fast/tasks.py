"""Tasks: the degradations ("physics") a restoration undoes — docs/design.md §6.

A :class:`Task` is the degradation alone (denoising, inpainting, ×f
super-resolution), independent of the reconstruction method. Applying it to a
clean image (:meth:`Task.corrupt`) or wrapping an image that is already
corrupted (:meth:`Task.observe`) gives an :class:`Observation`: the measurement
``y`` together with its forward operator ``A`` — what Deep Image Prior fits by
minimising ``MSE(A(f(z)), y)``.

Images are ``(B, C, H, W)`` float32 tensors in [0, 1].

=============  ==========================================  =====================
task           corruption ``y``                            forward ``A(out)``
=============  ==========================================  =====================
``denoise``    ``clip(x + N(0, (sigma/255)^2), 0, 1)``      ``out``
``inpaint``    ``x * m`` (``m`` = 1 where known)             ``out * m``
``sr``         Lanczos (PIL) resize of ``x`` to H/f × W/f    ``lanczos2_downsample(out, f)``
=============  ==========================================  =====================

For super-resolution the *corruption* uses PIL's antialiased Lanczos resize
(how the low-resolution test images are made) while the *forward operator* is
the fixed Lanczos-2 strided convolution of :func:`lanczos2_downsample` (what
the reference implementation differentiated through). The two are close but
not identical; that mismatch is part of the task as the paper posed it.
"""
from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .errors import InputError
from .quality import psnr as _psnr
from .quality import ssim as _ssim

__all__ = [
    "Task",
    "Denoise",
    "Inpaint",
    "SuperResolve",
    "Observation",
    "make_task",
    "lanczos2_kernel",
    "lanczos2_downsample",
    "bicubic_upsample",
    "SR_FACTORS",
    "TASK_NAMES",
    "TASK_PARAMETERS",
    "task_class",
]

SR_FACTORS = (2, 4, 8)
TASK_NAMES = ("denoise", "inpaint", "sr")


# --------------------------------------------------------------------------
# Lanczos-2 downsampler (the SR forward operator D)
# --------------------------------------------------------------------------

def _check_factor(factor: Any, *, what: str = "factor") -> int:
    if isinstance(factor, bool) or not isinstance(factor, Real):
        raise InputError(f"{what} must be an integer, got {factor!r}")
    if not math.isfinite(float(factor)) or float(factor) != int(factor) or int(factor) < 1:
        raise InputError(f"{what} must be a positive integer, got {factor!r}")
    return int(factor)


def lanczos2_kernel(factor: int) -> Tensor:
    """The ``(n, n)`` Lanczos-2 kernel of the ×``factor`` downsampler, n = 4·factor.

    docs/design.md §6: support a = 2, phase ½. With c = (4f + 2)/2 and, for
    i = 1..n, d_i = |i + ½ − c| / f::

        L(d) = a·sin(πd)·sin(πd/a) / (π²d²),  L(0) = 1
        kernel[i][j] = L(d_i)·L(d_j) / Σ

    Computed in float64, returned as float32 (sums to 1, symmetric).
    """
    f = _check_factor(factor)
    a = 2.0
    n = 4 * f
    c = (4 * f + 2) / 2.0
    i = np.arange(1, n + 1, dtype=np.float64)
    d = np.abs(i + 0.5 - c) / f
    with np.errstate(divide="ignore", invalid="ignore"):
        taps = a * np.sin(np.pi * d) * np.sin(np.pi * d / a) / (np.pi**2 * d**2)
    taps = np.where(d == 0.0, 1.0, taps)  # L(0) = 1; never hit (n is even), kept for the formula
    kernel = np.outer(taps, taps)
    kernel /= kernel.sum()
    return torch.from_numpy(kernel).to(torch.float32)


_KERNELS: dict[tuple, Tensor] = {}


def _kernel_on(factor: int, channels: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    # Cached per device so a DIP step does not copy the kernel host→device (a
    # plain dict rather than lru_cache, which torch.compile does not trace).
    key = (factor, channels, device, dtype)
    weight = _KERNELS.get(key)
    if weight is None:
        k = lanczos2_kernel(factor).to(device=device, dtype=dtype)
        weight = _KERNELS[key] = k.expand(channels, 1, *k.shape).contiguous()
    return weight


def lanczos2_downsample(x: Tensor, factor: int) -> Tensor:
    """Downsample ``x`` (B, C, H, W) by ``factor`` with the Lanczos-2 kernel.

    Replication-pads by (n − f)/2 = 3f/2 on each side, then applies the
    kernel as a depthwise convolution with stride f, so the output is exactly
    (B, C, H/f, W/f). H and W must be multiples of f; f must be even (the
    padding 3f/2 must be whole). Differentiable.
    """
    f = _check_factor(factor)
    if f % 2:
        raise InputError(f"factor must be even for the Lanczos-2 downsampler, got {f}")
    if x.ndim != 4:
        raise InputError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % f or w % f:
        raise InputError(f"image size {w}x{h} is not a multiple of the factor {f}")
    channels = x.shape[1]
    weight = _kernel_on(f, channels, x.device, x.dtype)
    pad = (weight.shape[-1] - f) // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    return F.conv2d(padded, weight, stride=f, groups=channels)


def bicubic_upsample(y: Tensor, factor: int) -> Tensor:
    """Bicubic upsampling of ``y`` (B, C, h, w) by ``factor`` to (B, C, factor·h, factor·w)
    (torch's bicubic, a = −0.75, pixel centres aligned as ``align_corners=False``; no
    antialiasing, which only matters when shrinking), clamped to [0, 1]."""
    f = _check_factor(factor)
    if y.ndim != 4:
        raise InputError(f"expected a (B, C, H, W) tensor, got shape {tuple(y.shape)}")
    h, w = y.shape[-2:]
    return F.interpolate(y, size=(h * f, w * f), mode="bicubic", align_corners=False).clamp(0.0, 1.0)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def _check_image(x: Any, what: str = "image") -> Tensor:
    if not isinstance(x, Tensor):
        raise InputError(f"{what} must be a torch tensor (1, C, H, W), got {type(x).__name__}")
    if x.ndim != 4 or x.shape[0] != 1:
        raise InputError(f"{what} must have shape (1, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{what} must be a float tensor in [0, 1], got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{what} contains NaN or infinite values")
    if float(x.min()) < -1e-6 or float(x.max()) > 1.0 + 1e-6:
        raise InputError(f"{what} values must lie in [0, 1]")
    return x


def _generator(seed: Any) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer, got {seed!r}")
    # Noise is drawn on the CPU so a seed gives the same corruption on every device.
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _as_mask(mask: Any) -> Tensor:
    """A user mask → (1, 1, H, W) float32 of 0/1 (1 = known), thresholded at 0.5."""
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not isinstance(mask, Tensor):
        raise InputError(f"mask must be a tensor or numpy array, got {type(mask).__name__}")
    if mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[None]
    if mask.ndim != 4 or mask.shape[:2] != (1, 1):
        raise InputError(
            f"mask must have shape (H, W) or (1, 1, H, W) (one mask shared by all channels), "
            f"got {tuple(mask.shape)}"
        )
    mask = mask.detach()
    if mask.dtype == torch.bool:
        mask = mask.to(torch.float32)
    elif mask.dtype == torch.uint8:
        # An 8-bit mask image: 0..255.
        mask = mask.to(torch.float32) / 255.0
    else:
        mask = mask.to(torch.float32)
    if not bool(torch.isfinite(mask).all()):
        raise InputError("mask contains NaN or infinite values")
    if float(mask.min()) < 0.0 or float(mask.max()) > 1.0:
        raise InputError("mask values must lie in [0, 1] (1 = known pixel)")
    mask = (mask >= 0.5).to(torch.float32)
    if not bool(mask.any()):
        raise InputError("mask has no known pixels (1 = known)")
    return mask


def _round_to(value: float, multiple: int, minimum: int) -> int:
    return max(minimum, multiple * int(math.floor(value / multiple + 0.5)))


# --------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------

class Task(ABC):
    """A degradation ("physics"), independent of the reconstruction method."""

    name: str

    @abstractmethod
    def corrupt(self, clean: Tensor, seed: int = 0) -> "Observation":
        """Degrade a clean image (1, C, H, W) in [0, 1]; deterministic given ``seed``."""

    @abstractmethod
    def observe(self, corrupted: Tensor, mask: Tensor | None = None) -> "Observation":
        """Wrap an image that is already corrupted (the usual case for users)."""

    @abstractmethod
    def params(self) -> dict:
        """The task's parameters, JSON-able (e.g. ``{"sigma": 25.0}``)."""

    def output_size(self, corrupted_hw: tuple[int, int]) -> tuple[int, int]:
        """Size (H, W) the network must output for a corrupted image of ``corrupted_hw``."""
        h, w = corrupted_hw
        return int(h), int(w)

    @property
    def noise_level(self) -> float | None:
        """The noise level the observation carries, in 0..255 units, or None when the task
        states none (the discrepancy early stop and the under-training notice read it)."""
        return None

    @classmethod
    def psnr_on_y(cls, channels: int) -> bool:
        """Whether this task's PSNR of a ``channels``-channel image is taken on the
        BT.601 Y channel (:func:`~isnas_fast.quality.rgb_to_y`) rather than on every channel."""
        return False

    @classmethod
    def psnr(cls, x: Tensor, ref: Tensor) -> Tensor:
        """PSNR (dB) per image, shape (B,), of ``x`` against ``ref`` (B, C, H, W) in [0, 1], as
        this task reports it (on the Y channel where :meth:`psnr_on_y` says so)."""
        return _psnr(x, ref, y_channel=cls.psnr_on_y(int(x.shape[1])))

    @classmethod
    def ssim(cls, x: Tensor, ref: Tensor) -> Tensor:
        """SSIM per image, shape (B,), of ``x`` against ``ref`` (B, C, H, W) in [0, 1]: the
        mean over channels for every task (:func:`~isnas_fast.quality.ssim`)."""
        return _ssim(x, ref)

    @abstractmethod
    def forward(self, out: Tensor, mask: Tensor | None = None) -> Tensor:
        """The forward operator A applied to a network output (B, C, H, W)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def _no_mask(self, mask: Tensor | None) -> None:
        if mask is not None:
            raise InputError(f"a mask only applies to inpainting, not to the {self.name} task")


class Denoise(Task):
    """Additive white Gaussian noise, sigma in 0..255 units, clipped to [0, 1]."""

    name = "denoise"

    def __init__(self, sigma: float = 25.0):
        if isinstance(sigma, bool) or not isinstance(sigma, Real):
            raise InputError(f"sigma must be a number (noise level in 0..255 units), got {sigma!r}")
        if not math.isfinite(float(sigma)) or float(sigma) <= 0:
            raise InputError(f"sigma must be a finite number > 0 (0..255 units), got {sigma!r}")
        self.sigma = float(sigma)

    def corrupt(self, clean: Tensor, seed: int = 0) -> "Observation":
        clean = _check_image(clean, "clean image")
        noise = torch.randn(clean.shape, generator=_generator(seed), dtype=torch.float32)
        noise = noise.to(device=clean.device, dtype=clean.dtype)
        y = (clean + noise * (self.sigma / 255.0)).clamp_(0.0, 1.0)
        return Observation(self, y, None)

    def observe(self, corrupted: Tensor, mask: Tensor | None = None) -> "Observation":
        self._no_mask(mask)
        return Observation(self, _check_image(corrupted, "noisy image"), None)

    def params(self) -> dict:
        return {"sigma": self.sigma}

    @property
    def noise_level(self) -> float:
        """``sigma`` (0..255 units)."""
        return self.sigma

    def forward(self, out: Tensor, mask: Tensor | None = None) -> Tensor:
        return out


class Inpaint(Task):
    """Missing pixels: a per-pixel Bernoulli mask shared by all channels, y = x·m.

    ``p`` is the percentage of missing pixels (P(missing) = p/100). A user
    ``mask`` ((H, W) or (1, 1, H, W), 1 = known; float masks are thresholded
    at 0.5, uint8 masks are read as 0..255) takes precedence over ``p``.
    """

    name = "inpaint"

    def __init__(self, p: float | None = 50.0, mask: Tensor | None = None):
        if p is not None:
            if isinstance(p, bool) or not isinstance(p, Real):
                raise InputError(f"p must be a number (percent of missing pixels), got {p!r}")
            if not math.isfinite(float(p)) or not 0.0 < float(p) < 100.0:
                raise InputError(f"p must be a percentage of missing pixels in (0, 100), got {p!r}")
            p = float(p)
        self.mask = None if mask is None else _as_mask(mask)
        if p is None and self.mask is None:
            raise InputError("inpainting needs either p (percent missing) or a mask")
        self.p = p

    def _mask_for(self, h: int, w: int, device: torch.device) -> Tensor | None:
        if self.mask is None:
            return None
        if tuple(self.mask.shape[-2:]) != (h, w):
            mh, mw = self.mask.shape[-2:]
            raise InputError(f"mask size {mw}x{mh} does not match the image size {w}x{h}")
        return self.mask.to(device)

    def corrupt(self, clean: Tensor, seed: int = 0) -> "Observation":
        clean = _check_image(clean, "clean image")
        h, w = clean.shape[-2:]
        mask = self._mask_for(h, w, clean.device)
        if mask is None:
            u = torch.rand((1, 1, h, w), generator=_generator(seed), dtype=torch.float32)
            # P(u < p/100) = p/100 missing.
            mask = (u >= self.p / 100.0).to(device=clean.device, dtype=clean.dtype)
        else:
            _generator(seed)  # validate the seed even when the mask is given
            mask = mask.to(clean.dtype)
        return Observation(self, clean * mask, mask)

    def observe(self, corrupted: Tensor, mask: Tensor | None = None) -> "Observation":
        """Wrap a corrupted image; the mask is ``mask`` if given, else the task's.

        ``y`` is stored as ``corrupted * mask`` so whatever the missing pixels
        hold in the file does not enter the loss.
        """
        corrupted = _check_image(corrupted, "corrupted image")
        h, w = corrupted.shape[-2:]
        if mask is not None:
            mask = _as_mask(mask)
            if tuple(mask.shape[-2:]) != (h, w):
                mh, mw = mask.shape[-2:]
                raise InputError(f"mask size {mw}x{mh} does not match the image size {w}x{h}")
            mask = mask.to(corrupted.device)
        else:
            mask = self._mask_for(h, w, corrupted.device)
            if mask is None:
                raise InputError("inpainting a corrupted image needs its mask (1 = known pixel)")
        mask = mask.to(corrupted.dtype)
        return Observation(self, corrupted * mask, mask)

    def params(self) -> dict:
        if self.mask is None:
            return {"p": self.p}
        missing = 100.0 * (1.0 - float(self.mask.mean()))
        return {"p": None, "mask": "user", "missing_percent": round(missing, 4)}

    def __repr__(self) -> str:
        if self.mask is None:
            return f"Inpaint(p={self.p!r})"
        h, w = self.mask.shape[-2:]
        return f"Inpaint(mask={w}x{h})"

    def forward(self, out: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            raise InputError("the inpainting forward operator needs a mask")
        return out * mask


class SuperResolve(Task):
    """×``factor`` super-resolution (factor 2, 4 or 8).

    Corruption: PIL's Lanczos resize of each channel in float mode ("F", no
    8-bit quantisation) to (H/f, W/f), clipped to [0, 1]. Forward operator:
    :func:`lanczos2_downsample`.
    """

    name = "sr"

    def __init__(self, factor: int = 4):
        if isinstance(factor, bool) or not isinstance(factor, Real) or not math.isfinite(float(factor)) \
                or float(factor) != int(factor) or int(factor) not in SR_FACTORS:
            raise InputError(f"factor must be one of {', '.join(map(str, SR_FACTORS))}, got {factor!r}")
        self.factor = int(factor)

    def corrupt(self, clean: Tensor, seed: int = 0) -> "Observation":
        clean = _check_image(clean, "clean image")
        _generator(seed)  # deterministic; the seed is only validated
        f = self.factor
        h, w = clean.shape[-2:]
        if h % f or w % f:
            raise InputError(f"image size {w}x{h} is not a multiple of the SR factor {f}")
        planes = clean[0].detach().to("cpu", torch.float32).numpy()
        small = [
            np.asarray(Image.fromarray(np.ascontiguousarray(plane)).resize(
                (w // f, h // f), Image.Resampling.LANCZOS), dtype=np.float32)
            for plane in planes
        ]
        y = torch.from_numpy(np.stack(small)[None]).clamp_(0.0, 1.0)
        return Observation(self, y.to(device=clean.device, dtype=clean.dtype), None)

    def observe(self, corrupted: Tensor, mask: Tensor | None = None) -> "Observation":
        self._no_mask(mask)
        return Observation(self, _check_image(corrupted, "low-resolution image"), None)

    def params(self) -> dict:
        return {"factor": self.factor}

    @classmethod
    def psnr_on_y(cls, channels: int) -> bool:
        """True for RGB: super-resolution is scored on the Y channel, as the reference scored it."""
        return channels == 3

    def output_size(self, corrupted_hw: tuple[int, int]) -> tuple[int, int]:
        h, w = corrupted_hw
        return int(h) * self.factor, int(w) * self.factor

    def forward(self, out: Tensor, mask: Tensor | None = None) -> Tensor:
        return lanczos2_downsample(out, self.factor)


_ALIASES = {
    "denoise": "denoise", "denoising": "denoise",
    "inpaint": "inpaint", "inpainting": "inpaint",
    "sr": "sr", "super-resolution": "sr", "superres": "sr", "super_resolution": "sr",
}
_CLASSES: dict[str, type[Task]] = {"denoise": Denoise, "inpaint": Inpaint, "sr": SuperResolve}
#: The keyword parameters of each task: its class's constructor's, in order (the one declaration;
#: the API's keywords and the command line's task options are derived from it).
TASK_PARAMETERS: dict[str, tuple[str, ...]] = {
    name: tuple(inspect.signature(cls.__init__).parameters)[1:] for name, cls in _CLASSES.items()}


def task_class(name: str) -> type[Task]:
    """The :class:`Task` class of a task name or alias (``"sr"``, ``"denoise"``, ...): its
    class-level rules (:meth:`Task.psnr`, :meth:`Task.ssim`) without its parameters."""
    key = _ALIASES.get(str(name).strip().lower())
    if key is None:
        raise InputError(f"unknown task {name!r}; choose one of: denoise, inpaint, sr")
    return _CLASSES[key]


def make_task(name: str, **params: Any) -> Task:
    """Build a task by name: ``"denoise"`` (sigma), ``"inpaint"`` (p, mask) or
    ``"sr"`` / ``"super-resolution"`` / ``"superres"`` (factor).

    Parameters given as ``None`` mean "use the default".
    """
    if not isinstance(name, str):
        raise InputError(f"task name must be a string, got {type(name).__name__}")
    key = _ALIASES.get(name.strip().lower())
    if key is None:
        raise InputError(f"unknown task {name!r}; choose one of: denoise, inpaint, sr")
    given = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(given) - set(TASK_PARAMETERS[key]))
    if unknown:
        raise InputError(
            f"unknown parameter(s) {', '.join(unknown)} for task {key!r}; "
            f"it takes: {', '.join(TASK_PARAMETERS[key])}"
        )
    return _CLASSES[key](**given)


# --------------------------------------------------------------------------
# Observation
# --------------------------------------------------------------------------

@dataclass
class Observation:
    """The corrupted measurement together with its forward operator — what DIP fits.

    ``y`` is (1, C, h, w) (the low-resolution image for SR); ``mask`` is the
    (1, 1, h, w) 0/1 mask (1 = known) for inpainting, else ``None``.
    ``padding``: how ``y`` was padded from the user's image to the sizes the
    networks need (:class:`~isnas_fast.io.sizing.Padding`), or None;
    :meth:`crop_output` cuts a network output back to the user's size.
    ``held`` / ``held_y``: for a problem with pixels held out of the fit
    (:func:`~isnas_fast.search.validation.validation_problem`), the (1, 1,
    h, w) 0/1 mask of those pixels and (1, C, h, w) their observed values
    (zero elsewhere), which a held-out stop measures against; else None.
    """

    task: Task
    y: Tensor
    mask: Tensor | None = None
    padding: Any = None
    held: Tensor | None = None
    held_y: Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.task, Task):
            raise InputError(f"task must be a Task, got {type(self.task).__name__}")
        _check_image(self.y, "observation y")
        if isinstance(self.task, Inpaint):
            if self.mask is None:
                raise InputError("an inpainting observation needs a mask")
            if self.mask.ndim != 4 or self.mask.shape[:2] != (1, 1) \
                    or self.mask.shape[-2:] != self.y.shape[-2:]:
                raise InputError(
                    f"mask must have shape (1, 1, {self.y.shape[-2]}, {self.y.shape[-1]}), "
                    f"got {tuple(self.mask.shape)}"
                )
        elif self.mask is not None:
            raise InputError(f"a mask only applies to inpainting, not to the {self.task.name} task")
        if (self.held is None) != (self.held_y is None):
            raise InputError("held-out pixels need both their mask (held) and their values (held_y)")
        if self.held is not None and (tuple(self.held.shape) != (1, 1, *self.y.shape[-2:])
                                      or tuple(self.held_y.shape) != tuple(self.y.shape)):
            raise InputError(f"held-out mask and values must have shapes (1, 1, {self.y.shape[-2]}, "
                             f"{self.y.shape[-1]}) and {tuple(self.y.shape)}")

    @property
    def channels(self) -> int:
        return int(self.y.shape[1])

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) the network must output (the HR size for SR)."""
        return self.task.output_size(tuple(self.y.shape[-2:]))

    def _check_out(self, out: Tensor) -> None:
        if out.ndim != 4 or out.shape[1] != self.y.shape[1] \
                or tuple(out.shape[-2:]) != self.output_size:
            h, w = self.output_size
            raise InputError(
                f"network output must have shape (B, {self.y.shape[1]}, {h}, {w}), "
                f"got {tuple(out.shape)}"
            )

    def forward(self, out: Tensor) -> Tensor:
        """A(out): identity (denoise), out·mask (inpaint), Lanczos-2 ↓f (SR); (B, C, h, w)."""
        self._check_out(out)
        return self.task.forward(out, self.mask)

    def loss(self, out: Tensor) -> Tensor:
        """MSE(A(out), y), the mean over all elements; ``out`` (B, C, H, W), y broadcast over B."""
        return torch.mean((self.forward(out) - self.y) ** 2)

    def scoring_view(self, out: Tensor) -> Tensor:
        """What the spectral metrics (docs/design.md §4) compare with ``y``.

        The raw output for denoising *and* inpainting (``y`` is the masked
        image, the output is not masked), and A(out) — the HR output through
        the Lanczos-2 downsampler — for SR, so both sides have y's size.
        """
        self._check_out(out)
        if isinstance(self.task, SuperResolve):
            return self.task.forward(out)
        return out

    def resized(self, short_side: int = 64) -> "Observation":
        """The "small" problem of the cohort stage (docs/design.md §6).

        The *network output* size gets its shorter side = ``short_side`` and
        the other side scaled by the same ratio and rounded to the nearest multiple of
        32, halves up (at least 64). ``y`` is resized with antialiased bilinear
        interpolation to that size — for SR to that size / f, so for SR it is
        the network output, not ``y``, whose shorter side is ``short_side``.

        For inpainting the mask is resized with nearest-exact and stays
        binary; ``y`` is resized as a normalised convolution,
        ``resize(y) / resize(m)``, so missing (zero) pixels do not darken the
        known ones, then multiplied by the new mask.
        """
        if isinstance(short_side, bool) or not isinstance(short_side, (int, np.integer)) \
                or short_side < 32 or short_side % 32:
            raise InputError(f"short_side must be a positive multiple of 32, got {short_side!r}")
        short_side = int(short_side)
        H, W = self.output_size
        if H <= W:
            new_h, new_w = short_side, _round_to(W * short_side / H, 32, 64)
        else:
            new_h, new_w = _round_to(H * short_side / W, 32, 64), short_side
        f = self.task.factor if isinstance(self.task, SuperResolve) else 1
        size = (new_h // f, new_w // f)

        def shrink(t: Tensor) -> Tensor:
            return F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)

        if self.mask is None:
            y = shrink(self.y).clamp_(0.0, 1.0)
            return Observation(self.task, y, None)
        mask = F.interpolate(self.mask, size=size, mode="nearest-exact")
        mask = (mask >= 0.5).to(self.y.dtype)
        weight = shrink(self.mask)
        y = torch.where(weight > 1e-6, shrink(self.y) / weight.clamp_min(1e-6), 0.0)
        y = (y * mask).clamp_(0.0, 1.0)
        return Observation(self.task, y, mask)

    def cohort_problem(self, short_side: int = 64) -> "Observation":
        """The problem the cohort stage fits (docs/design.md §1 step 3).

        Denoising and inpainting: :meth:`resized` -- the network output's
        shorter side becomes ``short_side``.  Super-resolution: the
        low-resolution image's shorter side becomes ``short_side`` when it is
        longer, and it is used at full resolution otherwise (a x4 output of
        64 px would leave a 16 px image to fit: too little signal to tell
        the members apart; the paper's code trains the SR cohort at full
        resolution).
        """
        if not isinstance(self.task, SuperResolve):
            return self.resized(short_side)
        f = self.task.factor
        if min(self.y.shape[-2:]) <= short_side:
            return self
        return self.resized(short_side * f)

    def crop_output(self, out: Tensor) -> Tensor:
        """The user's region of a network output (B, C, H, W): the output itself unless padded."""
        return out if self.padding is None else self.padding.crop(out)

    def to(self, device: torch.device | str) -> "Observation":
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return Observation(self.task, self.y.to(device), move(self.mask), self.padding, move(self.held),
                           move(self.held_y))
