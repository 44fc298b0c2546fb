"""Compile settings of the DIP step (isnas_fast.dip.compiling) and the scatter-free upsample.

No torch.compile run here (a cold CPU compile takes minutes; the compiled DIP
step is covered once, in test_fast_dip.py): the joint-graph pass is checked on
the graphs AOTAutograd hands to the partitioner, with eager kernels.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from isnas_fast.dip.compiling import RecomputeBoolMasks, inductor_options
from isnas_fast.network import Upsample2x, nearest_upsample_2x


@pytest.mark.parametrize("shape", [(1, 3, 4, 4), (2, 16, 8, 12), (1, 64, 32, 32)])
def test_nearest_upsample_2x_same_values_and_gradient(shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g, dtype=torch.float32, requires_grad=True)
    up = nearest_upsample_2x(x)
    ref = F.interpolate(x, scale_factor=2, mode="nearest")
    assert up.shape == ref.shape and torch.equal(up, ref)  # copies: bit-identical
    w = torch.randn(ref.shape, generator=g)
    (gx,) = torch.autograd.grad((up * w).sum(), x)
    (gr,) = torch.autograd.grad((ref * w).sum(), x)
    # Independent float64 reference: each input pixel collects its 2x2 block.
    b, c, h, wd = shape
    g64 = w.double().reshape(b, c, h, 2, wd, 2).sum(dim=(3, 5))
    assert torch.isfinite(gx).all()
    for got in (gx, gr):
        assert torch.allclose(got.double(), g64, rtol=1e-5, atol=1e-6)
    assert torch.allclose(gx, gr, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsample2x_module_is_the_plain_upsample_outside_compile(mode):
    m = Upsample2x(mode)
    x = torch.rand(1, 4, 6, 6, generator=torch.Generator().manual_seed(3))
    assert isinstance(m, nn.Upsample) and m.mode == mode and not m.state_dict()
    assert torch.equal(m(x), nn.Upsample(scale_factor=2, mode=mode)(x))


def _partition(fn, inputs, use_pass: bool):
    """Run ``fn`` forward + backward through AOTAutograd with Inductor's
    decompositions and the min-cut partitioner (optionally after
    RecomputeBoolMasks), executing the graphs with eager kernels.
    Returns (forward graph, marked node count, outputs, grads)."""
    from functorch.compile import aot_function, make_boxed_func, min_cut_rematerialization_partition

    seen: dict = {"marked": 0}

    def fw(gm, _):
        seen["fw"] = gm
        return make_boxed_func(gm.forward)

    def bw(gm, _):
        return make_boxed_func(gm.forward)

    def partition(joint, joint_inputs, **kw):
        if use_pass:
            seen["marked"] = RecomputeBoolMasks()(joint.graph)
        return min_cut_rematerialization_partition(joint, joint_inputs, compiler="inductor", **kw)

    from torch._inductor.decomposition import select_decomp_table

    # Inductor's decompositions: activations become comparisons + where, as in torch.compile.
    compiled = aot_function(fn, fw_compiler=fw, bw_compiler=bw, partition_fn=partition,
                            decompositions=select_decomp_table())
    xs = [x.detach().clone().requires_grad_() for x in inputs]
    out = compiled(*xs)
    grads = torch.autograd.grad(out, xs)
    return seen["fw"], seen["marked"], out, grads


def _saved_dtypes(fw_graph) -> list[torch.dtype]:
    out_node = next(n for n in fw_graph.graph.nodes if n.op == "output")
    vals = out_node.args[0]
    return [v.meta["val"].dtype for v in vals if hasattr(v, "meta") and isinstance(v.meta.get("val"), torch.Tensor)]


def test_recompute_bool_masks_keeps_masks_out_of_the_saved_tensors():
    # conv -> LeakyReLU -> conv, the networks' pattern: the activation's mask is
    # what the partitioner would save (1 byte/element) for the backward.
    def fn(x, w1, w2):
        h = F.leaky_relu(F.conv2d(x, w1, padding=1), 0.2)
        return F.conv2d(h, w2, padding=1).square().mean()

    g = torch.Generator().manual_seed(7)
    inputs = [torch.randn(1, 4, 12, 12, generator=g), torch.randn(6, 4, 3, 3, generator=g),
              torch.randn(5, 6, 3, 3, generator=g)]
    fw, marked, out, grads = _partition(fn, inputs, use_pass=True)
    assert marked >= 1
    assert _saved_dtypes(fw) and torch.bool not in _saved_dtypes(fw)
    # Without the pass the partitioner keeps the 1-byte mask (why the pass exists).
    fw_plain, _, out_plain, grads_plain = _partition(fn, inputs, use_pass=False)
    assert torch.bool in _saved_dtypes(fw_plain)
    # Same function: forward and gradients match plain eager autograd.
    xs = [x.clone().requires_grad_() for x in inputs]
    ref = fn(*xs)
    ref_grads = torch.autograd.grad(ref, xs)
    for o in (out, out_plain):
        assert torch.allclose(o, ref, rtol=1e-6, atol=0)
    for got, want, plain in zip(grads, ref_grads, grads_plain):
        assert torch.isfinite(got).all()
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-7)
        assert torch.allclose(got, plain, rtol=1e-5, atol=1e-7)


def test_recompute_bool_masks_marks_only_boolean_pointwise_nodes():
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.utils.checkpoint import CheckpointPolicy

    def fn(x):
        m = x > 0
        return torch.where(m, x, 0.2 * x).sum() + m.sum()

    gm = make_fx(fn, tracing_mode="fake")(torch.randn(4, 4))
    marked = RecomputeBoolMasks()(gm.graph)
    tagged = [n for n in gm.graph.nodes if n.meta.get("recompute") == CheckpointPolicy.MUST_RECOMPUTE]
    assert marked == len(tagged) == 1
    assert tagged[0].meta["val"].dtype == torch.bool


def test_inductor_options_per_device():
    from torch._inductor.custom_graph_pass import CustomPassBase

    opts = inductor_options(torch.device("cpu"))
    p = opts["joint_custom_post_pass"]
    assert isinstance(p, RecomputeBoolMasks)
    # Inductor keys its FX graph cache by the uuid of a CustomPassBase (a plain callable bypasses the cache).
    assert isinstance(p, CustomPassBase) and p.uuid()
    assert opts["layout_optimization"] is False  # no per-step weight/grad layout copies (module docstring)
    assert opts.get("cpp_wrapper", False) == (torch.__version__ >= "2.13")
    assert inductor_options(torch.device("cuda")) is None


def test_importing_the_package_does_not_import_triton_or_inductor():
    """Triton reads TRITON_INTERPRET when it is imported: the package must not
    import it (through Inductor) before a caller or a test session sets it."""
    import subprocess
    import sys

    code = ("import sys, isnas_fast, isnas_fast.dip, isnas_fast.dip.compiling, isnas_fast.network; "
            "print(sorted(m for m in ('triton', 'torch._inductor') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
