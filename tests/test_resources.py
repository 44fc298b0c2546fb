"""The resource estimate: per-network counts, growth with size and members, the
tiling choice under a memory budget, and the one-line refusal."""
from __future__ import annotations

import os
import re

import pytest

from isnas_fast.dip import EarlyStopping
from isnas_fast.errors import InputError
from isnas_fast.resources import GIB, available_memory, estimate_run, plan_resources, profile_network
from isnas_fast.tiling import plan_tiles

RUN = dict(width=16, in_channels=32, channels=3, task="denoise", iterations=1200, device="cpu",
           early_stopping=EarlyStopping())


def test_profile_counts_grow_with_width():
    narrow = profile_network("nasdip-denoise", 16, 32, 3, "denoise")
    wide = profile_network("nasdip-denoise", 32, 32, 3, "denoise")
    assert 0 < narrow.saved_bytes_per_pixel < wide.saved_bytes_per_pixel
    assert 0 < narrow.flops_per_pixel < wide.flops_per_pixel
    assert narrow.parameters < wide.parameters
    # a feature map of 16 float32 channels at full size is 64 bytes per pixel: the U-Net keeps many
    assert narrow.saved_bytes_per_pixel > 64 * 10
    assert profile_network("nasdip-denoise", 16, 32, 3, "denoise") is narrow  # cached


def test_touched_bytes_split_at_the_cache_size_and_grow_with_the_pixels():
    prof = profile_network("nasdip-denoise", 32, 32, 3, "denoise")
    assert prof.touch_slopes == tuple(sorted(prof.touch_slopes)) and min(prof.touch_slopes) > 0
    assert prof.fixed_touched_bytes > 0  # the weights and the normalisations' statistics
    px = 256 * 256
    small, spilled = prof.touched_bytes(px, cache_bytes=16 * 2**20)
    # however the tensors are split, the total is the same
    for cache in (0, 2**20, 2**40):
        assert sum(prof.touched_bytes(px, cache_bytes=cache)) == pytest.approx(small + spilled, rel=1e-12)
    assert prof.touched_bytes(px, cache_bytes=2**40)[1] == 0
    assert prof.touched_bytes(px, cache_bytes=0)[0] == pytest.approx(prof.fixed_touched_bytes)
    # a 32-channel float32 full-size map is 128 bytes per pixel: 8 MiB at 256 px fits 16 MiB, 32 MiB at 512 not
    assert spilled == 0 < prof.touched_bytes(512 * 512, cache_bytes=16 * 2**20)[1]
    # the part that grows, grows exactly with the pixels
    total = sum(prof.touched_bytes(4 * px))
    assert total - prof.fixed_touched_bytes == pytest.approx(4 * (small + spilled - prof.fixed_touched_bytes))


def test_interpolating_upsamplings_are_counted_by_their_taps():
    from isnas_fast.genotype import Genotype

    skips = "0100001111001111111000000"
    nearest, bilinear, bicubic = (profile_network(Genotype.parse(f"{u},{skips}"), 32, 32, 3, "denoise")
                                  for u in (134, 8, 71))
    assert nearest.tap_bytes_per_pixel == 0
    # the same cells and shapes: only the taps differ (4 bilinear, 16 bicubic)
    assert bilinear.tap_bytes_per_pixel > 0
    assert bicubic.tap_bytes_per_pixel == pytest.approx(4 * bilinear.tap_bytes_per_pixel)
    assert profile_network("nasdip-denoise", 32, 32, 3, "denoise").tap_bytes_per_pixel == 0  # nearest only


def test_cpu_time_per_pixel_grows_once_maps_outgrow_the_cache_and_counts_interpolation():
    from isnas_fast.genotype import Genotype
    from isnas_fast.resources import cpu_step_seconds

    nasdip = profile_network("nasdip-denoise", 32, 32, 3, "denoise")
    # 32-channel full-size maps are 8 MiB at 256 px and 32 MiB at 512 px: four times the pixels cost more
    # than four times the time (measured 0.39 and 2.67 s: bench/README.md, "Tiles and the resource estimate")
    assert cpu_step_seconds(nasdip, [512 * 512]) > 4.5 * cpu_step_seconds(nasdip, [256 * 256])
    # the same skips and cells, bicubic rather than nearest before the 5x5 convolution: slower
    skips = "0100001111001111111000000"
    bicubic, nearest = (profile_network(Genotype.parse(f"{u},{skips}"), 32, 32, 3, "denoise") for u in (71, 134))
    assert cpu_step_seconds(bicubic, [512 * 512]) > 1.1 * cpu_step_seconds(nearest, [512 * 512])


def test_estimate_grows_with_pixels_members_and_the_early_stopping_window():
    prof = profile_network("nasdip-denoise", 16, 32, 3, "denoise")

    def est(pixels, members=1, es=EarlyStopping(), iterations=1200):
        return estimate_run(prof, [pixels] * members, "cpu", channels=3, iterations=iterations,
                            early_stopping=es)

    small, large = est(256 * 256), est(1024 * 1024)
    assert small.peak_bytes < large.peak_bytes and small.seconds_per_step < large.seconds_per_step
    # the part that grows with the image grows in proportion
    assert large.working_bytes / small.working_bytes == pytest.approx(16, rel=0.05)
    assert est(256 * 256, members=4).working_bytes > 3.9 * small.working_bytes
    assert est(256 * 256, es=None).working_bytes < small.working_bytes  # the window of outputs
    assert est(256 * 256, iterations=2).working_bytes < small.working_bytes
    assert small.seconds == pytest.approx(small.seconds_per_step * 1200)
    # the held-out stop trains a twin with pixels held out, then the run on every pixel
    twice = est(256 * 256, es=EarlyStopping(method="heldout"))
    assert twice.iterations == 2400 and twice.seconds == pytest.approx(twice.seconds_per_step * 2400)
    line = large.describe()
    assert "\n" not in line and "GiB peak" in line and "per step" in line and "(estimated)" in line


def test_estimate_is_not_timed_on_cuda():
    prof = profile_network("nasdip-denoise", 16, 32, 3, "denoise")
    est = estimate_run(prof, [65536], "cuda", channels=3, iterations=10)
    assert est.seconds_per_step is None and est.peak_bytes == est.working_bytes > 0
    assert "per step" not in est.describe()


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="reads /proc/meminfo (Linux)")
def test_available_memory_on_the_cpu():
    avail = available_memory("cpu")
    assert avail is not None and avail > 0


def test_a_small_image_within_the_budget_runs_whole():
    plan = plan_resources((256, 256), "nasdip-denoise", **RUN, memory_budget=8 * GIB)
    assert plan.tile is None and plan.plan is None and plan.group_size == 1
    assert plan.estimate.pixels == 256 * 256
    assert "whole image" in plan.describe()
    # a tile side at least the image's is the whole image
    assert plan_resources((256, 256), "nasdip-denoise", **RUN, tile=256, memory_budget=8 * GIB).tile is None


def test_a_large_image_is_tiled_to_fit_the_budget():
    budget = 2.0 * GIB
    whole = plan_resources((2048, 2048), "nasdip-denoise", **RUN, memory_budget=1000 * GIB)
    assert whole.tile is None and whole.estimate.working_bytes > budget
    plan = plan_resources((2048, 2048), "nasdip-denoise", **RUN, memory_budget=budget)
    assert plan.tile is not None and plan.tile % 32 == 0 and plan.plan is not None
    assert plan.estimate.working_bytes <= budget
    assert 1 <= plan.group_size <= len(plan.plan)
    assert plan.plan == plan_tiles((2048, 2048), plan.tile, plan.overlap)
    # a larger budget takes larger groups or larger tiles, never fewer pixels per group
    more = plan_resources((2048, 2048), "nasdip-denoise", **RUN, memory_budget=4 * budget)
    assert more.estimate.pixels >= plan.estimate.pixels


def test_an_asked_tile_is_used_with_groups_that_fit():
    plan = plan_resources((1024, 1024), "nasdip-denoise", **RUN, tile=256, overlap=32, memory_budget=1 * GIB)
    assert plan.tile == 256 and plan.overlap == 32 and plan.group_size >= 1
    assert plan.estimate.working_bytes <= 1 * GIB


def test_a_run_that_cannot_fit_is_refused_in_one_line():
    with pytest.raises(InputError) as err:
        plan_resources((2048, 2048), "nasdip-denoise", **RUN, memory_budget=1e6)
    msg = str(err.value)
    assert "\n" not in msg
    assert re.search(r"^restoring 2048x2048 px in tiles needs about [0-9.]+ GiB \(estimated\) but [0-9.]+ GiB "
                     r"are allowed; free memory \(--width 16 is the narrowest\)$", msg), msg
    wide = dict(RUN, width=64)
    with pytest.raises(InputError, match=r"GiB are allowed; use a smaller --width$"):
        plan_resources((2048, 2048), "nasdip-denoise", **wide, memory_budget=1e6)


def test_a_tile_too_large_for_the_budget_names_one_that_fits():
    with pytest.raises(InputError) as err:
        plan_resources((2048, 2048), "nasdip-denoise", **RUN, tile=1024, memory_budget=2 * GIB)
    msg = str(err.value)
    assert "\n" not in msg and "a 1024 px tile" in msg
    m = re.search(r"use --tile (\d+)$", msg)
    assert m, msg
    fits = plan_resources((2048, 2048), "nasdip-denoise", **RUN, tile=int(m.group(1)), memory_budget=2 * GIB)
    assert fits.tile == int(m.group(1)) and fits.estimate.working_bytes <= 2 * GIB


def test_plan_restore_reads_the_settings_and_estimates_a_search_with_the_stand_in():
    from dataclasses import replace

    import torch

    from isnas_fast.resources import SEARCH_STAND_IN, plan_restore
    from isnas_fast.search import preset
    from isnas_fast.tasks import Denoise

    obs = Denoise(25).observe(torch.full((1, 3, 512, 512), 0.5))
    settings = preset("quick")
    whole = plan_restore(obs, settings, device="cpu", memory_budget=64 * GIB)
    direct = plan_resources((512, 512), SEARCH_STAND_IN["denoise"], width=settings.width, in_channels=3, channels=3,
                            task="denoise", iterations=1200, device="cpu", early_stopping=settings.early_stopping,
                            memory_budget=64 * GIB)
    assert whole.tile is None and whole.estimate == direct.estimate
    fixed = plan_restore(obs, settings, device="cpu", architecture="nasdip-denoise", in_channels=32,
                         memory_budget=64 * GIB)
    assert fixed.estimate.peak_bytes > whole.estimate.peak_bytes  # 32 input channels
    short = plan_restore(obs, replace(settings, final_iterations=10, early_stopping=None), device="cpu",
                         memory_budget=64 * GIB)
    assert short.estimate.iterations == 10 and short.estimate.peak_bytes < whole.estimate.peak_bytes
    tiled = plan_restore(obs, settings, device="cpu", tile=256, overlap=32, memory_budget=64 * GIB)
    assert tiled.tile == 256 and len(tiled.plan) == 9
