"""The one dispatcher (kernels/__init__.py, docs/design.md §2 / §7): argument > env var > automatic."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from isnas_fast import kernels
from isnas_fast.errors import InputError

HAVE_TRITON = kernels._triton_available()


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("ISNAS_FAST_BACKEND", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return monkeypatch


@pytest.mark.skipif(not HAVE_TRITON, reason="needs Triton")
def test_precedence_argument_env_auto(clean_env):
    mp = clean_env
    assert kernels.backend(device="cpu") == "reference"  # auto: CPU
    assert kernels.backend(device=torch.device("cuda")) == "triton"  # auto: CUDA
    assert kernels.backend(device="cuda:0") == "triton"
    mp.setenv("TRITON_INTERPRET", "1")
    assert kernels.backend(device="cpu") == "triton"  # auto: interpreter on the CPU
    assert kernels.backend() == "triton"
    mp.setenv("ISNAS_FAST_BACKEND", "reference")
    assert kernels.backend(device="cuda") == "reference"  # env beats auto
    assert kernels.backend("triton", device="cuda") == "triton"  # argument beats env
    assert kernels.backend(" Triton ", device="cpu") == "triton"
    mp.delenv("TRITON_INTERPRET")
    mp.setenv("ISNAS_FAST_BACKEND", "triton")
    assert kernels.backend(device="cuda") == "triton"
    # Triton cannot run on a CPU tensor without the interpreter: every feature
    # must still run there, so the reference is used.
    assert kernels.backend(device="cpu") == "reference"
    assert kernels.backend("reference", device="cuda") == "reference"


def test_unknown_backend_and_missing_triton(clean_env):
    with pytest.raises(InputError, match="unknown backend"):
        kernels.backend("cuda")
    clean_env.setenv("ISNAS_FAST_BACKEND", "fast")
    with pytest.raises(InputError, match="unknown backend"):
        kernels.backend()
    clean_env.delenv("ISNAS_FAST_BACKEND")
    clean_env.setattr(kernels, "_triton_available", lambda: False)
    assert kernels.backend(device="cuda") == "reference"
    with pytest.raises(InputError, match="not installed"):
        kernels.backend("triton", device="cuda")


def test_reference_path_of_upsample_conv(clean_env):
    g = torch.Generator().manual_seed(11)
    x = torch.rand(1, 4, 3, 5, generator=g, requires_grad=True)
    w = torch.rand(6, 4, 3, 3, generator=g)
    y = kernels.upsample_conv(x, w, "nearest", "relu")
    assert y.shape == (1, 6, 6, 10)
    assert torch.equal(y, kernels.upsample_conv_reference(x, w, "nearest", "relu"))
    y.sum().backward()
    assert x.grad is not None


def test_dispatchers_are_functions_after_every_kernel_module_is_imported():
    """No module of the package shares a name with a dispatcher or a lazy export,
    so importing every kernel module leaves the functions in place."""
    import importlib
    import pkgutil

    names = [m.name for m in pkgutil.iter_modules(kernels.__path__)]
    for name in names:
        importlib.import_module(f"isnas_fast.kernels.{name}")
    assert not set(names) & set(kernels.__all__)
    for name in ("spectral_scores", "upsample_conv", "backend", "upsample_conv_reference",
                 "spectral_scores_reference"):
        assert callable(getattr(kernels, name)) and not isinstance(getattr(kernels, name), type(kernels)), name
    with pytest.raises(AttributeError):
        kernels.no_such_thing  # noqa: B018


def test_package_imports_and_runs_without_triton():
    """Where Triton is absent (macOS, CPU wheels) everything imports and the references run."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["triton"] = None  # any `import triton` now fails
        import torch
        from isnas_fast import kernels
        from isnas_fast.errors import InputError
        from isnas_fast.kernels import fused_spectral, fused_upsample_conv as uc, spectral_reference
        assert kernels.backend(device="cpu") == "reference"
        assert kernels.backend(device="cuda") == "reference"
        try:
            kernels.backend("triton")
        except InputError:
            pass
        else:
            raise AssertionError("backend('triton') without Triton must fail")
        x, w = torch.rand(1, 2, 3, 3), torch.rand(2, 2, 3, 3)
        assert kernels.upsample_conv(x, w).shape == (1, 2, 6, 6)
        y = torch.rand(3, 40, 40)
        s = kernels.spectral_scores(y, y[None], ["psd_db_strip_mse"])
        r = spectral_reference.spectral_scores_reference(y, y[None], ["psd_db_strip_mse"], dtype=torch.float32)
        assert s.shape == r.shape == (1, 1)
        try:
            fused_spectral.triton_spectral_scores(y, y[None], ["psd_db_mse"])
        except InputError:
            pass
        else:
            raise AssertionError("the kernel path without Triton must fail clearly")
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "ISNAS_FAST_BACKEND")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
