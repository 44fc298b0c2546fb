"""Shared setup of the kernel tests (docs/design.md §7: Triton kernels are tested on the
CPU with ``TRITON_INTERPRET=1`` at small sizes).

Environment, set at import time -- before any test module imports a kernel
module, because ``@triton.jit`` reads ``TRITON_INTERPRET`` when a kernel is
defined:

* ``TRITON_INTERPRET=1`` unless already set (run with ``TRITON_INTERPRET=0`` on
  a GPU machine to test the compiled kernels on CUDA tensors instead).
* ``ISNAS_FAST_BACKEND=reference`` unless already set: with the interpreter on,
  the automatic backend would be "triton" on the CPU, and every other test in
  the same session (networks, DIP loops) would crawl through the interpreter.
  Kernel tests ask for ``backend="triton"`` explicitly; the dispatcher tests
  set or clear the variable themselves.
"""
from __future__ import annotations

import os
import zlib

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("ISNAS_FAST_BACKEND", "reference")

import pytest  # noqa: E402
import torch  # noqa: E402


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@pytest.fixture
def device() -> torch.device:
    """CPU under the interpreter, else the GPU (compiled kernels)."""
    if _interpreting() or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


@pytest.fixture
def gen(request) -> torch.Generator:
    """A CPU generator seeded from the test's id: fresh inputs per test, reproducible."""
    g = torch.Generator()
    g.manual_seed(zlib.crc32(request.node.nodeid.encode()) + 20260611)
    return g


def _describe(actual: torch.Tensor, expected: torch.Tensor) -> str:
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    lines = [f"shape {tuple(a.shape)}"]
    for label, t in (("actual", a), ("expected", e)):
        lines.append(f"{label}: {int(t.isnan().sum())} NaN, {int(t.isinf().sum())} inf")
    diff = (a - e).abs()
    diff = torch.where(diff.isnan(), torch.full_like(diff, float("inf")), diff)
    if diff.numel():
        worst = int(diff.flatten().argmax())
        idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), a.shape))
        lines.append(f"worst at {idx}: actual {a[idx].item()!r}, expected {e[idx].item()!r}")
    return "; ".join(lines)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|actual - expected| / max|expected|`` (inf if anything is non-finite)."""
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if not (torch.isfinite(a).all() and torch.isfinite(e).all()):
        return float("inf")
    scale = e.abs().max().item() if e.numel() else 0.0
    return (a - e).abs().max().item() / scale if scale > 0 else (a - e).abs().max().item()


@pytest.fixture
def assert_rel():
    """``assert_rel(actual, expected, bound, what)``: max-abs error over max-abs
    reference <= bound; on failure, says where they differ (NaN / inf included)."""

    def check(actual: torch.Tensor, expected: torch.Tensor, bound: float, what: str = "") -> float:
        assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
        err = relative_error(actual, expected)
        assert err <= bound, f"{what}: relative error {err:.3g} > {bound:.3g}; {_describe(actual, expected)}"
        return err

    return check


@pytest.fixture
def rel_err():
    """The relative error measure of :func:`assert_rel`, as a function."""
    return relative_error
