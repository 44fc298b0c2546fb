"""Errors the package raises for bad input.

Every user-facing problem (bad file, bad parameter, bad genotype) raises
:class:`InputError` with a one-line message naming the problem; the CLI prints
that line and exits non-zero without a traceback.
"""
from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """A problem with what the user gave (file, image, parameter, genotype)."""
