"""Overlapping tiles: the plan covers the image, the blend is a partition of unity,
observations split consistently, tiled DIP runs are deterministic."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from isnas_fast.errors import InputError
from isnas_fast.search import preset
from isnas_fast.tasks import Denoise, Inpaint, SuperResolve
from isnas_fast.tiling import (ALIGN, TilePlan, blend_tiles, crop_tiles, plan_tiles, restore_in_tiles,
                               split_observation, tile_seed, tile_weights)


def _coverage(plan: TilePlan) -> torch.Tensor:
    cov = torch.zeros(plan.height, plan.width, dtype=torch.int32)
    for t, l, h, w in plan.boxes:
        cov[t:t + h, l:l + w] += 1
    return cov


@pytest.mark.parametrize("size,tile,overlap", [((96, 160), 64, 32), ((256, 256), 160, 64), ((64, 64), 64, 32),
                                               ((352, 128), 96, 40), ((2048, 2048), 576, 64),
                                               ((224, 96), 64, 0)])
def test_tiles_cover_the_image_exactly_with_the_overlap(size, tile, overlap):
    plan = plan_tiles(size, tile, overlap)
    h, w = size
    assert plan.tile_height == min(tile, h) and plan.tile_width == min(tile, w)
    assert plan.tile_height % 32 == 0 and plan.tile_width % 32 == 0
    assert bool((_coverage(plan) >= 1).all())
    for starts, side, length in ((plan.tops, plan.tile_height, h), (plan.lefts, plan.tile_width, w)):
        assert starts[0] == 0 and starts[-1] + side == length
        assert all(s % ALIGN == 0 for s in starts)
        assert all(a + side - b >= overlap for a, b in zip(starts, starts[1:]))  # neighbours overlap enough
        assert all(b > a for a, b in zip(starts, starts[1:]))
    assert len(plan) == len(plan.tops) * len(plan.lefts) == len(plan.boxes)


def test_plan_example_and_description():
    plan = plan_tiles((96, 160), 64, 32)
    assert plan.tops == (0, 32) and plan.lefts == (0, 32, 64, 96)
    assert plan.describe() == "8 tile(s) of 64x64 px (4x2, overlap >= 32 px)"
    assert plan.total_pixels == 8 * 64 * 64


@pytest.mark.parametrize("size,tile,overlap", [((100, 96), 64, 32), ((96, 96), 48, 16), ((96, 96), 32, 0),
                                               ((96, 96), 64, 12), ((96, 96), 64, 64), ((96, 96), 64, -8)])
def test_bad_plans_are_refused_in_one_line(size, tile, overlap):
    with pytest.raises(InputError) as err:
        plan_tiles(size, tile, overlap)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("size,tile,overlap", [((96, 160), 64, 32), ((256, 256), 160, 64), ((352, 128), 96, 40),
                                               ((224, 96), 64, 0)])
def test_blend_weights_sum_to_one_everywhere(size, tile, overlap):
    plan = plan_tiles(size, tile, overlap)
    total = torch.zeros(size, dtype=torch.float64)
    for (t, l, h, w), wt in zip(plan.boxes, tile_weights(plan)):
        assert wt.shape == (h, w) and bool((wt > 0).all())
        total[t:t + h, l:l + w] += wt
    assert torch.allclose(total, torch.ones_like(total), atol=1e-12)


def test_weights_fall_smoothly_across_an_overlap():
    plan = plan_tiles((64, 160), 96, 32)  # two tiles along the width, overlapping by 32
    assert plan.lefts == (0, 64)
    left, right = tile_weights(plan)
    row = left[0]
    assert torch.allclose(row[:64], torch.ones(64, dtype=torch.float64))  # alone there
    fall = row[64:]
    assert bool((fall[1:] < fall[:-1]).all()) and 0 < float(fall[-1]) < 0.01 and float(fall[0]) > 0.99
    assert torch.allclose(right[0][:32], 1 - fall)


def test_blend_of_the_crops_gives_the_image_back():
    g = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 96, 160, generator=g)
    plan = plan_tiles((96, 160), 64, 32)
    back = blend_tiles(crop_tiles(image, plan), plan)
    assert back.shape == image.shape
    assert float((back - image).abs().max()) < 1e-6
    flat = torch.full((1, 1, 256, 256), 0.3)
    plan = plan_tiles((256, 256), 160, 64)
    assert float((blend_tiles(crop_tiles(flat, plan), plan) - flat).abs().max()) < 1e-6


def test_blend_checks_its_inputs():
    plan = plan_tiles((96, 160), 64, 32)
    with pytest.raises(InputError, match="one output per tile"):
        blend_tiles([torch.zeros(1, 3, 64, 64)] * 3, plan)
    with pytest.raises(InputError, match="does not fit"):
        blend_tiles([torch.zeros(1, 3, 32, 64)] * len(plan), plan)


def test_denoise_and_inpaint_tiles_are_crops_of_the_observation():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, 96, 160, generator=g)
    plan = plan_tiles((96, 160), 64, 32)
    obs = Denoise(25).corrupt(clean, 1)
    tiles = split_observation(obs, plan)
    assert len(tiles) == len(plan)
    for tile, (t, l, h, w) in zip(tiles, plan.boxes):
        assert tile.task is obs.task and tile.output_size == (h, w)
        assert torch.equal(tile.y, obs.y[..., t:t + h, l:l + w])
    inp = Inpaint(50).corrupt(clean, 2)
    for tile, (t, l, h, w) in zip(split_observation(inp, plan), plan.boxes):
        assert torch.equal(tile.mask, inp.mask[..., t:t + h, l:l + w])
        assert torch.equal(tile.y, inp.y[..., t:t + h, l:l + w])
        assert torch.equal(tile.y, tile.y * tile.mask)  # still zero where unknown


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_sr_tiles_map_low_resolution_crops_to_output_tiles(factor):
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, 128, 192, generator=g)
    obs = SuperResolve(factor).corrupt(clean)
    plan = plan_tiles(obs.output_size, 64, 32)
    f = factor
    for tile, (t, l, h, w) in zip(split_observation(obs, plan), plan.boxes):
        assert tile.output_size == (h, w)
        assert tile.y.shape[-2:] == (h // f, w // f)
        assert torch.equal(tile.y, obs.y[..., t // f:(t + h) // f, l // f:(l + w) // f])
        # the forward operator of the tile applies to the tile's HR crop
        assert tile.forward(clean[..., t:t + h, l:l + w]).shape == tile.y.shape


def test_split_refuses_a_plan_of_another_size():
    obs = Denoise(25).corrupt(torch.rand(1, 3, 96, 96), 0)
    with pytest.raises(InputError, match="tile plan"):
        split_observation(obs, plan_tiles((96, 160), 64, 32))


def test_tile_seeds_differ_and_do_not_collide_with_the_noise_streams():
    seeds = [tile_seed(0, "nasdip-denoise", k) for k in range(64)]
    assert len(set(seeds)) == 64 and not set(seeds) & {s + 1 for s in seeds}
    assert tile_seed(0, "nasdip-denoise", 5) == tile_seed(0, "nasdip-denoise", 5)
    assert tile_seed(1, "nasdip-denoise", 5) != tile_seed(0, "nasdip-denoise", 5)


def _settings(steps: int):
    return replace(preset("quick"), final_iterations=steps, early_stopping=None)


def test_tiled_runs_are_deterministic_and_independent_of_grouping():
    torch.manual_seed(123)
    obs = Denoise(25).corrupt(torch.rand(1, 3, 64, 160, generator=torch.Generator().manual_seed(4)), 0)
    kw = dict(tile=64, overlap=32, seed=7, in_channels=32, quiet=True)
    out, runs = restore_in_tiles(obs, "nasdip-denoise", _settings(2), **kw)
    assert out.shape == (1, 3, 64, 160) and len(runs) == 4
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert all(r.dip.iterations_run == 2 and r.size == (64, 64) for r in runs)
    # two groups of two: every member steps on one thread, as in the group of four
    again, _ = restore_in_tiles(obs, "nasdip-denoise", _settings(2), group_size=2, **kw)
    assert torch.allclose(out, again, atol=1e-5)
    other, _ = restore_in_tiles(obs, "nasdip-denoise", _settings(2), **{**kw, "seed": 8})
    assert float((other - out).abs().max()) > 1e-3
    # the blended image is the blend of the tiles' own outputs
    plan = plan_tiles((64, 160), 64, 32)
    assert torch.allclose(out, blend_tiles([r.dip.output for r in runs], plan), atol=1e-6)


def test_tiled_inpainting_runs_with_each_tiles_mask():
    clean = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(5))
    obs = Inpaint(50).corrupt(clean, 0)
    out, runs = restore_in_tiles(obs, "nasdip-inpaint", _settings(2), tile=64, overlap=0, seed=0,
                                 in_channels=32, quiet=True)
    assert out.shape == clean.shape and len(runs) == 2
    assert all(r.task == "inpaint" for r in runs)


def test_restore_in_tiles_refuses_a_bad_group_size():
    obs = Denoise(25).corrupt(torch.rand(1, 3, 64, 64), 0)
    with pytest.raises(InputError, match="group_size"):
        restore_in_tiles(obs, "nasdip-denoise", _settings(1), tile=64, overlap=32, group_size=0, quiet=True)


def test_tiled_super_resolution_fits_each_low_resolution_tile():
    clean = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(6))
    obs = SuperResolve(2).corrupt(clean)
    out, runs = restore_in_tiles(obs, "nasdip-sr", _settings(1), tile=64, overlap=0, seed=0, in_channels=32,
                                 quiet=True)
    assert out.shape == clean.shape and len(runs) == 2
    assert all(r.size == (64, 64) and r.dip.output.shape == (1, 3, 64, 64) for r in runs)
