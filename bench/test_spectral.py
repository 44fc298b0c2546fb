"""Spectral scoring: reference vs fused (docs/design.md §4, §7 (a)).

Groups (``path``: ``reference`` / ``fast``):

* ``spectral/<set>/B<b>xC<c>x<S>x<S>``: reference = the float64 PyTorch
  reference (``spectral_scores_reference``);
* ``spectral-f32ref/<set>/B<b>xC<c>x<S>x<S>``: reference = the same in
  float32 (``dtype=torch.float32``).

fast = ``isnas_fast.kernels.spectral_scores``, the dispatcher's choice:
the fused Triton kernels on CUDA, the float64 reference itself on a CPU
(there the ``spectral/`` ratio is ~1 by construction and says nothing about
the kernels).  ``ISNAS_FAST_BACKEND=reference|triton`` forces a backend.

Check, per metric, on the same inputs: relative error of fast against the
group's reference (max |difference| over the candidates / max |reference|)
<= 2 x (the float32 reference's error against float64) + 1e-5 -- the
kernel tests' rule (tests/kernels/test_spectral_kernel.py) with room for
the float32-vs-float64 difference itself on a CPU.

Options: ``--bench-batch`` (default 4), ``--bench-channels`` (3),
``--bench-size`` (64), ``--bench-metrics`` (strip,all).  GPU sizes:
``--bench-batch 256 --bench-size 512``.
"""
from __future__ import annotations

import pytest
import torch

import _common as common


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        sizes = common.option_list(metafunc.config, "--bench-size", 64)
        sets = common.option_list(metafunc.config, "--bench-metrics", "strip,all", str)
        unknown = [s for s in sets if s not in common.METRIC_SETS]
        if unknown:
            raise pytest.UsageError(f"--bench-metrics: unknown set(s) {unknown}; choose from {list(common.METRIC_SETS)}")
        cases = [(s, m) for s in sizes for m in sets]
        metafunc.parametrize("case", cases, ids=[f"{m}-{s}" for s, m in cases])


@pytest.mark.parametrize("path", common.PATHS)
@pytest.mark.parametrize("ref_dtype", ["float64", "float32"])
def test_spectral(case, ref_dtype, path, opts, device, agreement, measure):
    from isnas_fast import kernels
    from isnas_fast.kernels.spectral_reference import spectral_scores_reference

    size, set_name = case
    batch, channels = opts.batch or 4, opts.channels or 3
    metrics = common.METRIC_SETS[set_name]
    shape = f"B{batch}xC{channels}x{size}x{size}"
    group = f"{'spectral' if ref_dtype == 'float64' else 'spectral-f32ref'}/{set_name}/{shape}"
    y, o = common.spectral_inputs(batch, channels, size, size, device)
    dtype = getattr(torch, ref_dtype)
    backend = kernels.backend(device=device)

    key = ("spectral", set_name, shape, str(device))
    if key not in agreement:
        agreement[key] = (kernels.spectral_scores(y, o, metrics), spectral_scores_reference(y, o, metrics),
                          spectral_scores_reference(y, o, metrics, dtype=torch.float32))
    fast, r64, r32 = agreement[key]
    ref = r64 if ref_dtype == "float64" else r32
    checks = {}
    for k, name in enumerate(metrics):
        err = common.relative_error(fast[:, k], ref[:, k])
        bound = 2 * common.relative_error(r32[:, k], r64[:, k]) + 1e-5
        assert err <= bound, f"{group}: {name}: fast vs {ref_dtype} reference, relative error {err:.3g} > {bound:.3g}"
        checks[name] = {"rel_err": err, "bound": bound}

    fns = {"reference": lambda: spectral_scores_reference(y, o, metrics, dtype=dtype),
           "fast": lambda: kernels.spectral_scores(y, o, metrics)}
    measure(fns[path], device, group, path, backend=backend, metrics=metrics, shape=shape,
            reference=f"{ref_dtype} PyTorch reference", fast=f"kernels.spectral_scores ({backend})",
            max_abs_diff=common.max_abs_diff(fast, ref), checks=checks)
