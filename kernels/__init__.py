"""Fast paths and the one dispatcher that picks them (DESIGN §2, §7).

``backend()`` decides, in one place, whether the Triton kernels or the plain
PyTorch references run.  Callers never branch on the device themselves.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["backend", "spectral_scores", "BACKENDS"]

BACKENDS = ("reference", "triton")
ENV_VAR = "ISNAS_FAST_BACKEND"


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
    """
    choice = requested or os.environ.get(ENV_VAR) or "auto"
    choice = choice.strip().lower()
    if choice not in BACKENDS + ("auto",):
        raise InputError(f"unknown backend {choice!r}: choose auto, {', '.join(BACKENDS)}")
    if choice == "auto":
        on_cuda = device is not None and torch.device(device).type == "cuda"
        interp = os.environ.get("TRITON_INTERPRET") == "1"
        return "triton" if (on_cuda or interp) and _triton_available() else "reference"
    if choice == "triton" and not _triton_available():
        raise InputError("backend 'triton' was asked for but Triton is not installed")
    return choice


def spectral_scores(corrupted: Tensor, outputs: Tensor, metrics: Sequence[str], *,
                    backend_name: Optional[str] = None, generator: Optional[torch.Generator] = None) -> Tensor:
    """Dispatching front of :func:`isnas_fast.spectral.spectral_scores`: (C,H,W), (B,C,H,W) -> (B, M) float64."""
    from ..spectral import spectral_scores as reference

    be = backend(backend_name, outputs.device)
    if be == "triton":
        try:
            from .spectral import triton_spectral_scores
        except ImportError:  # kernels not built in this version
            triton_spectral_scores = None
        if triton_spectral_scores is not None:
            return triton_spectral_scores(corrupted, outputs, metrics, generator=generator)
    return reference(corrupted, outputs, metrics, generator=generator)
