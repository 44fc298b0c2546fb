"""Networks of the search space (docs/design.md §3.1–3.3): shapes, parameter counts, weight sharing."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from isnas_fast.errors import InputError
from isnas_fast.genotype import Genotype, builtin_genotypes, decode_upsample
from isnas_fast.network import CrossScaleUNet, build_network, count_parameters

# Test vectors from the reference implementation (docs/design.md §3.1), width 128, 3 outputs.
REFERENCE_COUNTS = [
    ("172,0000011001001001100111101", 3, 3_577_219),
    ("269,0111101000000011001010000", 3, 8_692_227),
    ("256,0100000110100101111010101", 3, 8_097_795),
    ("132,1010100101000111101111010", 3, 7_049_603),
    ("64,0001010110110101110010111", 3, 3_493_507),
    ("91,1011110011001110010111011", 3, 3_711_747),
    ("158,1111101111001110001100001", 32, 3_924_867),
    ("86,1100001100101100101100101", 32, 10_710_531),
    ("119,1001011001011000011000011", 32, 3_512_835),
]


# ---- an independent count written from the text of docs/design.md §3, not from the module
def _conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def _bn(c):
    return 2 * c


def _conv_op(kind, cin, cout, k):
    if kind == "conv":
        return _conv(cin, cout, k, False)
    if kind == "trans_conv":  # nn.ConvTranspose2d keeps its default bias in the reference
        return _conv(cin, cout, k, True)
    if kind == "split_stack_sum":
        return _conv(cin // 4, cout, k, False)
    if kind == "sep_conv":
        return cin * k * k + cin * cout
    if kind == "depthwise_conv":
        return (cin // cout) * cout * k * k
    return 0


def _cell(u, W):
    c = decode_upsample(u)
    if c.primitive == "trans_conv":
        return _conv(W, W, c.kernel, True)
    if c.conv_first:
        return _conv_op(c.conv, W, 4 * W, c.kernel)
    mid = W // 4 if c.primitive == "pixel_shuffle" else W
    return _conv_op(c.conv, mid, W, c.kernel)


def independent_count(g: Genotype, cin: int, cout: int, W: int) -> int:
    S = g.matrix
    n = sum(_conv(cin if i == 0 else W, W, 3) + _bn(W) + _conv(W, W, 3) + _bn(W) for i in range(5))
    n += 5 * (_bn(W) + 2 * (_conv(W, W, 3) + _bn(W)) + _conv(W, W, 1) + _bn(W))
    n += 5 * _cell(g.upsample, W) + _conv(W, cout, 1)
    downs, ups = set(), set()
    for r in range(5):
        for c in range(5):
            if not S[r][c]:
                continue
            if c == r:
                n += _conv(cin if c == 0 else W, W, 1) + _bn(W)
            elif c < r:
                downs |= set(range(c, r))
            else:
                ups |= set(range(r + 1, c + 1))
    n += sum(_conv(cin if t == 0 else W, W, 3) + _bn(W) for t in downs)
    n += len(ups) * _cell(g.upsample, W)
    return n


@pytest.mark.parametrize("text,cin,expected", REFERENCE_COUNTS)
def test_parameter_counts_match_reference_and_independent_count(text, cin, expected):
    g = Genotype.parse(text)
    net = build_network(g, cin, 3, 128)
    assert count_parameters(net) == expected
    assert independent_count(g, cin, 3, 128) == expected


def test_baseline_names_build():
    assert count_parameters(build_network("nasdip-denoise", 32, 3)) == 3_924_867
    assert count_parameters(build_network("nasdip-sr", 32, 3)) == 3_512_835
    skip = build_network("dip-skip", 32, 3)
    skip_inpaint = build_network("dip-skip", 32, 3, task="inpaint")
    assert count_parameters(skip_inpaint) > count_parameters(skip)  # 128-channel skips
    ups = [m.mode for m in skip_inpaint.modules() if isinstance(m, nn.Upsample)]
    assert ups and set(ups) == {"nearest"}
    with torch.no_grad():
        out = skip(torch.rand(1, 32, 64, 96))
    assert out.shape == (1, 3, 64, 96) and bool(((out > 0) & (out < 1)).all())


def test_all_522_genotypes_build_and_map_64x64():
    torch.manual_seed(0)
    z = torch.rand(1, 3, 64, 64) * 0.1
    for g in builtin_genotypes():
        net = build_network(g, 3, 3, width=16)
        assert net.training
        with torch.no_grad():
            out = net(z)
        assert out.shape == (1, 3, 64, 64), g
        assert bool(torch.isfinite(out).all()), g
        assert count_parameters(net) == independent_count(g, 3, 3, 16), g


def test_every_cell_kind_builds_and_is_differentiable():
    for u in (0, 70, 130, 150, 200, 230, 255, 270, 290, 312, 323, 186, 62):
        g = Genotype(u, "1" * 25)
        net = build_network(g, 1, 1, width=16)
        out = net(torch.rand(1, 1, 64, 96) * 0.1)
        out.mean().backward()
        grads = [p.grad for p in net.parameters()]
        assert all(gr is not None and bool(torch.isfinite(gr).all()) for gr in grads), u


def test_shared_skip_modules_are_reused_across_paths():
    # Row 2 (target H/4) takes z (c=0) and enc1 (c=1): both cross the H/2 -> H/4 transition,
    # which must be ONE module applied twice (once per source).
    g = Genotype(0, "00000" "00000" "11000" "00000" "00000")
    net = build_network(g, 3, 3, width=16)
    assert isinstance(net, CrossScaleUNet)
    assert sorted(net.skip_down.keys()) == ["0", "1"]
    calls = {"0": 0, "1": 0}
    for k, m in net.skip_down.items():
        m.register_forward_hook(lambda mod, inp, out, k=k: calls.__setitem__(k, calls[k] + 1))
    with torch.no_grad():
        net(torch.rand(1, 3, 64, 64))
    assert calls == {"0": 1, "1": 2}
    # Upward paths: enc4 -> row 1 and enc3 -> row 1 share transitions 3 and 2.
    g = Genotype(0, "00000" "00011" "00000" "00000" "00000")
    net = build_network(g, 3, 3, width=16)
    assert sorted(net.skip_up.keys()) == ["2", "3", "4"]
    # Unused modules are not built: no same-scale skip at all here.
    assert len(net.skip_same) == 0


def test_weight_sharing_changes_parameter_count():
    # Two sources crossing one transition: sharing counts that down-block once.
    g = Genotype(0, "00000" "00000" "11000" "00000" "00000")
    shared = count_parameters(build_network(g, 3, 3, width=16))
    one_path = count_parameters(build_network(Genotype(0, "00000" "00000" "10000" "00000" "00000"), 3, 3, width=16))
    down_1 = _conv(16, 16, 3) + _bn(16)
    assert shared == one_path  # enc1 -> row 2 reuses the z-path's second down-block: no new parameters
    unshared_would_be = one_path + down_1
    assert shared != unshared_would_be


@pytest.mark.parametrize("width", [8, 24, 0])
def test_width_must_be_multiple_of_16(width):
    with pytest.raises(InputError, match="multiple of 16"):
        build_network("nasdip-denoise", 32, 3, width)


def test_bad_names_and_channels():
    with pytest.raises(InputError, match="unknown architecture"):
        build_network("resnet", 3, 3)
    with pytest.raises(InputError, match="in_channels"):
        build_network("nasdip-sr", 0, 3)


def test_build_is_deterministic_under_seed():
    from isnas_fast.device import seeded

    with seeded(7):
        a = build_network("nasdip-sr", 3, 3, 16)
    state = torch.random.get_rng_state()
    with seeded(7):
        b = build_network("nasdip-sr", 3, 3, 16)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("name", ["nasdip-denoise", "nasdip-sr", "dip-skip"])
def test_a_training_step_leaves_no_reference_cycle(name):
    # Whatever a forward and backward allocate must be freed when the step's
    # tensors go: a reference cycle would keep each step's activations and
    # autograd graph until the cyclic collector happens to run, and memory
    # would grow along a long run.
    import gc

    net = build_network(name, 32, 3, width=16, task="denoise")
    z = torch.rand(1, 32, 64, 64, generator=torch.Generator().manual_seed(0))
    out = net(z)
    out.mean().backward()  # the first step may create lasting objects (lazy initialisation)
    del out
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            out = net(z)
            out.mean().backward()
            del out
        found = gc.collect()
    finally:
        gc.enable()
    assert found == 0
