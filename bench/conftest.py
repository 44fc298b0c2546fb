"""Shared setup of the pytest-benchmark tests in ``bench/`` (docs/design.md §7: ratios measured in one run).

Convention (``bench/report.py`` reads it): every case is one pytest-benchmark
``group`` (e.g. ``"spectral/strip/B4xC3x64x64"``), parametrised over
``path`` with the ids ``"reference"`` and ``"fast"``.  ``extra_info``
carries ``device`` (the GPU's name or ``cpu (<processor>, N threads)``),
what each side is (``reference`` / ``fast`` descriptions), the details of
the case (backend the dispatcher chose, compile seconds, the largest
difference between the two paths and its bound, ...) and, where the test
measures the unit of interest itself, ``ms`` with ``ms_source`` saying how
(``triton.testing.do_bench`` median on CUDA, per-step median of a DIP run,
the interleaved median of the authors' comparison).  report.py takes a
group's times from ``extra_info["ms"]`` when both sides have it, otherwise
from pytest-benchmark's median; ``ratio = reference / fast`` (> 1: the fast
path is faster).

Every benchmark first checks that the fast path agrees with the reference
on the same inputs (a benchmark of a wrong result is worthless).

Options (defaults are a small CPU run; each file documents its own):

``--bench-device``    auto (CUDA when present) | cpu | cuda
``--bench-size``      spatial size(s), comma-separated
``--bench-width``     network width(s) W of the DIP, export and authors benchmarks
``--bench-batch``     batch of the spectral / upsample + conv cases
``--bench-channels``  channels of the spectral / upsample + conv cases
``--bench-ks``        kernel sizes of the upsample + conv cases
``--bench-dtypes``    dtypes of the upsample + conv cases (float32, bfloat16, float16)
``--bench-metrics``   spectral metric sets (strip, mse, all)
``--bench-steps``     DIP steps per run
``--bench-rounds``    rounds of the DIP and authors benchmarks
``--bench-cohort``    cohort size K of the cohort benchmark
``--bench-threads``   torch (and ONNX Runtime) intra-op threads for the session
``--bench-compile``   run the benchmarks that compile (torch.compile, AOTInductor)
``--authors-code``    a checkout of ozgurkara99/ISNAS-DIP for ``test_authors.py``
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

# Whether the user chose Inductor's cache folder (Inductor sets the variable itself once it has compiled).
_CACHE_GIVEN = "TORCHINDUCTOR_CACHE_DIR" in os.environ


def pytest_addoption(parser):
    g = parser.getgroup("isnas-bench", "isnas_fast benchmarks (bench/)")
    g.addoption("--bench-device", default="auto", help="auto (CUDA when present), cpu or cuda")
    g.addoption("--bench-size", default=None, help="spatial size(s), comma-separated (per-file default)")
    g.addoption("--bench-width", default=None, help="network width(s) W, comma-separated (per-file default)")
    g.addoption("--bench-batch", type=int, default=None, help="batch of the spectral / upsample+conv cases")
    g.addoption("--bench-channels", type=int, default=None, help="channels of the spectral / upsample+conv cases")
    g.addoption("--bench-ks", default="3", help="kernel sizes of the upsample+conv cases (default 3)")
    g.addoption("--bench-dtypes", default="float32",
                help=f"dtypes of the upsample+conv cases, of {', '.join(common.DTYPES)} (default float32)")
    g.addoption("--bench-metrics", default="strip,all",
                help=f"spectral metric sets, of {', '.join(common.METRIC_SETS)} (default strip,all)")
    g.addoption("--bench-steps", type=int, default=None, help="DIP steps per run (default 30)")
    g.addoption("--bench-rounds", type=int, default=None, help="rounds of the DIP and authors benchmarks")
    g.addoption("--bench-cohort", type=int, default=4, help="cohort size K (default 4)")
    g.addoption("--bench-threads", type=int, default=None,
                help="torch and ONNX Runtime intra-op threads (default: torch's)")
    g.addoption("--bench-compile", action="store_true", default=False,
                help="also run the benchmarks that compile (minutes on a CPU)")
    g.addoption("--authors-code", default=None, metavar="PATH",
                help="checkout of the authors' code (ozgurkara99/ISNAS-DIP) for bench/test_authors.py")


def pytest_configure(config):
    if config.getoption("--bench-device") == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--bench-device cuda: no CUDA device here")
    if config.getoption("--bench-threads"):
        torch.set_num_threads(config.getoption("--bench-threads"))


@pytest.fixture(scope="session")
def opts(pytestconfig) -> SimpleNamespace:
    g = pytestconfig.getoption
    return SimpleNamespace(device=common.pick_device(g("--bench-device")), batch=g("--bench-batch"),
                           channels=g("--bench-channels"), steps=g("--bench-steps"), rounds=g("--bench-rounds"),
                           cohort=g("--bench-cohort"), threads=g("--bench-threads"), compile=g("--bench-compile"),
                           authors_code=g("--authors-code"))


@pytest.fixture(scope="session")
def device(opts) -> torch.device:
    return opts.device


@pytest.fixture(scope="session")
def agreement() -> dict:
    """A per-session cache, keyed by group: what the two paths of a group
    compute once and share (the comparison of their results)."""
    return {}


@pytest.fixture
def needs_compile(opts) -> None:
    if not opts.compile:
        pytest.skip(common.COMPILE_SKIP)


@pytest.fixture(scope="session")
def fresh_inductor_cache(opts):
    """A fresh Inductor cache for the session's compiles, so ``compile_s`` is a
    cold compile (what a user's first run pays); an explicit
    ``TORCHINDUCTOR_CACHE_DIR`` is left alone."""
    if _CACHE_GIVEN:
        yield "given"
        return
    with tempfile.TemporaryDirectory(prefix="isnas-bench-inductor-") as d:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = d
        try:
            yield "fresh"
        finally:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)


@pytest.fixture
def measure(benchmark):
    """``measure(fn, device, group, path, **extra_info)``: time ``fn()`` with
    pytest-benchmark (the GPU synchronised after each call) in ``group``;
    on CUDA also with ``triton.testing.do_bench`` (median ms, into
    ``extra_info["ms"]``, which report.py prefers).  Returns ``fn()``'s result."""

    def run(fn: Callable[[], object], device: torch.device, group: str, path: str, **extra) -> object:
        benchmark.group = group
        benchmark.extra_info.update(path=path, device=common.device_label(device), **extra)

        def call():
            out = fn()
            common.sync(device)
            return out

        result = benchmark(call)
        if device.type == "cuda" and not benchmark.disabled:
            import triton.testing

            benchmark.extra_info["ms"] = float(triton.testing.do_bench(fn, return_mode="median"))
            benchmark.extra_info["ms_source"] = "triton.testing.do_bench median"
        return result

    return run
