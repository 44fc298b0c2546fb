"""Genotype parsing, printing, validation and the shipped lists (docs/design.md §3)."""
from __future__ import annotations

from pathlib import Path

import pytest

from isnas_fast.errors import InputError
from isnas_fast.genotype import (
    BASELINES,
    Genotype,
    builtin_genotypes,
    decode_upsample,
    random_genotypes,
    read_genotypes,
    valid_upsample_indices,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_parse_formats_roundtrip():
    g = Genotype.parse("172,0000011001001001100111101\r\n")
    assert (g.upsample, g.skips) == (172, "0000011001001001100111101")
    assert Genotype.parse(g.to_csv()) == g
    assert Genotype.parse(g.reference_name()) == g
    assert Genotype.parse("0_172_iteration_4000_sigma_25_skip_0000011001001001100111101") == g
    assert Genotype.parse("results/0_172_iteration_1200_sigma_50_skip_0000011001001001100111101/x.png") == g
    assert Genotype.parse("172, 00000 11001 00100 11001 11101") == g
    assert str(g) == "172,0000011001001001100111101"
    assert g.matrix[1] == (1, 1, 0, 0, 1)


def test_hashable_and_sortable():
    a, b, c = Genotype(5, "1" * 25), Genotype(5, "0" * 25), Genotype(3, "1" * 25)
    assert sorted([a, b, c]) == [c, b, a]
    assert len({a, Genotype(5, "1" * 25), b}) == 2


@pytest.mark.parametrize("text", ["", "abc", "12,0101", "12,01010101010101010101010102", "x,0000000000000000000000000"])
def test_parse_rejects_garbage(text):
    with pytest.raises(InputError, match="cannot parse genotype|skip matrix"):
        Genotype.parse(text)


@pytest.mark.parametrize("u,why", [(240, "depthwise"), (300, "depthwise"), (250, "identity"), (324, r"\[0, 323\]"),
                                   (-1, r"\[0, 323\]")])
def test_invalid_indices_refused_with_reason(u, why):
    with pytest.raises(InputError, match=rf"invalid upsampling index {u}: .*{why}"):
        Genotype(u, "0" * 25)


def test_297_valid_indices_and_decoding_rules():
    valid = valid_upsample_indices()
    assert len(valid) == 297
    assert not set(range(237, 252)) & set(valid) and not set(range(300, 312)) & set(valid)
    # Independent decode of a few indices straight from docs/design.md §3.2.
    c = decode_upsample(0)
    assert (c.primitive, c.conv, c.kernel, c.activation, c.conv_first) == ("bilinear", "conv", 1, "none", False)
    c = decode_upsample(63 + 13)  # bicubic; m = 13: act ACT[1], k = K[(13 // 3) % 4] = 1, CONV[1]
    assert c.primitive == "bicubic" and c.activation == "relu" and c.kernel == 1 and c.conv == "trans_conv"
    c = decode_upsample(126 + 60)  # nearest, m = 60 -> identity
    assert (c.primitive, c.conv, c.activation) == ("nearest", "identity", "none")
    c = decode_upsample(252 + 26)  # m = 26: ACT[2], K[(26 // 3) % 4] = 1, CONV[2]; conv first
    assert (c.primitive, c.conv, c.kernel, c.activation, c.conv_first) == \
        ("pixel_shuffle", "split_stack_sum", 1, "leaky_relu", True)
    c = decode_upsample(252 + 33)  # m = 33: ACT[0], K[(33 // 3) % 4] = K[3] = 7, CONV[2]
    assert (c.conv, c.kernel, c.activation) == ("split_stack_sum", 7, "none")
    c = decode_upsample(322)  # trans conv stride 2, k = K[(322 // 3) % 4] = K[3] = 7, act = ACT[1]
    assert (c.primitive, c.conv, c.kernel, c.activation) == ("trans_conv", "identity", 7, "relu")


def test_builtin_list_matches_shared_csv():
    gl = builtin_genotypes()
    assert len(gl) == 522
    if (SHARED / "isnas_dip_522_models.csv").exists():
        rows = [l for l in (SHARED / "isnas_dip_522_models.csv").read_text().splitlines() if l.strip()]
        assert [g.to_csv() for g in gl] == [r.strip() for r in rows]


@pytest.mark.skipif(not (SHARED / "isnas_dip_5000_random_models.csv").exists(),
                    reason="the shared 5000-model list is not beside this checkout")
def test_5000_list_skips_408_invalid():
    gl, skipped = read_genotypes(SHARED / "isnas_dip_5000_random_models.csv", skip_invalid=True)
    assert skipped == 408 and len(gl) == 4592


def test_read_genotypes_errors(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("u,bits\r\n12,0000000000000000000000000\r\n240,0000000000000000000000000\r\n")
    gl, skipped = read_genotypes(p, skip_invalid=True)
    assert gl == [Genotype(12, "0" * 25)] and skipped == 1
    with pytest.raises(InputError, match="line 3"):
        read_genotypes(p)
    p.write_text("12,00000\n")
    with pytest.raises(InputError, match="line 1"):
        read_genotypes(p, skip_invalid=True)
    with pytest.raises(InputError, match="not found"):
        read_genotypes(tmp_path / "nope.csv")


def test_random_genotypes_seeded_distinct_valid():
    a, b = random_genotypes(20, seed=3), random_genotypes(20, seed=3)
    assert a == b and len(set(a)) == 20
    assert random_genotypes(20, seed=4) != a
    assert all(g.upsample in set(valid_upsample_indices()) for g in a)


def test_baselines():
    assert BASELINES["nasdip-denoise"] == Genotype(158, "1111101111001110001100001")
    assert BASELINES["nasdip-inpaint"].skips == "1100001100101100101100101"
    assert BASELINES["nasdip-sr"].upsample == 119
