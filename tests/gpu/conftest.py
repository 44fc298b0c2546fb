"""CUDA-only correctness tests (docs/design.md §7): they run when CUDA is present and
are skipped otherwise ("needs a CUDA device").  ``bench/gpu_check.py`` runs
them as its correctness sections; tests/kernels holds the CPU-sized kernel
tests, these are the bigger GPU cases.

* On a GPU the Triton kernels must be compiled, not interpreted: with
  ``TRITON_INTERPRET=1`` set (``tests/kernels/conftest.py`` sets it when the
  whole suite runs) these tests are skipped -- run ``pytest tests/gpu``, or
  the suite with ``TRITON_INTERPRET=0``.
* ``ISNAS_GPU_TESTS_ON_CPU=1`` together with ``TRITON_INTERPRET=1`` runs
  them on the CPU under Triton's interpreter instead, at tiny sizes and the
  smallest case of each test only; what needs a GPU (CUDA graphs,
  compiling) is skipped.  A rehearsal of the test code, not a GPU check:
  ``bench/gpu_check.py --dry-run`` uses it.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import pytest
import torch

ON_CPU_VAR = "ISNAS_GPU_TESTS_ON_CPU"


@dataclass(frozen=True)
class Target:
    """Where the tests run: a CUDA device, or the CPU rehearsal."""

    device: torch.device
    rehearsal: bool

    def size(self, real, tiny):
        """``real`` on a GPU, ``tiny`` in the CPU rehearsal."""
        return tiny if self.rehearsal else real

    def needs_gpu(self, what: str) -> None:
        if self.rehearsal:
            pytest.skip(f"{what} needs a GPU (CPU rehearsal)")

    def smallest_case_only(self, smallest: bool) -> None:
        if self.rehearsal and not smallest:
            pytest.skip("the CPU rehearsal runs the smallest case only")


def _target() -> Target:
    interpreting = os.environ.get("TRITON_INTERPRET") == "1"
    if os.environ.get(ON_CPU_VAR) == "1":
        if not interpreting:
            pytest.skip(f"{ON_CPU_VAR}=1 needs TRITON_INTERPRET=1 (the CPU rehearsal runs Triton's interpreter)")
        return Target(torch.device("cpu"), True)
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if interpreting:
        pytest.skip("needs a CUDA device with compiled Triton kernels: TRITON_INTERPRET=1 is set "
                    "(run with TRITON_INTERPRET=0)")
    return Target(torch.device("cuda"), False)


@pytest.fixture(scope="session", autouse=True)
def target() -> Target:
    pytest.importorskip("triton")
    return _target()


@pytest.fixture
def rel():
    """``rel(actual, expected)``: max |actual - expected| / max |expected| in float64 (inf if non-finite)."""

    def measure(actual: torch.Tensor, expected: torch.Tensor) -> float:
        a, e = actual.detach().cpu().double(), expected.detach().cpu().double()
        if not (torch.isfinite(a).all() and torch.isfinite(e).all()):
            return float("inf")
        scale = e.abs().max().item()
        err = (a - e).abs().max().item()
        return err / scale if scale > 0 else err

    return measure


@pytest.fixture
def no_tf32():
    """A context: cuDNN / cuBLAS in exact float32 inside it (PyTorch's convolutions default to TF32)."""

    @contextlib.contextmanager
    def block():
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved

    return block


@pytest.fixture
def kernel_backend(monkeypatch):
    """``kernel_backend(name)``: ``$ISNAS_FAST_BACKEND`` for the rest of the test."""
    from isnas_fast.kernels import ENV_VAR

    return lambda name: monkeypatch.setenv(ENV_VAR, name)
