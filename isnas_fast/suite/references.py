"""Reference methods of a suite: classical restorations that need no training.

They answer "what would a user pick instead?": each suite can run the
task's reference on the same inputs as the DIP methods, so every table
shows the gap to it.

=============  =========  =====================================================
method         task       what it computes
=============  =========  =====================================================
``bm3d``       denoise    BM3D (the ``bm3d`` package) told the task's sigma;
                          ``bm3d_rgb`` (opponent colour space) for RGB
``bicubic``    sr         bicubic upsampling of the low-resolution input
``biharmonic`` inpaint    biharmonic inpainting of the missing pixels
                          (``skimage.restoration.inpaint_biharmonic``)
=============  =========  =====================================================

Every function takes and returns (1, C, H, W) float32 tensors in [0, 1] on
the CPU and is deterministic (BM3D runs on one thread: its multithreaded
build differs in the last bits from call to call).  ``bm3d`` and
``biharmonic`` need optional packages (``pip install
'isnas-fast[references]'``); :func:`check_reference` refuses a method whose
package is missing, or that does not belong to the task, in one line.

The ``bm3d`` package (Tampere University) is licensed for non-commercial
use only; it is never installed by default.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import shlex
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..tasks import bicubic_upsample

__all__ = ["REFERENCES", "REFERENCE_LABEL", "bm3d", "bicubic", "biharmonic", "run_reference", "reference_for",
           "check_reference", "available", "package_versions", "rerun_command"]

#: Each reference method and the one task it belongs to.
REFERENCES = {"bm3d": "denoise", "bicubic": "sr", "biharmonic": "inpaint"}
#: How reference rows are labelled wherever they appear.
REFERENCE_LABEL = "reference, no training"
#: method -> (module imported, distribution name) for the references that need a package.
_PACKAGES = {"bm3d": ("bm3d", "bm3d"), "biharmonic": ("skimage.restoration", "scikit-image")}
_EXTRA = "pip install 'isnas-fast[references]'"


def reference_for(task: str) -> str:
    """The reference method of a task (``denoise``, ``inpaint``, ``sr``)."""
    for method, own in REFERENCES.items():
        if own == task:
            return method
    raise InputError(f"no reference method for task {task!r}: choose a task of {', '.join(REFERENCES.values())}")


def _import(method: str) -> Any:
    module, dist = _PACKAGES[method]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"method {method} needs the {dist} package: {_EXTRA}") from None


def available(method: str) -> bool:
    """Whether a reference method's package can be imported (``bicubic`` needs none)."""
    if method not in _PACKAGES:
        return True
    try:
        _import(method)
    except InputError:
        return False
    return True


def check_reference(method: str, task: str) -> None:
    """Refuse (InputError, one line) a reference method run on another task than its
    own, or whose package is missing; other methods pass."""
    own = REFERENCES.get(method)
    if own is None:
        return
    if own != task:
        raise InputError(f"method {method} is the reference for {own}, not {task}: "
                         f"the {task} reference is {reference_for(task)}")
    if method in _PACKAGES:
        _import(method)


def package_versions(method: str) -> dict[str, str]:
    """The version of the package a reference method runs (empty for ``bicubic``)."""
    if method not in _PACKAGES:
        return {}
    dist = _PACKAGES[method][1]
    return {dist: importlib.metadata.version(dist)}


def _check(x: Tensor, what: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[0] != 1 or not x.is_floating_point():
        raise InputError(f"{what} must be a float tensor (1, C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    return x.detach().to("cpu", torch.float32)


def _hwc(x: Tensor) -> np.ndarray:
    """(1, C, H, W) tensor -> (H, W, C) float32 array."""
    return np.ascontiguousarray(x[0].permute(1, 2, 0).numpy())


def _tensor(y: np.ndarray) -> Tensor:
    """(H, W, C) array -> (1, C, H, W) float32 tensor clamped to [0, 1]."""
    out = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).permute(2, 0, 1)[None]
    return out.clamp(0.0, 1.0).contiguous()


def bm3d(observed: Tensor, sigma: float) -> Tensor:
    """BM3D denoising of ``observed`` (1, C, H, W) in [0, 1], told the noise level
    ``sigma`` (0..255 units, divided by 255 for the package).

    RGB images go through ``bm3d.bm3d_rgb`` (block matching in the opponent
    colour space), one channel through ``bm3d.bm3d``, other channel counts
    channel by channel; the package's default ``'np'`` profile on one
    thread.  Returns (1, C, H, W) float32 clamped to [0, 1].  Needs the
    ``bm3d`` package (non-commercial licence).
    """
    package = _import("bm3d")
    x = _hwc(_check(observed, "the noisy image"))
    s = float(sigma) / 255.0
    if not s > 0:
        raise InputError(f"bm3d needs sigma > 0 (0..255 units), got {sigma!r}")
    profile = package.BM3DProfile()
    profile.num_threads = 1  # several threads differ in the last bits from call to call
    if x.shape[2] == 3:
        y = package.bm3d_rgb(x, s, profile)
    else:
        y = np.stack([package.bm3d(x[..., c], s, profile) for c in range(x.shape[2])], axis=-1)
    return _tensor(y)


def bicubic(observed: Tensor, factor: int) -> Tensor:
    """Bicubic upsampling of the low-resolution ``observed`` (1, C, h, w) by ``factor``
    (:func:`~isnas_fast.tasks.bicubic_upsample`): (1, C, factor·h, factor·w) in [0, 1]."""
    x = _check(observed, "the low-resolution image")
    f = int(factor)
    if f < 1:
        raise InputError(f"bicubic needs a factor >= 1, got {factor!r}")
    return bicubic_upsample(x, f)


def biharmonic(observed: Tensor, mask: Tensor) -> Tensor:
    """Biharmonic inpainting (``skimage.restoration.inpaint_biharmonic``) of
    ``observed`` (1, C, H, W) in [0, 1] where ``mask`` (1, 1, H, W; 1 =
    known, thresholded at 0.5) is 0.  Known pixels are kept.  Returns
    (1, C, H, W) float32 clamped to [0, 1].  Needs scikit-image."""
    restoration = _import("biharmonic")
    x = _check(observed, "the corrupted image")
    m = _check(mask, "the mask")
    if m.shape[1] != 1 or m.shape[-2:] != x.shape[-2:]:
        raise InputError(f"the mask must be (1, 1, H, W) of the image's size, got {tuple(m.shape)} for an "
                         f"image of {tuple(x.shape)}")
    missing = m[0, 0].numpy() < 0.5
    y = restoration.inpaint_biharmonic(_hwc(x), missing, channel_axis=-1)
    return _tensor(y)


def run_reference(method: str, observed: Tensor, *, mask: Optional[Tensor] = None, sigma: Optional[float] = None,
                  factor: Optional[int] = None) -> Tensor:
    """Run reference ``method`` with the task's parameters (``sigma`` for ``bm3d``,
    ``factor`` for ``bicubic``, ``mask`` for ``biharmonic``)."""
    if method == "bm3d":
        if sigma is None:
            raise InputError("bm3d needs the noise level sigma")
        return bm3d(observed, sigma)
    if method == "bicubic":
        if factor is None:
            raise InputError("bicubic needs the SR factor")
        return bicubic(observed, factor)
    if method == "biharmonic":
        if mask is None:
            raise InputError("biharmonic needs the inpainting mask")
        return biharmonic(observed, mask)
    raise InputError(f"not a reference method: {method} (choose from {', '.join(REFERENCES)})")


def rerun_command(method: str, *, observed: str, mask: Optional[str], sigma: Optional[float],
                  factor: Optional[int], output: str, bit_depth: int = 8) -> str:
    """A shell command that recomputes a reference row's image from the suite folder's files."""
    args = [f"load_image({observed!r})"]
    if method == "bm3d":
        args.append(f"sigma={sigma:g}")
    elif method == "bicubic":
        args.append(f"factor={factor}")
    else:
        args.append(f"mask=load_mask({mask!r})")
    code = ("from isnas_fast.io import load_image, save_image; from isnas_fast.problem import load_mask; "
            "from isnas_fast.suite.references import run_reference; "
            f"save_image(run_reference({method!r}, {', '.join(args)}), {output!r}, bit_depth={bit_depth})")
    return "python -c " + shlex.quote(code)
