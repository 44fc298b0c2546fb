"""The package's version, and the versions of what decides its numbers.

This module imports nothing from the package, so every module (and
``pyproject.toml``, which reads :data:`__version__` from here) can take the
version without importing the package's ``__init__``.
"""
from __future__ import annotations

import platform

__all__ = ["__version__", "versions"]

__version__ = "0.1.0"


def versions() -> dict[str, str]:
    """The versions that decide a run's numbers: isnas_fast, torch, numpy and Python."""
    import numpy as np
    import torch

    return {"isnas_fast": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}
