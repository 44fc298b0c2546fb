"""Fast paths and the one dispatcher that picks them (docs/design.md §2, §7).

``backend()`` decides, in one place, whether the Triton kernels or the plain
PyTorch references run.  Callers never branch on the device themselves.

Ops, each a Triton module beside its reference:

* :func:`spectral_scores` -- the spectral metrics of candidate outputs:
  reference ``spectral_reference.py`` (float64, or float32 with ``dtype``),
  fused kernels ``fused_spectral.py``.
* :func:`upsample_conv` -- x2 resize fused with the following k x k conv of an
  upsampling cell: ``fused_upsample_conv.py`` (kernel and reference).

The kernel modules (which import Triton) are imported lazily, on first use:
the package imports without Triton, and ``TRITON_INTERPRET=1`` (read by
Triton when a kernel is defined) may be set any time before that first use.
"""
from __future__ import annotations

import functools
import importlib
import os
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from ..errors import InputError
from ._env import ENV_VAR, interpreting

__all__ = [
    "backend",
    "spectral_scores",
    "upsample_conv",
    "upsample_conv_reference",
    "spectral_scores_reference",
    "triton_spectral_scores",
    "triton_upsample_conv",
    "BACKENDS",
    "ENV_VAR",
]

BACKENDS = ("reference", "triton")


@functools.lru_cache(maxsize=1)
def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def backend(requested: Optional[str] = None, device: Optional[torch.device] = None) -> str:
    """The backend to use: ``requested`` > ``$ISNAS_FAST_BACKEND`` > automatic.

    Automatic: ``"triton"`` on CUDA when Triton imports, or on the CPU when
    ``TRITON_INTERPRET=1`` is set (how kernels are tested without a GPU);
    ``"reference"`` otherwise.

    ``"triton"`` asked for (argument or environment) on a device where
    Triton cannot run -- a known non-CUDA ``device`` without
    ``TRITON_INTERPRET=1`` -- gives ``"reference"``: every feature must still
    run on a CPU-only machine (docs/design.md §7).  Asking for it when Triton is not
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
        return "triton" if (on_cuda or interpreting()) and _triton_available() else "reference"
    if choice == "triton":
        if not _triton_available():
            raise InputError("backend 'triton' was asked for but Triton is not installed")
        if device is not None and not on_cuda and not interpreting():
            return "reference"
    return choice


_choose = backend  # for the functions below, whose ``backend`` argument shadows it


def spectral_scores(corrupted: Tensor, outputs: Tensor, metrics: Sequence[str], *,
                    backend: Optional[str] = None, generator: Optional[torch.Generator] = None) -> Tensor:
    """Spectral scores (docs/design.md §4) of candidate outputs on the chosen backend; lower is better.

    ``corrupted``: (C, H, W); ``outputs``: (B, C, H, W); returns a float64
    ``(B, len(metrics))`` tensor on ``outputs``' device.  See
    :func:`~isnas_fast.kernels.spectral_reference.spectral_scores_reference`
    for the metrics.
    """
    if _choose(backend, outputs.device) == "triton":
        from .fused_spectral import triton_spectral_scores

        return triton_spectral_scores(corrupted, outputs, metrics, generator=generator)
    from .spectral_reference import spectral_scores_reference

    return spectral_scores_reference(corrupted, outputs, metrics, generator=generator)


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
    from . import fused_upsample_conv as op

    if _choose(backend, x.device) == "triton":
        return op.triton_upsample_conv(x, weight, mode, activation)
    return op.upsample_conv_reference(x, weight, mode, activation)


_LAZY = {
    "upsample_conv_reference": "fused_upsample_conv",
    "triton_upsample_conv": "fused_upsample_conv",
    "spectral_scores_reference": "spectral_reference",
    "triton_spectral_scores": "fused_spectral",
}


def __getattr__(name: str) -> Any:  # lazy exports of the kernel modules (PEP 562)
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
