"""The environment switches of the kernels, read without importing Triton."""
from __future__ import annotations

import os

__all__ = ["interpreting", "ENV_VAR"]

#: Environment variable that forces a backend (``reference`` or ``triton``).
ENV_VAR = "ISNAS_FAST_BACKEND"


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU (``TRITON_INTERPRET=1``, read by
    Triton when a kernel is defined)."""
    return os.environ.get("TRITON_INTERPRET") == "1"
