"""Fused spectral scoring: the Triton kernels and their launcher
(docs/design.md §4 "Spectral metrics", §7 (a)).

The reference of every metric is
:func:`isnas_fast.kernels.spectral_reference.spectral_scores_reference`
(float64; its ``dtype=torch.float32`` form is the plain PyTorch baseline the
kernels are held to).

Fused path, for a corrupted image ``y`` (C, H, W) and B outputs ``o``:

1. ``rfft2`` (``norm="forward"``; float32, or float64 rounded to float32
   with ``fft_dtype=torch.float64``) of ``y`` once and of all outputs in one
   batched call (cuFFT / pocketFFT; an FFT is not worth rewriting).
2. ``_spectral_stats_kernel``, one pass over the stored half spectra
   (``H x (W//2 + 1)`` complex per channel): ``P = re*re + im*im`` (no abs)
   -> dB -> strip membership from the indices -> squared dB difference ->
   per-(candidate, channel) partial sums for ``psd_db_mse`` and
   ``psd_db_strip_mse``, and the min / max of the strip values for the
   histogram.  The half spectrum is exact: a stored bin (i, j) with
   ``0 < j`` and ``2j < W`` also stands for its Hermitian mirror
   ``(-i mod H, W - j)``, whose power is identical; it is weighted 2 in the
   all-pixel sum and ``in_strip(own) + in_strip(mirror)`` in the strip sum
   (membership is tested at both positions, because float64 rounding makes
   the strip mask not exactly point-symmetric).
3. Only for ``psd_strip_hist_emd``: ``_strip_hist_kernel`` (second pass over
   the output spectra: 100-bin counts per candidate with numpy's edges) and
   ``_hist_emd_kernel`` (per candidate: density heights, their ranks, mean
   absolute difference to the corrupted image's sorted heights).

Strip membership.  ``spectral_reference.strip_mask`` is defined in float64
(``i / n - 1/2`` for even n, ``r2 = fx*fx + fy*fy``, strict ``<`` against
``(d/2)**2``), and boundary pixels such as ``fx = 0.1`` at ``W = 80`` flip
under float32 arithmetic.  The kernel therefore does no frequency arithmetic
at all: the host derives, from ``strip_mask`` itself, a tiny int32 table of
at most two half-open column intervals ``[lo, hi)`` per fftshifted row
(``(H, 4)`` entries; along a row ``r2`` is monotone on each side of the zero
frequency, so the annulus is at most two runs -- checked when the table is
built).  Membership is then exact for every size by construction.  The
fftshift is not materialised either: a stored bin (i, j) sits at shifted
position ``((i + H//2) mod H, (j + W//2) mod W)``.

``nodc`` variants.  Subtracting the mean over (C, H, W) changes only the DC
bin of each channel: it becomes ``X_c[0, 0] - m`` with
``m = mean_c X_c[0, 0]``; every other bin is unchanged.  The DC bin
(r2 = 0) is never in the strip, so ``nodc_psd_db_strip_mse`` and
``nodc_psd_strip_hist_emd`` equal their plain versions, and
``nodc_psd_db_mse`` is the plain sum with the DC term replaced (computed in
the same pass from ``X_c[0, 0] - m``, evaluated on the host in float64).

Histogram bins.  ``density_histogram`` (the reference) bins in float64 with
edges ``edge[k] = k * (span / 100) + min`` (last edge = max).  The kernel
compares float32 values ``v`` against those edges rounded *up* to float32:
for a float32 ``v`` and a real ``e``, ``v >= e`` iff ``v >= ceil32(e)``; so
after a float32 estimate ``floor((v - min) * 100 / span)`` and one +-1
correction (the estimate is off by < 1e-4 bins) each value lands in exactly
the bin the float64 reference gives the same float32 value.

Precision.  Everything in the kernels is float32 (inputs of any real dtype
are upcast); the partial sums are combined in float64 on the host.  Power is
computed without FMA contraction (``enable_fp_fusion=False``) so it is
bit-identical to PyTorch's ``re.square() + im.square()``.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from . import spectral_reference as _ref

from ._triton import jit as _jit, tl, triton  # stand-ins where Triton is absent


__all__ = [
    "FUSED_METRICS",
    "triton_spectral_scores",
    "strip_intervals",
]

#: Metrics computed by the kernels; every other name goes to the reference.
FUSED_METRICS = tuple(m for m in _ref.METRICS if m != "random")
_HIST_PAD = 128  # bins padded to a power of two (tl.histogram, tl.arange)
_STATS_COLS = 5  # sum_all, sum_strip, min_strip, max_strip, nodc DC delta
_BLOCK = 1024  # half-spectrum bins per loop step


# --------------------------------------------------------------------------- #
# Host-side tables
# --------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=64)
def _strip_intervals_np(h: int, w: int) -> np.ndarray:
    mask = _ref.strip_mask(h, w).numpy()
    table = np.zeros((h, 4), dtype=np.int32)  # empty intervals [0, 0)
    for row in range(h):
        padded = np.concatenate(([False], mask[row], [False])).astype(np.int8)
        starts = np.flatnonzero(np.diff(padded) == 1)
        stops = np.flatnonzero(np.diff(padded) == -1)
        # r2 is monotone in |fx| on each side of the zero frequency, so an annulus
        # row is at most two runs; anything else would be a bug in that reasoning.
        if len(starts) > 2:
            raise AssertionError(f"strip row {row} of {w}x{h} has {len(starts)} runs")
        for k, (a, b) in enumerate(zip(starts, stops)):
            table[row, 2 * k], table[row, 2 * k + 1] = a, b
    # The DC bin (r2 = 0) is never in the strip: the nodc shortcut relies on it.
    assert not mask[h // 2, w // 2]
    return table


def strip_intervals(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """Per fftshifted row, the strip as two half-open column intervals.

    ``table[I] = (lo0, hi0, lo1, hi1)``: pixel (I, J) of the fftshifted grid is
    in :func:`spectral_reference.strip_mask` iff ``lo0 <= J < hi0`` or
    ``lo1 <= J < hi1``.  Built from ``strip_mask`` (float64), so exact.

    Returns:
        int32 ``(H, 4)`` on ``device``.
    """
    return torch.from_numpy(_strip_intervals_np(h, w)).to(device)


def _ceil_float32(x: Tensor) -> Tensor:
    """Smallest float32 >= each float64 value (so ``v32 >= e`` iff ``v32 >= ceil32(e)``)."""
    down = x.to(torch.float32)
    too_low = down.to(torch.float64) < x
    return torch.where(too_low, torch.nextafter(down, torch.full_like(down, float("inf"))), down)


# --------------------------------------------------------------------------- #
# Triton kernels
# --------------------------------------------------------------------------- #
@_jit
def _db32(p):
    # 10 * log10(max(p, DB_FLOOR)) in float32 = log2(.) * 10 * log10(2).
    return tl.log2(tl.maximum(p, 1e-30)) * 3.0102999566398120


@_jit
def _in_strip(table_ptr, row, col, valid):
    """Membership of fftshifted pixels (row, col) in the strip (interval table)."""
    t = table_ptr + row * 4
    lo0 = tl.load(t + 0, mask=valid, other=0)
    hi0 = tl.load(t + 1, mask=valid, other=0)
    lo1 = tl.load(t + 2, mask=valid, other=0)
    hi1 = tl.load(t + 3, mask=valid, other=0)
    return ((col >= lo0) & (col < hi0)) | ((col >= lo1) & (col < hi1))


@_jit
def _half_spectrum_positions(offs, valid, table_ptr, H, W, WR):
    """For flat offsets into a stored (H, WR) half spectrum: the multiplicity of
    each bin in the full spectrum (1 or 2) and its strip weight (0, 1 or 2)."""
    i = offs // WR
    j = offs - i * WR
    has_mirror = (j >= 1) & (2 * j < W)
    own = _in_strip(table_ptr, (i + H // 2) % H, (j + W // 2) % W, valid)
    mirror = _in_strip(table_ptr, ((H - i) % H + H // 2) % H, (W - j + W // 2) % W, valid & has_mirror)
    strip_w = tl.where(valid & own, 1.0, 0.0) + tl.where(valid & has_mirror & mirror, 1.0, 0.0)
    mult = tl.where(valid, tl.where(has_mirror, 2.0, 1.0), 0.0)
    return mult, strip_w, own, mirror, has_mirror


@_jit
def _spectral_stats_kernel(
    o_ptr,  # float32 (B*C, H, WR, 2): rfft2 of the outputs, re/im interleaved
    y_ptr,  # float32 (C, H, WR, 2): rfft2 of the corrupted image
    table_ptr,  # int32 (H, 4): strip intervals per fftshifted row
    dc_o_ptr,  # float32 (B*C,): re X[0, 0] - mean over channels (nodc DC), outputs
    dc_y_ptr,  # float32 (C,): the same for the corrupted image
    out_ptr,  # float32 (B*C, SPLIT, 5): partial results, see _STATS_COLS
    C, H, W, WR, CHUNK, SPLIT,
    NEED_MSE: tl.constexpr,
    NEED_RANGE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    sl = tl.program_id(0)  # slice b * C + c
    part = tl.program_id(1)
    c = sl % C
    n = H * WR
    o_base = o_ptr + sl.to(tl.int64) * n * 2
    y_base = y_ptr + c.to(tl.int64) * n * 2
    reim = tl.arange(0, 2)

    acc_all = tl.zeros([BLOCK], dtype=tl.float32)
    acc_strip = tl.zeros([BLOCK], dtype=tl.float32)
    lo = tl.full([BLOCK], float("inf"), dtype=tl.float32)
    hi = tl.full([BLOCK], float("-inf"), dtype=tl.float32)
    start = part * CHUNK
    stop = tl.minimum(start + CHUNK, n)
    for s in range(start, stop, BLOCK):
        offs = s + tl.arange(0, BLOCK)
        valid = offs < stop
        mult, strip_w, own, mirror, has_mirror = _half_spectrum_positions(offs, valid, table_ptr, H, W, WR)
        pair = offs[:, None] * 2 + reim[None, :]  # contiguous (re, im) pairs
        vo = tl.load(o_base + pair, mask=valid[:, None], other=0.0)
        po = tl.sum(vo * vo, axis=1)  # re*re + im*im
        if NEED_MSE:
            vy = tl.load(y_base + pair, mask=valid[:, None], other=0.0)
            py = tl.sum(vy * vy, axis=1)
            d = _db32(po) - _db32(py)
            d2 = d * d
            acc_all += mult * d2
            acc_strip += strip_w * d2
        if NEED_RANGE:
            inside = strip_w > 0.0
            lo = tl.minimum(lo, tl.where(inside, po, float("inf")))
            hi = tl.maximum(hi, tl.where(inside, po, float("-inf")))

    dc_delta = 0.0
    if NEED_MSE:
        # nodc changes only the DC bin (i = j = 0, multiplicity 1, never in the
        # strip): the nodc sum is the plain one with the DC term
        # (db(Po) - db(Py))**2 replaced; part 0 of each slice reports the change.
        o_re = tl.load(o_base)
        o_im = tl.load(o_base + 1)
        y_re = tl.load(y_base)
        y_im = tl.load(y_base + 1)
        o_re_n = tl.load(dc_o_ptr + sl)
        y_re_n = tl.load(dc_y_ptr + c)
        plain = _db32(o_re * o_re + o_im * o_im) - _db32(y_re * y_re + y_im * y_im)
        nodc = _db32(o_re_n * o_re_n + o_im * o_im) - _db32(y_re_n * y_re_n + y_im * y_im)
        dc_delta = tl.where(part == 0, nodc * nodc - plain * plain, 0.0)
    row = out_ptr + (sl.to(tl.int64) * SPLIT + part) * 5
    tl.store(row + 0, tl.sum(acc_all, axis=0))
    tl.store(row + 1, tl.sum(acc_strip, axis=0))
    tl.store(row + 2, tl.min(lo, axis=0))
    tl.store(row + 3, tl.max(hi, axis=0))
    tl.store(row + 4, dc_delta)


@_jit
def _strip_hist_kernel(
    o_ptr,  # float32 (B*C, H, WR, 2)
    table_ptr,  # int32 (H, 4)
    first_ptr,  # float32 (B,): histogram range start (for the estimate)
    scale_ptr,  # float32 (B,): BINS / span (for the estimate)
    edges_ptr,  # float32 (B, NB): float64 edges rounded up to float32
    counts_ptr,  # int32 (B*C, SPLIT, NB): partial bin counts
    C, H, W, WR, CHUNK, SPLIT,
    BINS: tl.constexpr,
    NB: tl.constexpr,
    BLOCK: tl.constexpr,
):
    sl = tl.program_id(0)
    part = tl.program_id(1)
    b = sl // C
    n = H * WR
    o_base = o_ptr + sl.to(tl.int64) * n * 2
    edges = edges_ptr + b * NB
    first = tl.load(first_ptr + b)
    scale = tl.load(scale_ptr + b)
    reim = tl.arange(0, 2)
    hist = tl.zeros([NB], dtype=tl.int32)
    start = part * CHUNK
    stop = tl.minimum(start + CHUNK, n)
    for s in range(start, stop, BLOCK):
        offs = s + tl.arange(0, BLOCK)
        valid = offs < stop
        mult, strip_w, own, mirror, has_mirror = _half_spectrum_positions(offs, valid, table_ptr, H, W, WR)
        pair = offs[:, None] * 2 + reim[None, :]
        vo = tl.load(o_base + pair, mask=valid[:, None], other=0.0)
        po = tl.sum(vo * vo, axis=1)
        # float32 estimate, clamped in float (no int overflow), then the exact
        # float64-edge decision: bin = max{k <= BINS-1 : v >= edge[k]}.
        est = tl.minimum(tl.maximum((po - first) * scale, 0.0), BINS - 1.0)
        k = est.to(tl.int32)
        k = k - (po < tl.load(edges + k)).to(tl.int32)
        k = tl.maximum(k, 0)
        k = k + ((po >= tl.load(edges + k + 1)) & (k != BINS - 1)).to(tl.int32)
        hist += tl.histogram(k, NB, mask=valid & own)
        hist += tl.histogram(k, NB, mask=valid & has_mirror & mirror)
    bins = tl.arange(0, NB)
    tl.store(counts_ptr + (sl.to(tl.int64) * SPLIT + part) * NB + bins, hist)


@_jit
def _hist_emd_kernel(
    counts_ptr,  # int32 (B, ROWS, NB): partial counts, ROWS = C * SPLIT
    widths_ptr,  # float32 (B, NB): bin widths (from float64 edges)
    y_sorted_ptr,  # float32 (NB,): sorted heights of the corrupted image (first BINS used)
    out_ptr,  # float32 (B,)
    ROWS, n_values,
    BINS: tl.constexpr,
    NB: tl.constexpr,
):
    b = tl.program_id(0)
    bins = tl.arange(0, NB)
    counts = tl.zeros([NB], dtype=tl.int32)
    base = counts_ptr + b.to(tl.int64) * ROWS * NB
    for r in range(0, ROWS):
        counts += tl.load(base + r * NB + bins)
    real = bins < BINS
    width = tl.load(widths_ptr + b * NB + bins, mask=real, other=1.0)
    heights = counts.to(tl.float32) / width / n_values  # numpy density=True
    # W1 between equally weighted samples = mean |sort(h) - sort(h_y)|.  Rather
    # than sorting (a bitonic network), pair each height with the y height of
    # its rank: rank_i = #{j : h_j < h_i, or h_j == h_i and j < i} (a 128 x 128
    # comparison; ties broken by index give a permutation).
    h_i = heights[:, None]
    h_j = heights[None, :]
    before = (h_j < h_i) | ((h_j == h_i) & (bins[None, :] < bins[:, None]))
    before = before & (bins[None, :] < BINS)
    rank = tl.sum(before.to(tl.int32), axis=1)
    y_sorted = tl.load(y_sorted_ptr + rank, mask=real, other=0.0)
    dist = tl.where(real, tl.abs(heights - y_sorted), 0.0)
    tl.store(out_ptr + b, tl.sum(dist, axis=0) / BINS)


# --------------------------------------------------------------------------- #
# Launchers
# --------------------------------------------------------------------------- #
def _split(slices: int, n: int, block: int, device: torch.device) -> int:
    """Programs per slice: enough programs to fill a GPU, one in the interpreter."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(_cdiv(4 * sms, max(slices, 1)), _cdiv(n, block)))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _nodc_dc(half: Tensor) -> Tensor:
    """``re X_c[0, 0] - mean_c re X_c[0, 0]`` per slice, float64 -> float32."""
    dc = half[..., 0, 0].real.to(torch.float64)  # (..., C)
    return (dc - dc.mean(dim=-1, keepdim=True)).to(torch.float32).contiguous()


def triton_spectral_scores(
    corrupted: Tensor,
    outputs: Tensor,
    metrics: Sequence[str],
    *,
    generator: Optional[torch.Generator] = None,
    fft_dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Spectral scores with the fused kernels (same contract as the reference).

    Args:
        corrupted: ``(C, H, W)`` the corrupted image ``y`` (any real dtype;
            computed in float32); its FFT is computed once per call.
        outputs: ``(B, C, H, W)`` candidate outputs, on a CUDA device (or the
            CPU under ``TRITON_INTERPRET=1``).
        metrics: any names :func:`~isnas_fast.kernels.spectral_reference.canonical_metric`
            accepts; per_bw, db_bw and random columns come from the float64
            reference (one call, in order, so ``generator`` draws as there).
        generator: random source for ``random``.
        fft_dtype: precision of the ``rfft2`` (the kernels always read float32
            spectra).  float32 (default) agrees with the float64 reference to
            the float32 FFT's own accuracy: ~1e-7 .. 1e-6 relative, up to
            ~2e-5 for very smooth outputs whose high frequencies carry
            ~1e-12 of the power.  float64 FFTs (then rounded to float32) bring
            every metric to ~1e-6 of the reference at about twice the FFT
            cost.

    Returns:
        float64 ``(B, len(metrics))`` on ``outputs``' device.
    """
    if fft_dtype not in (torch.float32, torch.float64):
        raise InputError(f"fft_dtype must be torch.float32 or torch.float64, got {fft_dtype}")
    if triton is None:
        raise InputError("triton_spectral_scores needs Triton, which is not installed")
    names = [_ref.canonical_metric(m) for m in metrics]
    _ref.validate_inputs(corrupted, outputs)
    device = outputs.device
    batch = outputs.shape[0]
    result = torch.full((batch, len(names)), float("nan"), dtype=torch.float64, device=device)
    if batch == 0 or not names:
        return result

    others = [k for k, n in enumerate(names) if n not in FUSED_METRICS]
    if others:
        rest = _ref.spectral_scores_reference(corrupted, outputs, [names[k] for k in others], generator=generator)
        result[:, others] = rest.to(device)
    fused = [k for k, n in enumerate(names) if n in FUSED_METRICS]
    if not fused:
        return result

    bases = {names[k].removeprefix("nodc_") for k in fused}
    need_mse = bool(bases & {"psd_db_mse", "psd_db_strip_mse"})
    need_hist = "psd_strip_hist_emd" in bases
    c, h, w = corrupted.shape
    strip = _ref.checked_strip_mask(h, w) if bases & {"psd_db_strip_mse", "psd_strip_hist_emd"} else None
    n_strip = int(strip.sum()) if strip is not None else 0
    table = strip_intervals(h, w, device)

    y_half = torch.fft.rfft2(corrupted.to(device=device, dtype=fft_dtype), norm="forward")  # once
    o_half = torch.fft.rfft2(outputs.to(fft_dtype), norm="forward")
    dc_y, dc_o = _nodc_dc(y_half), _nodc_dc(o_half)  # from the FFT's own precision
    y_half, o_half = y_half.to(torch.complex64), o_half.to(torch.complex64)  # no-ops for float32
    o_ri = torch.view_as_real(o_half)
    stats, split = _launch_stats(
        o_ri, torch.view_as_real(y_half), table, w, dc_o, dc_y,
        need_mse=need_mse, need_range=need_hist,
    )
    _db_mse_columns(result, names, fused, stats, c * h * w, c * n_strip)
    if need_hist:
        assert strip is not None
        emd = _strip_hist_emd(y_half, o_ri, table, strip, stats, split, w, n_strip)
        for k in fused:
            if names[k].removeprefix("nodc_") == "psd_strip_hist_emd":
                result[:, k] = emd
    return result


def _db_mse_columns(result: Tensor, names: Sequence[str], fused: Sequence[int], stats: Tensor, pixels: int,
                    strip_pixels: int) -> None:
    """Fill ``result``'s ``psd_db_mse`` / ``psd_db_strip_mse`` columns (nodc too) from the
    partial sums of pass 1; ``pixels`` / ``strip_pixels``: C * H * W and C * (strip size)."""
    sum_all = stats[..., 0].sum(dim=1)
    sum_strip = stats[..., 1].sum(dim=1)
    dc_delta = stats[..., 4].sum(dim=1)
    for k in fused:
        name = names[k]
        base = name.removeprefix("nodc_")
        if base == "psd_db_mse":
            total = sum_all + dc_delta if name.startswith("nodc_") else sum_all
            result[:, k] = total / pixels
        elif base == "psd_db_strip_mse":
            result[:, k] = sum_strip / strip_pixels  # nodc: the DC bin is not in the strip


def _strip_hist_emd(y_half: Tensor, o_ri: Tensor, table: Tensor, strip: Tensor, stats: Tensor, split: int,
                    w: int, n_strip: int) -> Tensor:
    """The ``psd_strip_hist_emd`` column (B,): passes 2 and 3 over the outputs' strip values, against
    the corrupted image's histogram (``y_half`` (C, H, WR) complex64, ``stats`` of pass 1)."""
    c, h = y_half.shape[0], y_half.shape[1]
    device = o_ri.device
    # Corrupted image: once, by the reference's own density_histogram, on the
    # very same float32 spectrum the kernels read (gathered to the full grid).
    y_power = y_half.real.square() + y_half.imag.square()
    y_vals = torch.fft.fftshift(_ref.full_grid(y_power, h, w), dim=(-2, -1))[..., strip.to(device)]
    y_heights = _ref.density_histogram(y_vals.reshape(-1), _ref.HIST_BINS).sort().values
    y_sorted = torch.zeros(_HIST_PAD, dtype=torch.float32, device=device)
    y_sorted[: _ref.HIST_BINS] = y_heights.to(torch.float32)
    counts, widths = _launch_strip_counts(
        o_ri, table, w, stats[..., 2].amin(dim=1), stats[..., 3].amax(dim=1), split
    )
    return _launch_emd(counts, widths, y_sorted, c * n_strip)


def _launch_stats(
    o_ri: Tensor, y_ri: Tensor, table: Tensor, w: int, dc_o: Tensor, dc_y: Tensor,
    *, need_mse: bool, need_range: bool,
) -> tuple[Tensor, int]:
    """Pass 1 over ``o_ri`` (B, C, H, WR, 2) float32: float64 (B, C * SPLIT, 5) partials, SPLIT."""
    batch, c, h, wr = o_ri.shape[:4]
    slices, n = batch * c, h * wr
    split = _split(slices, n, _BLOCK, o_ri.device)
    chunk = _cdiv(_cdiv(n, split), _BLOCK) * _BLOCK
    stats = torch.full((slices, split, _STATS_COLS), float("nan"), dtype=torch.float32, device=o_ri.device)
    _spectral_stats_kernel[(slices, split)](
        o_ri.contiguous(), y_ri.contiguous(), table, dc_o.reshape(-1).contiguous(), dc_y.contiguous(), stats,
        c, h, w, wr, chunk, split,
        NEED_MSE=need_mse, NEED_RANGE=need_range, BLOCK=_BLOCK,
        num_warps=8, enable_fp_fusion=False,
    )
    return stats.reshape(batch, c * split, _STATS_COLS).to(torch.float64), split


def _histogram_edges(first: Tensor, last: Tensor, bins: int) -> Tensor:
    """numpy.histogram's edges per row in float64, exactly as ``density_histogram`` builds them."""
    flat = first == last
    first = torch.where(flat, first - 0.5, first)
    last = torch.where(flat, last + 0.5, last)
    steps = torch.arange(bins + 1, dtype=torch.float64, device=first.device)
    edges = steps * ((last - first)[:, None] / bins) + first[:, None]
    edges[:, -1] = last
    return edges


def _launch_strip_counts(
    o_ri: Tensor, table: Tensor, w: int, strip_min: Tensor, strip_max: Tensor, split: int
) -> tuple[Tensor, Tensor]:
    """Pass 2: per-candidate strip histogram counts over [strip_min, strip_max].

    Returns int32 partial counts (B, C * SPLIT, NB) (bins >= 100 stay 0) and
    float32 bin widths (B, NB) (padding 1).
    """
    batch, c, h, wr = o_ri.shape[:4]
    device = o_ri.device
    bins, nb = _ref.HIST_BINS, _HIST_PAD
    n = h * wr
    chunk = _cdiv(_cdiv(n, split), _BLOCK) * _BLOCK
    edges = _histogram_edges(strip_min.to(torch.float64), strip_max.to(torch.float64), bins)
    first, span = edges[:, 0], edges[:, -1] - edges[:, 0]
    edges_up = torch.full((batch, nb), float("inf"), dtype=torch.float32, device=device)
    edges_up[:, : bins + 1] = _ceil_float32(edges)
    widths = torch.ones(batch, nb, dtype=torch.float32, device=device)
    widths[:, :bins] = edges.diff(dim=1).to(torch.float32)
    counts = torch.full((batch * c, split, nb), -1, dtype=torch.int32, device=device)  # poisoned
    _strip_hist_kernel[(batch * c, split)](
        o_ri.contiguous(), table, first.to(torch.float32).contiguous(),
        (bins / span).to(torch.float32).contiguous(), edges_up, counts,
        c, h, w, wr, chunk, split,
        BINS=bins, NB=nb, BLOCK=_BLOCK, num_warps=8, enable_fp_fusion=False,
    )
    return counts.reshape(batch, c * split, nb), widths


def _launch_emd(counts: Tensor, widths: Tensor, y_sorted: Tensor, n_values: int) -> Tensor:
    """Pass 3 (tiny): per candidate, density heights -> sort -> W1 to ``y_sorted``; float64 (B,)."""
    batch, rows, nb = counts.shape
    emd = torch.full((batch,), float("nan"), dtype=torch.float32, device=counts.device)
    _hist_emd_kernel[(batch,)](
        counts, widths, y_sorted, emd, rows, float(n_values),
        BINS=_ref.HIST_BINS, NB=nb, num_warps=4, enable_fp_fusion=False,
    )
    return emd.to(torch.float64)
