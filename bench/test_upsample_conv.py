"""x2 upsample + conv of an upsampling cell: reference vs fused (docs/design.md §3.2, §7 (b)).

Groups ``upsample_conv/<mode>/k<k>/<act>/<dtype>/N<n>xC<c>x<S>x<S>``
(``path``: ``reference`` / ``fast``), forward only, under ``no_grad``:
reference = ``F.interpolate`` + ``F.conv2d`` + activations
(``upsample_conv_reference``); fast = ``isnas_fast.kernels.upsample_conv``,
the dispatcher's choice (the fused Triton kernel on CUDA, the reference
itself on a CPU: there the ratio is ~1 by construction).  ``<S>`` is the
input size; the output is 2S x 2S.

Check on the same inputs, against the float64 reference: relative error
(max |error| / max |float64 output|) of fast <= 2 x the reference's own
error + 1e-5 in float32 (+ 1e-3 in bfloat16 / float16).  On CUDA the
reference's float32 convolutions run in TF32 (cuDNN's default), so the
bound follows the reference's rounding.

Options: ``--bench-batch`` (default 1), ``--bench-channels`` (16),
``--bench-size`` (32), ``--bench-ks`` (3), ``--bench-dtypes`` (float32).
GPU sizes: ``--bench-channels 128 --bench-size 256 --bench-ks 3,5
--bench-dtypes float32,bfloat16``.
"""
from __future__ import annotations

import pytest
import torch

import _common as common

ACT = "leaky_relu"
MODES = ["bilinear", "nearest"]


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cfg = metafunc.config
        dtypes = common.option_list(cfg, "--bench-dtypes", "float32", str)
        unknown = [d for d in dtypes if d not in common.DTYPES]
        if unknown:
            raise pytest.UsageError(f"--bench-dtypes: unknown {unknown}; choose from {list(common.DTYPES)}")
        cases = [(s, k, m, d) for s in common.option_list(cfg, "--bench-size", 32)
                 for k in common.option_list(cfg, "--bench-ks", 3) for m in MODES for d in dtypes]
        metafunc.parametrize("case", cases, ids=[f"{m}-k{k}-{d}-{s}" for s, k, m, d in cases])


@pytest.mark.parametrize("path", common.PATHS)
def test_upsample_conv(case, path, opts, device, agreement, measure):
    from isnas_fast import kernels
    from isnas_fast.kernels.fused_upsample_conv import upsample_conv_reference

    size, k, mode, dname = case
    batch, channels = opts.batch or 1, opts.channels or 16
    group = f"upsample_conv/{mode}/k{k}/{ACT}/{dname}/N{batch}xC{channels}x{size}x{size}"
    x, w = common.upsample_conv_inputs(batch, channels, channels, size, k, common.DTYPES[dname], device)
    backend = kernels.backend(device=device)

    with torch.no_grad():
        if group not in agreement:
            exact = upsample_conv_reference(x.double(), w.double(), mode, ACT)
            agreement[group] = (kernels.upsample_conv(x, w, mode, ACT), upsample_conv_reference(x, w, mode, ACT), exact)
        fast, ref, exact = agreement[group]
        err, ref_err = common.relative_error(fast, exact), common.relative_error(ref, exact)
        bound = 2 * ref_err + (1e-5 if dname == "float32" else 1e-3)
        assert err <= bound, f"{group}: fast vs float64, relative error {err:.3g} > {bound:.3g} (reference: {ref_err:.3g})"

        fns = {"reference": lambda: upsample_conv_reference(x, w, mode, ACT),
               "fast": lambda: kernels.upsample_conv(x, w, mode, ACT)}
        measure(fns[path], device, group, path, backend=backend, reference="F.interpolate + F.conv2d",
                fast=f"kernels.upsample_conv ({backend})", max_abs_diff=common.max_abs_diff(fast, ref),
                rel_err_vs_float64=err, reference_rel_err_vs_float64=ref_err, bound=bound)
