"""Tests of the spectral reference (kernels/spectral_reference.py, docs/design.md §4) against an independent NumPy/SciPy version.

The NumPy implementation below is written from docs/design.md §4 directly: full
``numpy.fft.fft2``, ``np.abs(...)**2``, ``np.histogram(density=True)``,
``scipy.stats.wasserstein_distance`` and one explicit mask per per_bw circle;
it imports nothing from the module under test.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from isnas_fast.errors import InputError
from isnas_fast.kernels import spectral_reference as spectral
from isnas_fast.kernels.spectral_reference import (
    METRICS,
    canonical_metric,
    circle_mask,
    density_histogram,
    hist_emd,
    psd,
    spectral_scores_reference as spectral_scores,
    strip_mask,
)

RTOL = 1e-9  # float64 against float64


# --------------------------------------------------------------------------- #
# Independent NumPy implementation (docs/design.md §4)
# --------------------------------------------------------------------------- #
def np_freq(n: int) -> np.ndarray:
    """fftshifted frequencies: the design's i/n - 1/2 for even n, (i - n//2)/n for odd n."""
    i = np.arange(n, dtype=np.float64)
    return i / n - 1 / 2 if n % 2 == 0 else (i - n // 2) / n


def np_r2(h: int, w: int, dtype=np.float64) -> np.ndarray:
    fy = np_freq(h).astype(dtype)[:, None]
    fx = np_freq(w).astype(dtype)[None, :]
    return fx**2 + fy**2


def np_circle(h: int, w: int, d: float) -> np.ndarray:
    return np_r2(h, w) < (d / 2) ** 2


def np_strip(h: int, w: int) -> np.ndarray:
    r2 = np_r2(h, w)
    return (r2 < (0.2 / 2) ** 2) & ~(r2 < (0.1 / 2) ** 2)


def np_psd(a: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.abs(np.fft.fft2(a, norm="forward")) ** 2, axes=(-2, -1))


def np_db(a: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum(a, 1e-30))


def np_hist_emd(a_vals: np.ndarray, b_vals: np.ndarray) -> float:
    h_a, _ = np.histogram(a_vals, bins=100, density=True)
    h_b, _ = np.histogram(b_vals, bins=100, density=True)
    return wasserstein_distance(h_a, h_b)


def np_per_bw(o: np.ndarray, p: float) -> float:
    return np_per_bw_power(np_psd(o).mean(axis=0), p)


def np_per_bw_power(power: np.ndarray, p: float) -> float:
    h, w = power.shape
    total = power.sum()
    prev = 0.0
    for k, d in enumerate(np.linspace(0, np.sqrt(2), 100)[1:], start=1):
        energy = power[np_circle(h, w, d)].sum()
        if energy >= p * total:
            return ((k - 1) + (p * total - prev) / (energy - prev)) / 99
        prev = energy
    return 1.0


def np_db_bw(o: np.ndarray, cut: float) -> float:
    return np_db_bw_power(np_psd(o).mean(axis=0), cut)


def np_db_bw_power(power: np.ndarray, cut: float) -> float:
    level = np_db(power)
    return float(np.mean(level > level.max() - cut))


def np_metric(name: str, y: np.ndarray, o: np.ndarray) -> float:
    """One metric for one (C, H, W) output against y."""
    if name.startswith("per_bw_"):
        return np_per_bw(o, float(name[len("per_bw_"):]))
    if name.startswith("db_bw_"):
        return np_db_bw(o, float(name[len("db_bw_"):]))
    if name.startswith("nodc_"):
        y, o, name = y - y.mean(), o - o.mean(), name[len("nodc_"):]
    py, po = np_psd(y), np_psd(o)
    strip = np_strip(*y.shape[-2:])
    if name == "psd_db_mse":
        return float(np.mean((np_db(py) - np_db(po)) ** 2))
    if name == "psd_db_strip_mse":
        return float(np.mean((np_db(py)[:, strip] - np_db(po)[:, strip]) ** 2))
    if name == "psd_strip_hist_emd":
        return np_hist_emd(py[:, strip].ravel(), po[:, strip].ravel())
    raise KeyError(name)


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def assert_close(got, want, rtol: float = RTOL, atol: float = 0.0, what: str = "") -> None:
    got = got.detach().cpu().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.isfinite(got).all(), f"{what}: non-finite result: {got}"
    assert np.isfinite(want).all(), f"{what}: non-finite expectation: {want}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=False, err_msg=what)


def lowpass(a: np.ndarray, cutoff: float) -> np.ndarray:
    """Gaussian low-pass over the last two dims; ``cutoff`` = std in cycles/pixel."""
    h, w = a.shape[-2:]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    gain = np.exp(-(fx**2 + fy**2) / (2 * cutoff**2))
    return np.real(np.fft.ifft2(np.fft.fft2(a) * gain))


def make_batch(rng: np.random.Generator, shape, batch: int):
    """A corrupted image and ``batch`` outputs: noise, smooth and mixed images.

    Every image keeps a small white-noise floor: without it the high
    frequencies of a Gaussian-smoothed image are pure FFT rounding (~1e-33),
    and their dB values differ between any two FFT implementations.
    """
    c, h, w = shape
    y = np.clip(lowpass(rng.random(shape), 0.08) + rng.normal(0, 0.1, shape), 0, 1)
    outs = []
    for b in range(batch):
        kind = b % 3
        if kind == 0:
            outs.append(rng.random(shape))
        elif kind == 1:
            smooth = 0.5 + 3 * lowpass(rng.normal(0, 1, shape), 0.03)
            outs.append(smooth + rng.normal(0, 1e-3, shape))
        else:
            outs.append(lowpass(rng.random(shape), 0.15) + rng.normal(0, 0.02, shape))
    return y, np.stack(outs)


def edges_and_neighbours(first: float, last: float) -> np.ndarray:
    edges = np.linspace(first, last, 101)
    inner = edges[1:-1]
    return np.concatenate([edges, np.nextafter(inner, -np.inf), np.nextafter(inner, np.inf)])


SIMILARITY = [m for m in METRICS if m != "random"]
LOWPASS = [
    "per_bw_0.3", "per_bw_0.8", "per_bw_0.9", "per_bw_0.99", "db_bw_10", "db_bw_40", "db_bw_75"
]


# --------------------------------------------------------------------------- #
# Agreement with the NumPy implementation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "shape,batch,seed",
    [
        ((3, 64, 64), 2, 0),
        ((1, 48, 80), 3, 1),
        ((3, 33, 47), 5, 2),
        ((2, 40, 31), 1, 3),
        ((3, 80, 64), 4, 4),
        ((1, 68, 85), 2, 5),  # grid points exactly on both strip edges
    ],
)
def test_scores_match_numpy(shape, batch, seed):
    rng = np.random.default_rng(seed)
    y, outs = make_batch(rng, shape, batch)
    names = SIMILARITY + LOWPASS
    got = spectral_scores(torch.from_numpy(y), torch.from_numpy(outs), names)
    assert got.dtype == torch.float64 and got.shape == (batch, len(names))
    want = np.array([[np_metric(n, y, o) for n in names] for o in outs])
    for j, name in enumerate(names):
        assert_close(got[:, j], want[:, j], what=name)
    # The per_bw cases must reach beyond the first (DC) circle to test the interpolation.
    assert (got[:, names.index("per_bw_0.99")] > 2 / 99).all()


def test_psd_matches_numpy_and_parseval():
    rng = np.random.default_rng(10)
    for shape in [(2, 3, 64, 64), (1, 48, 80), (3, 33, 47), (5, 7)]:
        a = rng.random(shape)
        got = psd(torch.from_numpy(a))
        assert got.dtype == torch.float64 and got.shape == a.shape
        assert_close(got, np_psd(a), rtol=1e-9, atol=1e-15)
        assert_close(got.sum(dim=(-2, -1)), (a**2).mean(axis=(-2, -1)), rtol=1e-12)
    # float32 input is upcast: same result as the float64 copy of the same values.
    a32 = torch.from_numpy(rng.random((3, 20, 22)).astype(np.float32))
    assert torch.equal(psd(a32), psd(a32.double()))


@pytest.mark.parametrize(
    "h,w", [(64, 64), (48, 80), (33, 47), (80, 31), (7, 5), (50, 50), (68, 85)]
)
def test_masks_match_numpy(h, w):
    np.testing.assert_array_equal(strip_mask(h, w).numpy(), np_strip(h, w))
    for d in (0.05, 0.2, 0.5, 1.0, np.sqrt(2)):
        np.testing.assert_array_equal(circle_mask(h, w, d).numpy(), np_circle(h, w, d))
    # The zero frequency sits where fftshift puts it, for even and odd sizes.
    dc = circle_mask(h, w, 1e-9)
    assert dc.sum() == 1 and dc[h // 2, w // 2]
    assert strip_mask(h, w).dtype == torch.bool


def test_strip_boundary_w80_needs_float64():
    """fx = 0.1 (and -0.05) at W = 80 lie on the strip's edges (docs/design.md §4)."""
    h, w = 64, 80
    got = strip_mask(h, w).numpy()
    want64 = np_strip(h, w)
    np.testing.assert_array_equal(got, want64)

    # The same formula in float32 moves boundary pixels across the edges.
    r2_32 = np_r2(h, w, np.float32)
    want32 = (r2_32 < (np.float32(0.2) / 2) ** 2) & ~(r2_32 < (np.float32(0.1) / 2) ** 2)
    differ = np.argwhere(want32 != want64)
    assert len(differ) > 0
    # Row h//2 is fy = 0; column 48 is fx = 48/80 - 1/2 = 0.09999999999999998 in
    # float64 (inside the outer circle), 0.10000002 in float32 (outside).
    assert 48 / 80 - 1 / 2 < 0.1
    assert got[h // 2, 48] and not want32[h // 2, 48]
    assert [h // 2, 48] in differ.tolist()


@pytest.mark.parametrize(
    "h,w,i,j,edge",
    [(50, 50, 21, 22, "outer"), (68, 85, 28, 38, "outer"), (68, 85, 31, 40, "inner")],
)
def test_strip_edges_are_strict(h, w, i, j, edge):
    """Grid points whose float64 r2 equals (d/2)**2 exactly: '<' excludes them."""
    r2 = np_r2(h, w)[i, j]
    assert r2 == ((0.2 if edge == "outer" else 0.1) / 2) ** 2
    mask = strip_mask(h, w)
    # On the outer edge: outside the outer disc.
    # On the inner edge: outside the inner disc, so in the strip.
    assert bool(mask[i, j]) == (edge == "inner")
    assert not circle_mask(h, w, 0.2 if edge == "outer" else 0.1)[i, j]


# --------------------------------------------------------------------------- #
# Histogram and EMD
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(20).random(1000),
        np.random.default_rng(21).normal(size=(3, 517)),  # batched rows
        np.arange(101, dtype=np.float64),  # every value on an edge
        np.arange(301, dtype=np.float64) / 3.0,
        # Edges and their float neighbours: numpy's one-off index corrections
        # fire here (down-corrections for the first, up-corrections for the second).
        edges_and_neighbours(0.1, 0.7),
        edges_and_neighbours(2.2, 9.1),
        np.full(17, 0.25),  # degenerate: numpy widens the range to [v - 0.5, v + 0.5]
        np.zeros(40),
        np.array([3.0]),
    ],
)
def test_density_histogram_is_numpys(values):
    got = density_histogram(torch.from_numpy(values)).numpy()
    rows = values.reshape(-1, values.shape[-1])
    want = np.stack([np.histogram(r, bins=100, density=True)[0] for r in rows]).reshape(got.shape)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, want)


def test_hist_emd_matches_scipy_batched():
    rng = np.random.default_rng(30)
    a = rng.exponential(size=300)
    b = rng.exponential(scale=2.0, size=(4, 250))
    got = hist_emd(torch.from_numpy(a), torch.from_numpy(b))
    assert got.shape == (4,)
    assert_close(got, [np_hist_emd(a, row) for row in b])
    assert hist_emd(torch.from_numpy(a), torch.from_numpy(a)).item() == 0.0


def test_degenerate_histogram_constant_image():
    """A constant image has an all-zero strip spectrum: numpy's min == max branch."""
    rng = np.random.default_rng(40)
    y = np.full((3, 64, 64), 0.5)
    assert np.ptp(np_psd(y)[:, np_strip(64, 64)]) == 0.0  # really degenerate
    outs = np.stack([rng.random((3, 64, 64)), np.full((3, 64, 64), 0.2)])
    names = ["psd_strip_hist_emd", "nodc_psd_strip_hist_emd", "psd_db_strip_mse"]
    got = spectral_scores(torch.from_numpy(y), torch.from_numpy(outs), names)
    want = [[np_metric(n, y, o) for n in names] for o in outs]
    assert_close(got, want)
    # Two constant images: identical degenerate histograms, zero distance.
    assert got[1, 0].item() == 0.0
    assert got[0, 0].item() > 0.0


# --------------------------------------------------------------------------- #
# Validation and names
# --------------------------------------------------------------------------- #
def test_rejects_nan_inf_and_bad_shapes():
    y = torch.rand(3, 32, 32)
    o = torch.rand(2, 3, 32, 32)
    bad = o.clone()
    bad[1, 0, 3, 4] = float("nan")
    with pytest.raises(InputError, match="non-finite"):
        spectral_scores(y, bad, ["psd_db_mse"])
    bad_y = y.clone()
    bad_y[0, 0, 0] = float("inf")
    with pytest.raises(InputError, match="non-finite"):
        spectral_scores(bad_y, o, ["psd_db_mse"])
    with pytest.raises(InputError, match=r"\(C, H, W\)"):
        spectral_scores(y[None], o, ["psd_db_mse"])
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        spectral_scores(y, o[0], ["psd_db_mse"])
    with pytest.raises(InputError, match="do not match"):
        spectral_scores(y, o[:, :, :, :31], ["psd_db_mse"])
    with pytest.raises(InputError, match="too small"):
        spectral_scores(torch.rand(1, 8, 8), torch.rand(1, 1, 8, 8), ["psd_db_strip_mse"])


def test_unknown_metric_names_it_and_lists_valid():
    with pytest.raises(InputError) as info:
        spectral_scores(torch.rand(1, 32, 32), torch.rand(1, 1, 32, 32), ["psd db strip msee"])
    message = str(info.value)
    assert "psd db strip msee" in message
    assert "psd_db_strip_mse" in message and "per_bw_<p>" in message
    assert "\n" not in message
    for bad in ["per_bw(1.5)", "per_bw_0", "db_bw(-3)", "db_bw_x", "per_bw", "psd"]:
        with pytest.raises(InputError, match=bad.replace("(", r"\(").replace(")", r"\)")):
            canonical_metric(bad)


@pytest.mark.parametrize(
    "alias,canonical",
    [
        ("psd db strip mse", "psd_db_strip_mse"),
        ("psd_db_strip_mse", "psd_db_strip_mse"),
        ("PSD-DB-Strip-MSE", "psd_db_strip_mse"),
        (" nodc psd strip hist emd ", "nodc_psd_strip_hist_emd"),
        ("Random", "random"),
        ("per_bw(0.9)", "per_bw_0.9"),
        ("per_bw_0.9", "per_bw_0.9"),
        ("per-bw(0.90)", "per_bw_0.9"),
        ("PER BW 0.75", "per_bw_0.75"),
        ("db_bw(10)", "db_bw_10"),
        ("db_bw_10", "db_bw_10"),
        ("db_bw_10.0", "db_bw_10"),
        ("db bw ( 7.5 )", "db_bw_7.5"),
    ],
)
def test_canonical_metric_aliases(alias, canonical):
    assert canonical_metric(alias) == canonical
    assert canonical_metric(canonical) == canonical


# --------------------------------------------------------------------------- #
# Properties
# --------------------------------------------------------------------------- #
def test_per_bw_monotonic_in_p():
    rng = np.random.default_rng(50)
    _, outs = make_batch(rng, (3, 48, 64), 3)
    ps = [0.05, 0.2, 0.5, 0.75, 0.8, 0.9, 0.95, 0.99, 0.999]
    names = [f"per_bw_{p}" for p in ps]
    got = spectral_scores(torch.rand(3, 48, 64), torch.from_numpy(outs), names)
    g = got.numpy()
    assert np.isfinite(g).all() and (g >= 0).all() and (g <= 1).all()
    assert (np.diff(g, axis=1) >= 0).all()
    assert (g[:, -1] > g[:, 0]).all()


def test_per_bw_exact_cases():
    """Ties and ends of per_bw, on hand-made spectra (64 x 64, DC at (32, 32))."""
    h = w = 64
    power = np.zeros((5, h, w))
    power[0, 32, 32] = power[0, 32, 40] = 1.0  # half the energy at DC, half at fx = 0.125
    # The corner (r2 = 0.5) is inside only the last circle:
    # (sqrt(2)/2)**2 rounds to 0.5000000000000001.
    power[1, 32, 32] = power[1, 0, 0] = 1.0
    power[2, 32, 32] = 1.0  # all energy at DC
    power[3] = np.random.default_rng(55).random((h, w))
    # power[4] stays zero: no energy at all
    ps = [0.5, 0.9, 0.5, 0.7, 0.5]
    got = torch.stack(
        [spectral.per_bandwidth(torch.from_numpy(power[b : b + 1]), p)[0] for b, p in enumerate(ps)]
    )
    assert torch.isfinite(got).all()
    # E_1 == p * total exactly: reached at k = 1.
    assert got[0].item() == pytest.approx(1 / 99, rel=1e-12)
    assert (np.sqrt(2) / 2) ** 2 > 0.5
    assert got[1].item() == pytest.approx((98 + 0.8) / 99, rel=1e-12)
    assert got[2].item() == pytest.approx(0.5 / 99, rel=1e-12)
    assert got[4].item() == 0.0
    assert_close(got[:4], [np_per_bw_power(power[b], p) for b, p in enumerate(ps[:4])])


def test_db_bw_tie_is_excluded():
    """A pixel exactly ``cut`` dB below the peak does not count (strict '>')."""
    power = np.full((1, 4, 5), 0.01)  # -20 dB
    power[0, 1, 2] = 1.0  # 0 dB peak
    power[0, 3, 4] = 0.1  # -10 dB
    got = spectral.db_bandwidth(torch.from_numpy(power), 10.0)
    assert got.item() == 1 / 20
    assert_close(got, [np_db_bw_power(power[0], 10.0)])
    assert spectral.db_bandwidth(torch.from_numpy(power), 20.5).item() == 1.0


def test_db_bw_in_unit_interval_and_monotonic_in_cut():
    rng = np.random.default_rng(60)
    _, outs = make_batch(rng, (3, 33, 47), 4)
    cuts = [1, 10, 30, 60, 100, 400]
    names = [f"db_bw_{c}" for c in cuts]
    got = spectral_scores(torch.rand(3, 33, 47), torch.from_numpy(outs), names).numpy()
    assert np.isfinite(got).all() and (got > 0).all() and (got <= 1).all()
    assert (np.diff(got, axis=1) >= 0).all()
    assert (got[:, -1] == 1.0).all()  # 400 dB below the peak reaches even the floor


def test_random_is_reproducible():
    y, o = torch.rand(1, 16, 16), torch.rand(6, 1, 16, 16)

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return spectral_scores(y, o, ["random"], generator=generator)[:, 0]

    a, b, c = draw(7), draw(7), draw(8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ((a >= 0) & (a < 1)).all() and a.unique().numel() == 6
    assert torch.equal(spectral_scores(y, o, ["random"])[:, 0], draw(0))


def test_lowpassed_output_scores_worse_than_noisy_output():
    """Direction sanity: a noisy y's strip spectrum is matched by noise, not by blur."""
    rng = np.random.default_rng(70)
    shape = (3, 64, 64)
    clean = np.clip(0.5 + 2 * lowpass(rng.normal(size=shape), 0.02), 0, 1)
    y = np.clip(clean + rng.normal(0, 25 / 255, shape), 0, 1)
    noisy_out = np.clip(clean + rng.normal(0, 25 / 255, shape), 0, 1)
    blurred_out = lowpass(y, 0.01)
    outs = torch.from_numpy(np.stack([noisy_out, blurred_out]))
    got = spectral_scores(torch.from_numpy(y), outs, ["psd_db_strip_mse", "nodc_psd_db_strip_mse"])
    assert torch.isfinite(got).all()
    assert (got[1] > 10 * got[0]).all(), got


def test_batching_and_spectrum_reuse(monkeypatch):
    rng = np.random.default_rng(80)
    y, outs = make_batch(rng, (3, 40, 36), 5)
    yt, ot = torch.from_numpy(y), torch.from_numpy(outs)
    names = SIMILARITY + ["per_bw_0.9", "db_bw_20", "random"]
    together = spectral_scores(yt, ot, names)
    for b in range(5):
        alone = spectral_scores(yt, ot[b : b + 1], names[:-1])
        assert_close(alone[0], together[b, :-1], rtol=1e-12)

    calls = []
    real_psd = spectral.psd
    monkeypatch.setattr(spectral, "psd", lambda a, *args, **kw: calls.append(tuple(a.shape)) or real_psd(a, *args, **kw))
    spectral_scores(yt, ot, names)
    # psd(y), psd(o), psd(nodc y), psd(nodc o): the corrupted image once per variant.
    assert sorted(calls) == sorted([(3, 40, 36)] * 2 + [(5, 3, 40, 36)] * 2)


def test_output_dtype_device_and_float32_inputs():
    rng = np.random.default_rng(90)
    y, outs = make_batch(rng, (1, 32, 48), 2)
    y32, o32 = torch.from_numpy(y).float(), torch.from_numpy(outs).float()
    got = spectral_scores(y32, o32, SIMILARITY + ["per_bw_0.9"])
    assert got.dtype == torch.float64 and got.device == o32.device
    want = spectral_scores(y32.double(), o32.double(), SIMILARITY + ["per_bw_0.9"])
    assert_close(got, want, rtol=0)
    assert spectral_scores(y32, o32, []).shape == (2, 0)
    assert spectral_scores(y32, o32[:0], ["psd_db_mse"]).shape == (0, 1)
