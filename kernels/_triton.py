"""Triton, imported once for every kernel module; stand-ins where it is absent.

The package must import without Triton (macOS, CPU-only installs): there
``triton`` is None, ``tl.constexpr`` an annotation stand-in and ``jit`` the
identity, so kernel modules still define (unusable) kernels and the
dispatcher falls back to the references.
"""
from __future__ import annotations

from ._env import interpreting

__all__ = ["triton", "tl", "jit", "interpreting"]

try:
    import triton
    import triton.language as tl

    jit = triton.jit
except ImportError:  # pragma: no cover - exercised only where Triton is absent
    triton = None

    class tl:  # type: ignore[no-redef]
        constexpr = None

    def jit(fn):  # type: ignore[no-redef]
        return fn

