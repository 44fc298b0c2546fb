"""The one place that decides the device (docs/design.md §2: no scattered device checks)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from .errors import InputError

__all__ = ["resolve_device", "seeded", "memory_format"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; ``"cpu"``/``"cuda"``/``"cuda:1"`` as given.

    Asking for CUDA on a machine without it raises InputError.
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}: use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but no CUDA GPU is available (use --device cpu or auto)")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device!r}: use auto, cpu or cuda")
    return dev


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run a block with torch's global RNGs seeded, restoring the caller's RNG state after.

    Parameter initialisation (``nn.Module`` constructors) draws from the global
    generator; this keeps network construction deterministic without leaking
    a changed RNG state to the user.
    """
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def memory_format(device: torch.device | str | None) -> torch.memory_format:
    """The activation and weight layout the networks use on ``device``.

    Channels-last on the CPU: oneDNN's convolutions run on it without
    reordering every input and output (see bench/README.md for the measured
    gain); the default contiguous layout on CUDA, where cuDNN with float32 /
    TF32 gained nothing from it in the cohort's CUDA-graph step.
    """
    kind = torch.device(device).type if device is not None else "cpu"
    return torch.channels_last if kind == "cpu" else torch.contiguous_format
