"""Fast paths and the one dispatcher that picks them (DESIGN §2, §7).

``backend()`` decides, in one place, whether the Triton kernels or the plain
PyTorch references run.  Callers never branch on the device themselves.

Ops (each a module beside its reference):

* :func:`spectral_scores` -- fused post-FFT spectral metrics
  (``kernels/spectral.py``; reference :func:`isnas_fast.spectral.spectral_scores`).
* :func:`upsample_conv` -- x2 resize fused with the following k x k conv of an
  upsampling cell (``kernels/upsample_conv.py``; reference
  :func:`upsample_conv_reference`).

The kernel modules (which import Triton) are imported lazily, on first use:
the package imports without Triton, and ``TRITON_INTERPRET=1`` (read by
Triton when a kernel is defined) may be set any time before that first use.
"""
from __future__ import annotations

import functools
import importlib
import os
import sys
import types
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from ..errors import InputError

__all__ = [
    "backend",
    "spectral_scores",
    "upsample_conv",
    "upsample_conv_reference",
    "spectral_scores_reference",
    "BACKENDS",
]

BACKENDS = ("reference", "triton")
ENV_VAR = "ISNAS_FAST_BACKEND"


@functools.lru_cache(maxsize=1)
def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def backend(requested: Optional[str] = None, device: Optional[torch.device] = None) -> str:
    """The backend to use: ``requested`` > ``$ISNAS_FAST_BACKEND`` > automatic.

    Automatic: ``"triton"`` on CUDA when Triton imports, or on the CPU when
    ``TRITON_INTERPRET=1`` is set (how kernels are tested without a GPU);
    ``"reference"`` otherwise.

    ``"triton"`` asked for (argument or environment) on a device where
    Triton cannot run -- a known non-CUDA ``device`` without
    ``TRITON_INTERPRET=1`` -- gives ``"reference"``: every feature must still
    run on a CPU-only machine (DESIGN §7).  Asking for it when Triton is not
    installed is an error.

    Raises:
        InputError: unknown backend name, or ``"triton"`` without Triton.
    """
    choice = requested or os.environ.get(ENV_VAR) or "auto"
    choice = choice.strip().lower()
    if choice not in BACKENDS + ("auto",):
        raise InputError(f"unknown backend {choice!r}: choose auto, {', '.join(BACKENDS)}")
    on_cuda = device is not None and torch.device(device).type == "cuda"
    if choice == "auto":
        return "triton" if (on_cuda or _interpreting()) and _triton_available() else "reference"
    if choice == "triton":
        if not _triton_available():
            raise InputError("backend 'triton' was asked for but Triton is not installed")
        if device is not None and not on_cuda and not _interpreting():
            return "reference"
    return choice


_select_backend = backend  # for functions whose ``backend`` argument shadows it


def spectral_scores(corrupted: Tensor, outputs: Tensor, metrics: Sequence[str], *,
                    backend_name: Optional[str] = None, generator: Optional[torch.Generator] = None) -> Tensor:
    """Dispatching front of :func:`isnas_fast.spectral.spectral_scores`: (C,H,W), (B,C,H,W) -> (B, M) float64."""
    from ..spectral import spectral_scores as reference

    be = backend(backend_name, outputs.device)
    if be == "triton":
        from .spectral import triton_spectral_scores

        return triton_spectral_scores(corrupted, outputs, metrics, generator=generator)
    return reference(corrupted, outputs, metrics, generator=generator)


def upsample_conv(
    x: Tensor,
    weight: Tensor,
    mode: str = "bilinear",
    activation: Optional[str] = None,
    backend: Optional[str] = None,
) -> Tensor:
    """``act(conv2d(act(upsample2x(x)), weight, padding=k//2))`` on the chosen backend.

    ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in, k, k) (k odd, no bias),
    ``mode`` ``"bilinear"`` (align_corners=False) or ``"nearest"`` as
    ``nn.Upsample(scale_factor=2)``, ``activation`` None / ``"none"`` /
    ``"relu"`` / ``"leaky_relu"`` (0.2) -> (N, C_out, 2H, 2W).  Differentiable
    on both backends (the Triton path's backward runs the reference); under
    ``torch.autocast`` both follow autocast's conv (products and output in the
    autocast dtype).
    """
    if _select_backend(backend, x.device) == "triton":
        from .upsample_conv import triton_upsample_conv

        return triton_upsample_conv(x, weight, mode, activation)
    from .upsample_conv import upsample_conv_reference as reference

    return reference(x, weight, mode, activation)


_LAZY = {
    "upsample_conv_reference": "upsample_conv",
    "triton_upsample_conv": "upsample_conv",
    "spectral_scores_reference": "spectral",
    "triton_spectral_scores": "spectral",
}


def __getattr__(name: str) -> Any:  # lazy exports of the kernel modules (PEP 562)
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


class _Package(types.ModuleType):
    """Module type of this package.

    The dispatcher function ``upsample_conv`` shares its name with the module
    ``kernels/upsample_conv.py``; importing that module makes the import system
    bind it as a package attribute, which would replace the function.  Such a
    rebinding of a function name to a module is ignored here (the module stays
    in ``sys.modules`` and ``from isnas_fast.kernels.upsample_conv import ...``
    works as usual).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and isinstance(self.__dict__.get(name), types.FunctionType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
