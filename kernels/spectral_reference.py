"""Spectral metrics (docs/design.md §4): the one plain-PyTorch reference.

A randomly initialised candidate network is scored by how well the power
spectrum of its output ``o`` matches that of the corrupted image ``y``
(similarity metrics), or by how low-pass its output is (image-independent
metrics).  Every score is *lower is better*.

:func:`spectral_scores_reference` computes every metric the plain PyTorch
way in a chosen precision: float64 (the default; what every fast path is
held to) or float32 (the readable baseline of the fused kernels in
:mod:`isnas_fast.kernels.fused_spectral`, as flash-attention's layer norm
keeps ``layer_norm_ref(upcast=...)``).  The corrupted image's spectrum is
computed once per call.

Conventions shared by every function here:

* ``psd(a)`` is per channel ``fftshift(|fft2(a, norm="forward")|**2)``.
* ``db(a) = 10 * log10(max(a, 1e-30))``: the floor ``1e-30`` (-300 dB) guards
  ``log(0)``; a PSD value that small is rounding noise (for example the DC bin
  after ``nodc``), and flooring it keeps that noise out of the scores.
* ``nodc``: subtracting the mean over (C, H, W) changes only the DC bin of
  each channel, which becomes ``X_c[0, 0] - m`` (``m`` the image mean); the
  spectra are formed that way from one FFT, the DC term in float64.
* Frequency grid (cycles per pixel, zero frequency where ``fftshift`` puts it,
  at index ``n // 2``): for an even size ``n`` the coordinate of index ``i`` is
  ``i / n - 1/2`` evaluated in exactly that form (as docs/design.md §4 and the paper's
  code do); for an odd size it is ``(i - n // 2) / n`` (the design's form would put
  the zero frequency half a bin off centre there). The two are equal in exact
  arithmetic for even ``n`` but *not* bit-for-bit (``48/80 - 1/2`` is
  ``0.09999999999999998`` while ``8/80`` is ``0.1``), and boundary pixels such
  as ``fx = 0.1`` at ``W = 80`` fall in or out of the masks depending on it, so
  the even form is kept literally. Masks are built on the CPU in float64 with
  ``r2 = fx*fx + fy*fy`` and the thresholds ``(d/2)**2`` as Python floats, so
  they are the same on every device and in every precision.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..errors import InputError

__all__ = [
    "METRICS",
    "PARAMETRIC_METRICS",
    "DB_FLOOR",
    "HIST_BINS",
    "canonical_metric",
    "spectral_scores_reference",
    "validate_inputs",
    "checked_strip_mask",
    "full_grid",
    "psd",
    "db",
    "strip_mask",
    "circle_mask",
    "density_histogram",
    "hist_emd",
    "per_bandwidth",
    "db_bandwidth",
]

#: Fixed-name metrics, canonical spelling (lower case, underscores).
METRICS: tuple[str, ...] = (
    "psd_db_strip_mse",
    "psd_strip_hist_emd",
    "psd_db_mse",
    "nodc_psd_db_strip_mse",
    "nodc_psd_strip_hist_emd",
    "nodc_psd_db_mse",
    "random",
)
#: Parametrised metric families; ``<p>`` in (0, 1), ``<cut>`` > 0 dB.
PARAMETRIC_METRICS: tuple[str, ...] = ("per_bw_<p>", "db_bw_<cut>")

#: PSD values below this are floored before taking dB (guards log 0).
DB_FLOOR = 1e-30
#: Bins of the strip histogram (docs/design.md §4).
HIST_BINS = 100

# Strip (annulus) diameter ratios and the per_bw circles (docs/design.md §4).
_STRIP_INNER = 0.1
_STRIP_OUTER = 0.2
_N_CIRCLES = 99  # diameters linspace(0, sqrt(2), 100)[1:]

_SIMILARITY_BASES = ("psd_db_strip_mse", "psd_strip_hist_emd", "psd_db_mse")


# --------------------------------------------------------------------------- #
# Metric names
# --------------------------------------------------------------------------- #
def _valid_names() -> str:
    return ", ".join(METRICS + PARAMETRIC_METRICS)


def _format_number(x: float) -> str:
    """Shortest round-tripping text for ``x``, without a trailing ``.0``."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


_PARAMETRIC_RE = re.compile(
    r"(per|db)[\s_-]*bw\s*(?:\(\s*(?P<paren>[^()]*?)\s*\)|[\s_-](?P<suffix>\S+))"
)


def canonical_metric(name: str) -> str:
    """Canonical spelling of a spectral metric name.

    Case-insensitive; spaces, hyphens and underscores are interchangeable
    (``"psd db strip mse"``, ``"PSD-DB-Strip-MSE"`` -> ``"psd_db_strip_mse"``).
    Parametrised metrics take their parameter after a separator or in
    parentheses: ``"per_bw(0.9)"`` / ``"per_bw_0.9"`` -> ``"per_bw_0.9"``,
    ``"db_bw(10)"`` / ``"db bw 10.0"`` -> ``"db_bw_10"``.

    Raises:
        InputError: the name is not a known metric, or its parameter is out of
            range (``per_bw`` needs 0 < p < 1, ``db_bw`` needs cut > 0 dB).
    """
    if not isinstance(name, str):
        raise InputError(f"metric name must be a string, got {type(name).__name__}")
    text = name.strip().lower()
    fixed = re.sub(r"[\s_-]+", "_", text)
    if fixed in METRICS:
        return fixed

    match = _PARAMETRIC_RE.fullmatch(text)
    if match is None:
        raise InputError(f"unknown spectral metric {name!r}; valid: {_valid_names()}")
    family = match.group(1) + "_bw"
    raw = match.group("paren") if match.group("paren") is not None else match.group("suffix")
    try:
        value = float(raw)
    except ValueError:
        raise InputError(
            f"unknown spectral metric {name!r}: {family} needs a number, got {raw!r}; "
            f"valid: {_valid_names()}"
        ) from None
    if family == "per_bw" and not 0.0 < value < 1.0:
        raise InputError(f"metric {name!r}: per_bw takes an energy fraction p in (0, 1), got {raw}")
    if family == "db_bw" and not (value > 0.0 and math.isfinite(value)):
        raise InputError(f"metric {name!r}: db_bw takes a finite cut > 0 dB, got {raw}")
    return f"{family}_{_format_number(value)}"


def _parameter(canonical: str) -> float:
    """The number in a canonical ``per_bw_<p>`` / ``db_bw_<cut>`` name."""
    return float(canonical.rsplit("_", 1)[1])


# --------------------------------------------------------------------------- #
# Building blocks
# --------------------------------------------------------------------------- #
def full_grid(half: Tensor, h: int, w: int) -> Tensor:
    """The unshifted full ``(..., H, W)`` grid of an ``(..., H, W//2 + 1)`` half of a
    Hermitian-symmetric array (such as the power of a real image's ``rfft2``):
    column ``j > W//2`` is the mirror of row ``-i mod H``, column ``W - j``."""
    rows = torch.arange(h, device=half.device)
    cols = torch.arange(w, device=half.device)
    stored = cols <= w // 2
    src_col = torch.where(stored, cols, w - cols)  # (W,)
    src_row = torch.where(stored[None, :], rows[:, None], (-rows[:, None]) % h)  # (H, W)
    return half[..., src_row, src_col.expand(h, w)]


def psd(a: Tensor, dtype: torch.dtype = torch.float64, *, nodc: bool = False) -> Tensor:
    """Power spectral density over the last two dimensions, in ``dtype``.

    ``fftshift(|fft2(a, norm="forward")|**2)``: zero frequency at index
    ``(H // 2, W // 2)``; by Parseval the values sum to ``mean(a**2)`` per 2-D
    slice (units: squared intensity).

    Computed from the real-input FFT (``rfft2``, about 3x cheaper than ``fft2``
    on the CPU, docs/design.md §7) as ``re**2 + im**2`` (no ``abs``/``sqrt``); the
    missing half follows from Hermitian symmetry (:func:`full_grid`).

    ``nodc=True``: the PSD of ``a - mean(a)`` (mean over the last three dims,
    (C, H, W)).  Only the DC bin changes: it becomes ``X_c[0, 0] - m`` with
    ``m = mean_c X_c[0, 0]``, formed in float64 and rounded to ``dtype``; the
    rest of the same FFT is kept (an exact zero DC where a literal float32
    subtraction would leave rounding noise).

    Args:
        a: real tensor ``(..., H, W)`` (``(..., C, H, W)`` with ``nodc``).
        dtype: float64 (the reference) or float32.

    Returns:
        ``dtype`` tensor ``(..., H, W)``, non-negative.
    """
    if a.is_complex():
        raise InputError("psd needs a real image, got a complex tensor")
    a = a.to(dtype)
    h, w = a.shape[-2], a.shape[-1]
    half = torch.fft.rfft2(a, norm="forward")  # (..., H, W//2 + 1)
    power = half.real.square() + half.imag.square()
    if nodc:
        dc = half[..., 0, 0]  # (..., C)
        re = dc.real.to(torch.float64)
        centred = (re - re.mean(dim=-1, keepdim=True)).to(dtype)
        power = power.clone()
        power[..., 0, 0] = centred.square() + dc.imag.square()
    return torch.fft.fftshift(full_grid(power, h, w), dim=(-2, -1))


def db(a: Tensor) -> Tensor:
    """Decibels: ``10 * log10(max(a, DB_FLOOR))`` with ``DB_FLOOR = 1e-30``.

    docs/design.md §4 notes the paper used ``10 * ln``; rankings are identical.
    Shape-preserving, in ``a``'s (floating) dtype.
    """
    return 10.0 * torch.log10(a.clamp_min(DB_FLOOR))


def _frequencies(n: int) -> list[float]:
    """Frequency (cycles/pixel) of each fftshifted index ``0..n-1`` (see module doc)."""
    if n % 2 == 0:
        return [i / n - 1 / 2 for i in range(n)]  # the design's form, kept bit-exact
    return [(i - n // 2) / n for i in range(n)]


def _radius2(h: int, w: int) -> Tensor:
    """``fx**2 + fy**2`` on the (H, W) fftshifted grid, float64, CPU."""
    fy = torch.tensor(_frequencies(h), dtype=torch.float64)[:, None]
    fx = torch.tensor(_frequencies(w), dtype=torch.float64)[None, :]
    return fx * fx + fy * fy  # separate multiply and add: no fused rounding


def circle_mask(
    h: int, w: int, diameter: float, device: torch.device | str | None = None
) -> Tensor:
    """Disc of diameter ratio ``diameter`` around the zero frequency.

    ``r2 < (diameter / 2) ** 2`` in float64 on the fftshifted grid (module doc).

    Returns:
        bool tensor ``(H, W)`` on ``device`` (CPU by default).
    """
    return (_radius2(h, w) < (diameter / 2) ** 2).to(device)


def strip_mask(
    h: int,
    w: int,
    inner: float = _STRIP_INNER,
    outer: float = _STRIP_OUTER,
    device: torch.device | str | None = None,
) -> Tensor:
    """Annulus ``(r2 < (outer/2)**2) & ~(r2 < (inner/2)**2)`` (docs/design.md §4).

    Diameter ratios default to 0.1 (inner) and 0.2 (outer); float64 arithmetic
    exactly in the design's form, because grid points on the boundary (e.g.
    ``fx = 0.1`` when ``W = 80``) move in or out under float32.

    Returns:
        bool tensor ``(H, W)`` on ``device`` (CPU by default).
    """
    r2 = _radius2(h, w)
    return ((r2 < (outer / 2) ** 2) & ~(r2 < (inner / 2) ** 2)).to(device)


def density_histogram(values: Tensor, bins: int = HIST_BINS) -> Tensor:
    """Row-wise ``numpy.histogram(v, bins, density=True)[0]``, replicated exactly.

    Each row is binned over its own ``[min, max]`` (widened to
    ``[min - 0.5, max + 0.5]`` when ``min == max``, as numpy does). Edges are
    numpy's ``linspace``: ``edge[i] = i * step + min`` with
    ``step = (max - min) / bins`` and the last edge exactly ``max``. A value's
    bin is ``floor((v - min) / (max - min) * bins)``, then corrected by one
    where rounding put it on the wrong side of an edge; the last bin is closed
    on the right. Heights are ``count / width / n`` (``width`` per bin from the
    edges).

    Args:
        values: ``(..., N)`` real, finite, ``N >= 1``.
        bins: number of equal-width bins.

    Returns:
        float64 ``(..., bins)``.
    """
    v = values.to(torch.float64)
    lead, n = v.shape[:-1], v.shape[-1]
    v = v.reshape(-1, n)  # (R, N)
    first = v.amin(dim=1, keepdim=True)
    last = v.amax(dim=1, keepdim=True)
    flat = first == last
    first = torch.where(flat, first - 0.5, first)
    last = torch.where(flat, last + 0.5, last)

    span = last - first  # (R, 1)
    steps = torch.arange(bins + 1, dtype=torch.float64, device=v.device)
    edges = steps * (span / bins) + first  # (R, bins + 1)
    edges[:, -1] = last[:, 0]

    index = ((v - first) / span * bins).to(torch.int64)  # truncation == floor, v >= first
    index = index.clamp_max(bins - 1)  # v == last lands in the last bin
    index = index - (v < edges.gather(1, index)).to(torch.int64)
    index = index + ((v >= edges.gather(1, index + 1)) & (index != bins - 1)).to(torch.int64)

    counts = torch.zeros(v.shape[0], bins, dtype=torch.float64, device=v.device)
    counts.scatter_add_(1, index, torch.ones_like(v))
    widths = edges.diff(dim=1)
    heights = counts / widths / n
    return heights.reshape(*lead, bins)


def hist_emd(a_vals: Tensor, b_vals: Tensor, bins: int = HIST_BINS) -> Tensor:
    """Wasserstein-1 distance between the bin heights of two density histograms.

    Each set of values is histogrammed by :func:`density_histogram` (100 bins
    over its own range); the ``bins`` heights of each are then treated as
    equally weighted 1-D samples, whose W1 distance is
    ``mean(|sort(h_a) - sort(h_b)|)`` (equal to
    ``scipy.stats.wasserstein_distance(h_a, h_b)``).

    Args:
        a_vals: ``(..., N)``; b_vals: ``(..., M)``; the leading dimensions
            broadcast (e.g. ``(N,)`` against ``(B, M)`` gives ``(B,)``).

    Returns:
        float64 tensor of the broadcast leading shape; units: 1 / value units.
    """
    h_a = density_histogram(a_vals, bins).sort(dim=-1).values
    h_b = density_histogram(b_vals, bins).sort(dim=-1).values
    return (h_a - h_b).abs().mean(dim=-1)


def _circle_thresholds() -> list[float]:
    """``(d_k / 2) ** 2`` for the 99 per_bw circles, d = linspace(0, sqrt(2), 100)[1:].

    The diameters are numpy.linspace's values: ``k * (sqrt(2) / 99)``, and the
    last one exactly ``sqrt(2)``.
    """
    stop = math.sqrt(2)
    step = stop / _N_CIRCLES
    diameters = [k * step for k in range(1, _N_CIRCLES)] + [stop]
    return [(d / 2) ** 2 for d in diameters]


def per_bandwidth(power: Tensor, p: float) -> Tensor:
    """Fractional energy bandwidth (``per_bw_<p>``), docs/design.md §4.

    ``E_k`` (k = 1..99) is the energy of ``power`` strictly inside circle k
    (``r2 < (d_k / 2)**2``, d = linspace(0, sqrt(2), 100)[1:]), ``E_0 = 0``,
    and ``total`` is the sum over all pixels. With ``k`` the first circle
    where ``E_k >= p * total`` the score is::

        ((k - 1) + (p * total - E_{k-1}) / (E_k - E_{k-1})) / 99

    in [0, 1]. The last circle holds every pixel (the corner's r2 = 0.5 is
    below ``(sqrt(2)/2)**2``, which rounds to 0.5000000000000001), so for
    p < 1 some circle is reached; should rounding of the sums ever prevent
    it, the score is 1.0. An all-zero spectrum (no energy) scores 0.0.

    Args:
        power: ``(B, H, W)`` a (channel-averaged) PSD, fftshifted.
        p: energy fraction in (0, 1).

    Returns:
        float64 ``(B,)``.
    """
    power = power.to(torch.float64)
    b, h, w = power.shape
    thresholds = torch.tensor(_circle_thresholds(), dtype=torch.float64)
    # ring[pixel] = index of the first circle (0-based) that holds it, or 99:
    # the first threshold strictly greater than r2.
    ring = torch.searchsorted(thresholds, _radius2(h, w).flatten(), right=True).to(power.device)
    ring_energy = torch.zeros(b, _N_CIRCLES + 1, dtype=torch.float64, device=power.device)
    ring_energy.scatter_add_(1, ring.expand(b, -1), power.reshape(b, -1))
    enclosed = ring_energy[:, :_N_CIRCLES].cumsum(dim=1)  # (B, 99): E_1 .. E_99
    total = power.sum(dim=(1, 2))
    target = p * total

    reached = enclosed >= target[:, None]
    first = reached.to(torch.int8).argmax(dim=1)  # 0-based k - 1
    e_k = enclosed.gather(1, first[:, None])[:, 0]
    e_prev = torch.where(
        first > 0, enclosed.gather(1, (first - 1).clamp_min(0)[:, None])[:, 0], 0.0
    )
    fractional = first.to(torch.float64) + (target - e_prev) / (e_k - e_prev)
    score = fractional / _N_CIRCLES
    score = torch.where(reached.any(dim=1), score, 1.0)
    return torch.where(total > 0, score, 0.0)


def db_bandwidth(power: Tensor, cut: float) -> Tensor:
    """Fraction of pixels within ``cut`` dB of the peak (``db_bw_<cut>``), docs/design.md §4.

    ``mean(db(power) > max(db(power)) - cut)`` over (H, W).

    Args:
        power: ``(B, H, W)`` a (channel-averaged) PSD.
        cut: dB below the peak, > 0.

    Returns:
        float64 ``(B,)`` in (0, 1].
    """
    level = db(power)
    peak = level.amax(dim=(1, 2), keepdim=True)
    return (level > peak - cut).to(torch.float64).mean(dim=(1, 2))


# --------------------------------------------------------------------------- #
# Scores
# --------------------------------------------------------------------------- #
def validate_inputs(corrupted: Tensor, outputs: Tensor) -> None:
    """Check a (C, H, W) corrupted image and (B, C, H, W) outputs; InputError names the problem."""
    for label, t, ndim, shape in (
        ("corrupted", corrupted, 3, "(C, H, W)"),
        ("outputs", outputs, 4, "(B, C, H, W)"),
    ):
        if not isinstance(t, Tensor):
            raise InputError(f"{label} must be a torch.Tensor, got {type(t).__name__}")
        if t.is_complex() or t.dtype == torch.bool:
            raise InputError(f"{label} must be a real-valued tensor, got {t.dtype}")
        if t.dim() != ndim:
            raise InputError(f"{label} must be {shape}, got shape {tuple(t.shape)}")
    if tuple(outputs.shape[1:]) != tuple(corrupted.shape):
        raise InputError(
            f"outputs (B, C, H, W) = {tuple(outputs.shape)} do not match "
            f"corrupted (C, H, W) = {tuple(corrupted.shape)}"
        )
    if min(corrupted.shape) < 1:
        raise InputError(f"corrupted image is empty: shape {tuple(corrupted.shape)}")
    if not bool(torch.isfinite(corrupted).all()):
        raise InputError("corrupted image has non-finite values (NaN or inf)")
    if outputs.numel() and not bool(torch.isfinite(outputs).all()):
        raise InputError("outputs have non-finite values (NaN or inf)")


def checked_strip_mask(h: int, w: int) -> Tensor:
    """:func:`strip_mask` of an (H, W) image; InputError when the annulus holds no pixel."""
    mask = strip_mask(h, w)
    if not bool(mask.any()):
        raise InputError(
            f"image {w}x{h} px is too small for the strip metrics: "
            "the 0.1-0.2 frequency annulus holds no pixel"
        )
    return mask


def _similarity(base: str, py: Tensor, po: Tensor, strip: Tensor | None) -> Tensor:
    """One similarity metric between the PSD ``py`` (C, H, W) and each of ``po`` (B, C, H, W): (B,)."""
    if base == "psd_db_mse":
        return (db(po) - db(py)).square().mean(dim=(1, 2, 3))
    assert strip is not None
    if base == "psd_db_strip_mse":
        # Boolean indexing of the trailing (H, W) dims: (C, S) and (B, C, S).
        return (db(po[..., strip]) - db(py[..., strip])).square().mean(dim=(1, 2))
    if base == "psd_strip_hist_emd":
        y_vals = py[..., strip].reshape(-1)  # all channels together
        return hist_emd(y_vals, po[..., strip].reshape(po.shape[0], -1))
    raise AssertionError(base)


def spectral_scores_reference(
    corrupted: Tensor,
    outputs: Tensor,
    metrics: Sequence[str],
    *,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Score candidate outputs against the corrupted image (lower is better).

    Metrics (any spelling :func:`canonical_metric` accepts), docs/design.md §4:

    * ``psd_db_strip_mse``: mean over the strip pixels of all channels of
      ``(db(psd(y)) - db(psd(o)))**2`` (dB²).
    * ``psd_db_mse``: the same over all pixels.
    * ``psd_strip_hist_emd``: strip values of ``psd(y)`` (all channels
      together, linear power) and of ``psd(o)`` -> 100-bin density histograms
      (binned in float64) -> :func:`hist_emd` of the two sets of bin heights.
    * ``nodc_<any of the above>``: each image minus its mean over (C, H, W)
      first (:func:`psd` with ``nodc``).
    * ``per_bw_<p>``: :func:`per_bandwidth` of the output's channel-averaged
      PSD (image independent), in [0, 1].
    * ``db_bw_<cut>``: :func:`db_bandwidth` of the output's channel-averaged
      PSD (image independent), in (0, 1].
    * ``random``: uniform in [0, 1) from ``generator`` (a CPU
      ``torch.Generator``; a fresh one seeded with 0 if None), one draw per
      candidate; the control.

    Args:
        corrupted: ``(C, H, W)`` the corrupted image ``y``; its spectra are
            computed once and reused for every output.
        outputs: ``(B, C, H, W)`` candidate outputs ``o`` of the same (C, H, W).
        metrics: names; one column each, in order.
        dtype: precision of the FFTs and spectra: float64 (the reference of
            every fast path) or float32 (the baseline of the fused kernels).
        generator: random source for ``random``.

    Returns:
        float64 ``(B, len(metrics))`` on ``outputs``' device.

    Raises:
        InputError: wrong dimensions or mismatched shapes, non-finite values,
            unknown metric, an image too small to hold the strip, or a dtype
            other than float32 / float64.
    """
    if dtype not in (torch.float32, torch.float64):
        raise InputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    names = [canonical_metric(m) for m in metrics]
    validate_inputs(corrupted, outputs)
    device = outputs.device
    batch = outputs.shape[0]
    if batch == 0 or not names:
        return torch.empty(batch, len(names), dtype=torch.float64, device=device)
    y = corrupted.to(device=device)
    h, w = y.shape[-2:]
    cache: dict[str, Tensor] = {}

    def spectrum(key: str) -> Tensor:  # "psd_y", "nodc_psd_o", "strip"
        if key not in cache:
            if key == "strip":
                cache[key] = checked_strip_mask(h, w).to(device)
            else:
                cache[key] = psd(y if key.endswith("y") else outputs, dtype, nodc=key.startswith("nodc_"))
        return cache[key]

    columns = [_column(name, batch, spectrum, generator).to(device=device, dtype=torch.float64) for name in names]
    return torch.stack(columns, dim=1)


def _column(name: str, batch: int, spectrum: Callable[[str], Tensor],
            generator: torch.Generator | None) -> Tensor:
    """One metric's scores (B,) of :func:`spectral_scores_reference`; ``spectrum(key)``
    gives the cached spectra (``"psd_y"``, ``"nodc_psd_o"``, ..., ``"strip"``)."""
    if name == "random":
        gen = generator
        if gen is None:
            gen = torch.Generator()
            gen.manual_seed(0)
        return torch.rand(batch, generator=gen, dtype=torch.float64, device=gen.device)
    if name.startswith("per_bw_"):
        return per_bandwidth(spectrum("psd_o").mean(dim=1), _parameter(name))
    if name.startswith("db_bw_"):
        return db_bandwidth(spectrum("psd_o").mean(dim=1), _parameter(name))
    prefix = "nodc_" if name.startswith("nodc_") else ""
    base = name.removeprefix("nodc_")
    strip = spectrum("strip") if base != "psd_db_mse" else None
    return _similarity(base, spectrum(prefix + "psd_y"), spectrum(prefix + "psd_o"), strip)
