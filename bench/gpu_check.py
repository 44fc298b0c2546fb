"""One-command GPU check of the Triton kernels: correctness, then timings (DESIGN §7).

    python bench/gpu_check.py                   # on a CUDA machine (< 8 min on an H100)
    python bench/gpu_check.py --only env,spectral_timing
    python bench/gpu_check.py --dry-run         # CPU, TRITON_INTERPRET=1, tiny sizes

Sections (run in this order; ``--only`` picks a subset):

* ``env``: GPU name, capability, memory, versions.
* ``dip_full``, ``dip_cohort``, then after the kernel correctness sections
  ``dip_variants``: see below.
* ``correctness_spectral``: fused scores vs the float32 and float64 PyTorch
  references on fresh random inputs (criteria of tests/kernels; the
  ``fft_dtype=float64`` option within 1e-6 of float64), and exact histogram
  counts vs numpy.
* ``correctness_upsample_conv``: fused upsample + conv vs a float64 reference
  for k in {1,3,5,7}, both modes, all activations, fp32 (<= 1e-5) and bf16
  (<= 2x PyTorch bf16's error + 1e-3); gradients; UpsampleBlock's fused
  path; bf16 autocast.
* ``copy_bandwidth``: a big device-to-device copy (GB/s, read + write).
* ``matmul``: big fp32 (no TF32), TF32 and bf16 matmuls (TFLOP/s).
* ``spectral_timing``: B candidates of C x S x S (default 256 x 3 x 512^2):
  float64 reference, float32 PyTorch reference and fused (float32 FFT, and
  float64 FFT), medians after warm-up; the ratios; the rfft2 share;
  effective GB/s.
* ``upsample_conv_timing``: 128 channels, 256^2 -> 512^2, k = 3 and 5,
  fp32 and bf16, vs F.interpolate + F.conv2d (cuDNN; fp32 both with its
  default TF32 and with TF32 off), with TFLOP/s and GB/s next to the
  measured matmul rate and copy bandwidth.

* ``dip_full`` (the fast DIP loop issue): whole 1200-step 512^2 denoising
  runs (sigma 25, bundled sample upscaled), NAS-DIP denoise genotype at
  width 128: eager fp32 (the reference), then ``torch.compile``
  (reduce-overhead) in bf16 and fp32, and CUDA-graph replay
  (``cuda_graph=True``) in bf16: wall time, the first (compiling) step's
  seconds, the other steps' seconds, per-step medians (the ``dip_step``
  rows) and restored PSNR (bf16 within 0.1 dB of fp32 on the same path).
  "fp32" is ``precision="fp32"``: float32 math, TF32 off.  (Results files
  written before that change, the H200 ones of 2026-11-27 and earlier, ran
  "fp32" with cuDNN's default TF32 convolutions: today's ``"tf32"``.)
  ``dip_variants`` adds the compile again with warm caches, the eager,
  compiled and graph paths in TF32 (the default on CUDA), the graph path in
  fp32, and the graph path with channels-last weights and/or the reference
  kernel backend.  ``dip_precision`` (not in the default run; its own
  ``--only``): bf16, tf32 and fp32 over seeds, and fp32 once more (the
  run-to-run floor), compiled and on the graph path.
* ``dip_cohort``: K = 15 cohort members (the first 15 of the 522 list, width
  128) at 64^2: together (CUDA graph with a stream per member; eager) vs
  eager one after another, and the graph members' losses vs the solo runs'.

The DIP sections run first; ``--budget-s`` (default 450 s) skips whatever
would not fit, and the report is rewritten after every section.

Writes one JSON file ``$OUT/gpu_check-<gpu>.json`` (``$OUT`` defaults to
./bench/results; ``--out-dir`` overrides).  Exit status: 0 all sections
passed, 1 a section failed (its error is in the JSON), 2 no CUDA device
(without ``--dry-run``).  A later issue adds sections as ``section_<name>(ctx)``
functions and lists them in ``SECTIONS``.
"""
from __future__ import annotations

import os
import sys

if "--dry-run" in sys.argv:  # before anything imports Triton kernels
    os.environ.setdefault("TRITON_INTERPRET", "1")

import argparse  # noqa: E402
import faulthandler  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402


@dataclass
class Context:
    device: torch.device
    dry_run: bool
    args: argparse.Namespace
    results: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    path: Optional[Path] = None

    def seconds_left(self) -> float:
        """Of the ``--budget-s`` time budget (sections and runs that would not fit are skipped)."""
        return self.args.budget_s - (time.perf_counter() - self.started)

    def save(self, failed: Optional[list] = None) -> None:
        """(Re)write the report: after every section, so a run cut short still leaves its results."""
        if self.path is None:
            return
        report = {
            "device": common.device_label(self.device),
            "dry_run": self.dry_run,
            "sections": {k: v for k, v in self.results.items() if not k.startswith("_")},
            "peaks": self.results.get("_peaks", {}),
            "rows": self.rows,
            "failed": failed if failed is not None else [k for k, v in self.results.items()
                                                          if not k.startswith("_") and not v.get("ok")],
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
        tmp.replace(self.path)

    def size(self, real, tiny):
        """``real`` on a GPU, ``tiny`` in a dry run."""
        return tiny if self.dry_run else real

    def time(self, fn, warmup=3, reps=10) -> float:
        if self.dry_run:
            warmup, reps = 0, 1
        return common.time_ms(fn, self.device, warmup, reps)


def _rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    a, e = actual.detach().double(), expected.detach().double()
    if not (torch.isfinite(a).all() and torch.isfinite(e).all()):
        return float("inf")
    scale = e.abs().max().item()
    return (a - e).abs().max().item() / scale if scale > 0 else (a - e).abs().max().item()


# --------------------------------------------------------------------------- #
# Sections
# --------------------------------------------------------------------------- #
def section_env(ctx: Context) -> dict:
    import triton

    info = {
        "device": common.device_label(ctx.device),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "dry_run": ctx.dry_run,
    }
    if ctx.device.type == "cuda":
        props = torch.cuda.get_device_properties(ctx.device)
        info.update(capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count,
                    memory_gib=round(props.total_memory / 2**30, 1),
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return {"ok": True, **info}


def section_correctness_spectral(ctx: Context) -> dict:
    import numpy as np

    from bench_spectral import make_inputs
    from isnas_fast.kernels import spectral_reference as ref
    from isnas_fast.kernels import fused_spectral as ks

    fused = list(ks.FUSED_METRICS)
    mse = {"psd_db_strip_mse", "psd_db_mse", "nodc_psd_db_strip_mse", "nodc_psd_db_mse"}
    shapes = ctx.size(
        [(6, 3, 40, 56), (6, 1, 33, 47), (6, 2, 80, 80), (6, 3, 256, 256), (4, 3, 512, 512)],
        [(2, 3, 40, 56)],
    )
    cases, ok = [], True
    for i, (b, c, h, w) in enumerate(shapes):
        y, o = make_inputs(b, c, h, w, ctx.device, seed=1000 + i)
        o[0] = torch.rand(o[0].shape, device=ctx.device)  # one rough output too
        fast = ks.triton_spectral_scores(y, o, fused)
        r32 = ref.spectral_scores_reference(y, o, fused, dtype=torch.float32)
        r64 = ref.spectral_scores_reference(y, o, fused)
        for k, name in enumerate(fused):
            e32, e64, e_ref = _rel(fast[:, k], r32[:, k]), _rel(fast[:, k], r64[:, k]), _rel(r32[:, k], r64[:, k])
            passed = e32 <= 1e-5 and e64 <= 2 * e_ref + 1e-6
            ok &= passed
            cases.append({"shape": [b, c, h, w], "metric": name, "vs_f32_ref": e32, "vs_f64_ref": e64,
                          "f32_ref_vs_f64": e_ref, "passed": bool(passed)})
        mse_names = [n for n in fused if n in mse]
        fast64 = ks.triton_spectral_scores(y, o, mse_names, fft_dtype=torch.float64)
        e_fft64 = _rel(fast64, r64[:, [fused.index(n) for n in mse_names]])
        ok &= e_fft64 <= 1e-6
        cases.append({"shape": [b, c, h, w], "metric": "mse metrics, fft_dtype=float64", "vs_f64_ref": e_fft64,
                      "passed": bool(e_fft64 <= 1e-6)})

    # Histogram counts: exact against numpy on the same float32 power values.
    b, c, h, w = ctx.size((4, 3, 256, 256), (2, 3, 40, 56))
    _, o = make_inputs(b, c, h, w, ctx.device, seed=77)
    o_ri = torch.view_as_real(torch.fft.rfft2(o, norm="forward")).contiguous()
    table = ks.strip_intervals(h, w, ctx.device)
    zeros = torch.zeros(b, c, device=ctx.device)
    stats, split = ks._launch_stats(o_ri, o_ri[0], table, w, zeros, zeros[0], need_mse=False, need_range=True)
    counts, _ = ks._launch_strip_counts(o_ri, table, w, stats[..., 2].amin(1), stats[..., 3].amax(1), split)
    counts = counts.sum(1)[:, : ref.HIST_BINS].cpu()
    power = o_ri[..., 0].square() + o_ri[..., 1].square()
    vals = torch.fft.fftshift(ref.full_grid(power, h, w), dim=(-2, -1))[..., ref.strip_mask(h, w).to(ctx.device)]
    vals = vals.reshape(b, -1).double().cpu().numpy()
    expected = torch.tensor(np.stack([np.histogram(v, bins=ref.HIST_BINS)[0] for v in vals]))
    hist_exact = bool(torch.equal(counts, expected))
    ok &= hist_exact
    worst = max(cases, key=lambda r: r.get("vs_f32_ref", 0))
    return {"ok": bool(ok), "histogram_counts_exact": hist_exact, "worst_vs_f32_ref": worst, "cases": cases}


def section_correctness_upsample_conv(ctx: Context) -> dict:

    from isnas_fast import kernels
    from isnas_fast.genotype import decode_upsample
    from isnas_fast.kernels.fused_upsample_conv import upsample_conv_forward, upsample_conv_reference
    from isnas_fast.network import UpsampleBlock

    g = torch.Generator(device=ctx.device)
    g.manual_seed(4242)
    cases, ok = [], True

    def check(n, c_in, c_out, h, w, k, mode, act, dtype, tune):
        nonlocal ok
        x = torch.randn(n, c_in, h, w, generator=g, device=ctx.device).to(dtype)
        wt = (torch.randn(c_out, c_in, k, k, generator=g, device=ctx.device) / (c_in * k * k) ** 0.5).to(dtype)
        out = torch.full((n, c_out, 2 * h, 2 * w), float("nan"), dtype=dtype, device=ctx.device)
        upsample_conv_forward(x, wt, mode, act, out=out, tune=tune)
        if ctx.device.type == "cuda":
            want = upsample_conv_reference(x.double(), wt.double(), mode, act)
        else:
            want = upsample_conv_reference(x.float(), wt.float(), mode, act)
        with _no_tf32():
            plain = upsample_conv_reference(x, wt, mode, act)  # PyTorch in the same dtype
        err, err_torch = _rel(out, want), _rel(plain, want)
        bound = 1e-5 if dtype == torch.float32 else 2 * err_torch + 1e-3
        passed = err <= bound
        ok &= passed
        cases.append({"shape": [n, c_in, c_out, h, w], "k": k, "mode": mode, "act": act, "dtype": str(dtype),
                      "tuned": tune, "rel_err": err, "torch_rel_err": err_torch, "bound": bound,
                      "passed": bool(passed)})

    # Every (k, mode, dtype) with leaky_relu, and every activation at k = 3: each
    # variant is a separate compile (k = 7 unrolls 49 taps), so the sweep is
    # kept to what the CPU tests do not already pin down.
    modes, acts = ["bilinear", "nearest"], [None, "relu", "leaky_relu"]
    for k in ctx.size([1, 3, 5, 7], [3]):
        for mode in modes:
            for act in (acts if k == 3 and not ctx.dry_run else ["leaky_relu"]):
                check(1, 8, 8, 5, 7, k, mode, act, torch.float32, False)
                check(1, 8, 8, 5, 7, k, mode, act, torch.bfloat16, False)
    if not ctx.dry_run:
        for mode in modes:
            for dtype in (torch.float32, torch.bfloat16):
                check(2, 40, 72, 9, 13, 3, mode, "leaky_relu", dtype, False)
                check(1, 128, 128, 64, 64, 3, mode, "leaky_relu", dtype, True)  # autotuned path

    # Gradients (backward = reference) and the network's fused path.
    x = torch.randn(2, 8, 5, 4, generator=g, device=ctx.device, requires_grad=True)
    wt = torch.randn(12, 8, 3, 3, generator=g, device=ctx.device, requires_grad=True)
    go = torch.randn(2, 12, 10, 8, generator=g, device=ctx.device)
    with _no_tf32():
        grads = []
        for be in ("triton", "reference"):
            y = kernels.upsample_conv(x, wt, "bilinear", "relu", backend=be)
            grads.append(torch.autograd.grad(y, (x, wt), go))
    grad_err = max(_rel(a, b) for a, b in zip(*grads))
    block = UpsampleBlock(decode_upsample(4), 16, 16).to(ctx.device)
    z = torch.rand(1, 16, 8, 8, generator=g, device=ctx.device)
    with _backend("triton"), torch.no_grad(), _no_tf32():
        block_err = _rel(block(z), block.ops(z))
    # Autocast bf16 (the DIP loop's bf16 mode): float32 input and weight.
    xa = torch.randn(1, 32, 16, 16, generator=g, device=ctx.device)
    wa = torch.randn(32, 32, 3, 3, generator=g, device=ctx.device) / 17
    with _no_tf32():
        exact = upsample_conv_reference(xa.double(), wa.double(), "bilinear", "leaky_relu")
    with torch.autocast(ctx.device.type, dtype=torch.bfloat16):
        fused_ac = kernels.upsample_conv(xa, wa, "bilinear", "leaky_relu", backend="triton")
        plain_ac = upsample_conv_reference(xa, wa, "bilinear", "leaky_relu")
    autocast_err, autocast_torch_err = _rel(fused_ac, exact), _rel(plain_ac, exact)
    autocast_ok = fused_ac.dtype == torch.bfloat16 and autocast_err <= 2 * autocast_torch_err + 1e-3

    ok &= grad_err <= 1e-5 and block_err <= 1e-5 and autocast_ok
    failed = [c for c in cases if not c["passed"]]
    worst = max(cases, key=lambda r: r["rel_err"] / r["bound"])
    return {"ok": bool(ok), "n_cases": len(cases), "failed": failed, "worst": worst,
            "grad_rel_err": grad_err, "upsample_block_rel_err": block_err,
            "autocast_rel_err": autocast_err, "autocast_torch_rel_err": autocast_torch_err,
            "cases": cases}


class _no_tf32:
    """cuDNN / cuBLAS in exact fp32 inside the block (PyTorch's conv default allows TF32)."""

    def __enter__(self):
        self.saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved


class _backend:
    """``$ISNAS_FAST_BACKEND`` set to ``name`` inside the block (None: left as it is)."""

    def __init__(self, name: Optional[str]):
        self.name = name

    def __enter__(self):
        from isnas_fast.kernels import ENV_VAR

        self.var = ENV_VAR
        self.saved = os.environ.get(ENV_VAR)
        if self.name is not None:
            os.environ[ENV_VAR] = self.name

    def __exit__(self, *exc):
        if self.saved is None:
            os.environ.pop(self.var, None)
        else:
            os.environ[self.var] = self.saved


def section_copy_bandwidth(ctx: Context) -> dict:
    n = ctx.size(1 << 28, 1 << 22)  # 1 GiB of float32 on a GPU
    src = torch.empty(n, dtype=torch.float32, device=ctx.device).uniform_()
    dst = torch.empty_like(src)
    ms = ctx.time(lambda: dst.copy_(src), warmup=3, reps=20)
    gbs = 2 * src.numel() * 4 / (ms * 1e-3) / 1e9
    ctx.results.setdefault("_peaks", {})["copy_gbs"] = gbs
    return {"ok": True, "bytes": 2 * src.numel() * 4, "ms": ms, "gb_per_s": round(gbs, 1)}


def section_matmul(ctx: Context) -> dict:
    n = ctx.size(8192, 256)
    out = {"ok": True, "n": n}
    for label, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                               ("bf16", torch.bfloat16, False)):
        a = torch.randn(n, n, device=ctx.device).to(dtype)
        b = torch.randn(n, n, device=ctx.device).to(dtype)
        saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            ms = ctx.time(lambda: a @ b, warmup=3, reps=10)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = saved
        tflops = 2 * n**3 / (ms * 1e-3) / 1e12
        out[f"{label}_tflops"] = round(tflops, 2)
        ctx.results.setdefault("_peaks", {})[f"matmul_{label}_tflops"] = tflops
    return out


def section_spectral_timing(ctx: Context) -> dict:
    from bench_spectral import METRIC_SETS, make_inputs
    from isnas_fast.kernels import spectral_reference as ref
    from isnas_fast.kernels.fused_spectral import triton_spectral_scores
    from isnas_fast.kernels.spectral_reference import spectral_scores_reference

    b, c, s = ctx.size((ctx.args.spectral_batch, 3, ctx.args.spectral_size), (2, 3, 40))
    y, o = make_inputs(b, c, s, s, ctx.device, seed=5)
    out = {"ok": True, "shape": [b, c, s, s], "sets": {}}
    fft_ms = ctx.time(lambda: torch.fft.rfft2(o, norm="forward"), warmup=3, reps=10)
    out["rfft2_outputs_ms"] = fft_ms
    for set_name in ("strip", "all"):
        metrics = METRIC_SETS[set_name]
        fast = ctx.time(lambda: triton_spectral_scores(y, o, metrics), warmup=3, reps=10)
        fast64 = ctx.time(lambda: triton_spectral_scores(y, o, metrics, fft_dtype=torch.float64), warmup=2, reps=5)
        r32 = ctx.time(lambda: spectral_scores_reference(y, o, metrics, dtype=torch.float32), warmup=1, reps=3)
        torch.cuda.empty_cache() if ctx.device.type == "cuda" else None
        r64 = ctx.time(lambda: ref.spectral_scores_reference(y, o, metrics), warmup=1, reps=3)
        torch.cuda.empty_cache() if ctx.device.type == "cuda" else None
        # Minimum traffic of the fused path: read the outputs, write + read the
        # half spectra once per pass (two passes with the histogram).
        passes = 2 if set_name == "all" else 1
        half = b * c * s * (s // 2 + 1) * 8
        traffic = b * c * s * s * 4 + half * (1 + passes)
        entry = {"metrics": metrics, "float64_ref_ms": r64, "float32_ref_ms": r32, "fused_ms": fast,
                 "fused_fft64_ms": fast64, "ratio_fft64_vs_float64": r64 / fast64,
                 "ratio_vs_float64": r64 / fast, "ratio_vs_float32": r32 / fast,
                 "fft_share": fft_ms / fast, "effective_gb_per_s": traffic / (fast * 1e-3) / 1e9,
                 "copy_gb_per_s": ctx.results.get("_peaks", {}).get("copy_gbs")}
        out["sets"][set_name] = entry
        shape = f"B{b}xC{c}x{s}x{s}"
        ctx.rows.append(common.row(f"spectral/{set_name}/{shape}", r64, fast, ctx.device, reference="float64"))
        ctx.rows.append(common.row(f"spectral-f32ref/{set_name}/{shape}", r32, fast, ctx.device, reference="float32"))
    return out


def section_upsample_conv_timing(ctx: Context) -> dict:
    from bench_upsample_conv import make_inputs
    from isnas_fast.kernels.fused_upsample_conv import upsample_conv_forward, upsample_conv_reference

    c, s = ctx.size((128, 256), (16, 8))
    peaks = ctx.results.get("_peaks", {})
    out = {"ok": True, "channels": c, "input": s, "output": 2 * s, "cases": []}
    for k in (3, 5):
        for dtype in (torch.float32, torch.bfloat16):
            for mode in ("bilinear",) if k == 5 else ("bilinear", "nearest"):
                x, w = make_inputs(1, c, c, s, k, dtype, ctx.device)
                act = "leaky_relu"
                with torch.no_grad():
                    upsample_conv_forward(x, w, mode, act)  # autotune outside the timing
                    fast = ctx.time(lambda: upsample_conv_forward(x, w, mode, act), warmup=5, reps=20)
                    ref_default = ctx.time(lambda: upsample_conv_reference(x, w, mode, act), warmup=5, reps=20)
                    with _no_tf32():
                        ref_exact = ctx.time(lambda: upsample_conv_reference(x, w, mode, act), warmup=5, reps=20)
                flops = 2 * c * c * k * k * (2 * s) ** 2
                size = x.element_size()
                fused_bytes = (x.numel() + c * (2 * s) ** 2) * size  # read x, write y
                label = "bf16" if dtype == torch.bfloat16 else "fp32"
                case = {
                    "k": k, "mode": mode, "dtype": label, "fused_ms": fast,
                    "reference_ms": ref_default, "reference_no_tf32_ms": ref_exact,
                    "ratio": ref_default / fast, "ratio_vs_no_tf32": ref_exact / fast,
                    "fused_tflops": flops / (fast * 1e-3) / 1e12,
                    "fused_gb_per_s": fused_bytes / (fast * 1e-3) / 1e9,
                    "matmul_peak_tflops": peaks.get("matmul_bf16_tflops" if label == "bf16" else "matmul_fp32_tflops"),
                    "copy_gb_per_s": peaks.get("copy_gbs"),
                }
                out["cases"].append(case)
                name = f"upsample_conv/{mode}/k{k}/{act}/{label}/N1xC{c}x{s}x{s}"
                ctx.rows.append(common.row(name, ref_default, fast, ctx.device, reference="cudnn default"))
                if label == "fp32":
                    ctx.rows.append(common.row(name + "/no-tf32-ref", ref_exact, fast, ctx.device,
                                               reference="cudnn, TF32 off"))
    return out


def _dip_problem(size: int, device: torch.device):
    from importlib import resources

    from isnas_fast.io import load_image
    from isnas_fast.tasks import Denoise

    with resources.as_file(resources.files("isnas_fast").joinpath("data/sample.png")) as path:
        clean = load_image(path)
    clean = torch.nn.functional.interpolate(clean, size=(size, size), mode="bicubic", align_corners=False)
    clean = clean.clamp(0, 1)
    return clean.to(device), Denoise(25).corrupt(clean, seed=0).to(device)


def _dip_net(arch: str, width: int, device: torch.device, seed: int = 0, cin: int = 32):
    from isnas_fast.device import seeded
    from isnas_fast.network import build_network

    with seeded(seed, device):
        return build_network(arch, cin, 3, width, device=device)


def _step_stats(dt: list[float]) -> tuple[float, float]:
    """Per-step times (ms) -> (median ms per step after a quarter of warm-up steps, seconds of the first step)."""
    import statistics

    warm = min(len(dt) - 1, max(3, len(dt) // 4))
    return statistics.median(dt[warm:]), dt[0] / 1e3


def _dip_run(arch, width, obs, steps, device, *, seed=0, cin=32, channels_last=False, backend=None, **kw):
    """One timed fit_dip run: (DIPResult, median ms per step after warm-up, seconds of the first step).

    ``channels_last``: the network's weights in channels-last memory format
    (cuDNN then runs every convolution, and so every activation, NHWC).
    ``backend``: the kernel backend (``"reference"``: no fused Triton
    upsample + conv)."""
    from isnas_fast.dip import DIPSettings, fit_dip

    net = _dip_net(arch, width, device, seed=seed, cin=cin)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    with _backend(backend):
        res, dt = common.step_times(lambda cb: fit_dip(net, obs, DIPSettings(steps), seed=seed, quiet=True,
                                                       callback=cb, **kw), device)
    return (res, *_step_stats(dt))


# The DIP paths of the GPU check: (label, fit_dip keywords).  ``graph_*``
# replays the eager step as a CUDA graph (no compiler), ``compiled_*`` uses
# torch.compile(mode="reduce-overhead").  ``dip_full`` runs the judged ones
# (compile + bf16, and compile + fp32 for the same-path precision comparison),
# ``dip_variants`` the rest while time is left.  Every run names its
# precision: the default on CUDA is "tf32".
_FULL_RUNS = (
    ("compiled_bf16", dict(compile=True, precision="bf16")),
    ("compiled_fp32", dict(compile=True, precision="fp32")),
    ("graph_bf16", dict(cuda_graph=True, precision="bf16")),
)
_VARIANT_RUNS = (
    # the same compile again after torch._dynamo.reset(): Inductor's on-disk caches are warm
    ("compiled_bf16_warm_cache", dict(compile=True, precision="bf16")),
    ("eager_tf32", dict(compile=False, precision="tf32")),
    ("compiled_tf32", dict(compile=True, precision="tf32")),
    ("graph_tf32", dict(cuda_graph=True, precision="tf32")),
    ("graph_fp32", dict(cuda_graph=True, precision="fp32")),
    ("graph_bf16_channels_last", dict(cuda_graph=True, precision="bf16", channels_last=True)),
    ("graph_bf16_reference_backend", dict(cuda_graph=True, precision="bf16", backend="reference")),
    ("graph_bf16_channels_last_reference_backend",
     dict(cuda_graph=True, precision="bf16", channels_last=True, backend="reference")),
)


def _full_runs(ctx: Context, section: str, runs) -> dict:
    """1200-step 512^2 width-128 denoising DIPs (sigma 25) of the NAS-DIP
    denoise genotype: the eager fp32 reference (in ``dip_full``), then the
    fast ``runs`` while time is left.  Per run: wall time (compilation
    included), first-step seconds (the compile, for compiled runs), the
    seconds of the other 1199 steps, median ms per step, and the PSNR of the
    restored image (no ground truth given to the fit).  The per-step medians
    make the ``dip_step`` rows (eager fp32 vs each fast path)."""
    from isnas_fast.quality import psnr

    size, width, iters = ctx.size(512, 64), ctx.size(128, 16), ctx.size(1200, 4)
    arch = "nasdip-denoise"
    clean, obs = _dip_problem(size, ctx.device)
    out = {"ok": True, "size": size, "width": width, "iterations": iters, "arch": arch, "runs": {}}
    ctx.results[section] = out  # saved as it grows

    def run(label, min_left_s, **kw):
        if ctx.seconds_left() < min_left_s:
            out["runs"][label] = {"skipped": f"under {min_left_s} s of the time budget left"}
            return None
        if ctx.dry_run and kw.pop("cuda_graph", False):
            out["runs"][label] = {"skipped": "CUDA graphs need a GPU"}
            return None
        if ctx.dry_run:
            kw["compile"] = False
        torch._dynamo.reset()
        t0 = time.perf_counter()
        try:
            res, ms, first = _dip_run(arch, width, obs, iters, ctx.device, **kw)
        except Exception as e:  # one broken path must not hide the others
            out["runs"][label] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            out["ok"] = False
            return None
        wall = time.perf_counter() - t0
        entry = {"wall_s": wall, "first_step_s": first, "ms_per_step": ms, "steps_after_first_s": wall - first,
                 "psnr": float(psnr(res.output, clean)[0]), "compiled": res.compiled,
                 "options": dict(kw)}
        out["runs"][label] = entry
        ctx.save()
        return entry

    if section == "dip_full":
        ref = run("eager_fp32", 0, compile=False, precision="fp32")
    else:
        ref = ctx.results.get("dip_full", {}).get("runs", {}).get("eager_fp32")
        if ref is None or "wall_s" not in ref:
            out.update(ok=False, error="needs the eager fp32 reference of the dip_full section")
            return out
    if ref is None:
        return out
    out["eager_fp32"] = ref
    name = f"dip_step/{arch}/w{width}/{size}x{size}"
    for label, kw in runs:
        entry = run(label, 150 if kw.get("compile") and "warm" not in label else 60, **kw)
        if entry is None:
            continue
        entry["psnr_minus_eager_fp32_db"] = entry["psnr"] - ref["psnr"]
        ctx.rows.append(common.row(f"{name}/eager_fp32_vs_{label}", ref["ms_per_step"], entry["ms_per_step"],
                                   ctx.device, first_step_s=round(entry["first_step_s"], 2)))
    return out


def section_dip_full(ctx: Context) -> dict:
    """The judged figures: compile + bf16 against eager fp32 (1200 steps at
    512^2, width 128): the 1199 steps after the compiling first one under
    20 s, the compile reported beside them; bf16's PSNR within 0.1 dB of fp32
    on the same path (compiled bf16 vs compiled fp32; graph bf16 vs eager
    fp32, which the graph replays)."""
    out = _full_runs(ctx, "dip_full", _FULL_RUNS)
    runs = out["runs"]
    cb, cf, gb = (runs.get(k, {}) for k in ("compiled_bf16", "compiled_fp32", "graph_bf16"))
    if "wall_s" in cb:
        out["compiled_bf16_steps_s"] = cb["steps_after_first_s"]
        out["compiled_bf16_compile_s"] = cb["first_step_s"]
        out["compiled_bf16_steps_under_20_s"] = cb["steps_after_first_s"] < 20
        out["compiled_bf16_wall_under_20_s"] = cb["wall_s"] < 20
    if "psnr" in cb and "psnr" in cf:
        out["compiled_bf16_minus_compiled_fp32_db"] = cb["psnr"] - cf["psnr"]
    if "psnr" in gb:
        out["graph_bf16_minus_eager_fp32_db"] = gb["psnr_minus_eager_fp32_db"]
    gaps = [abs(out[k]) for k in ("compiled_bf16_minus_compiled_fp32_db", "graph_bf16_minus_eager_fp32_db")
            if k in out]
    if gaps:
        out["bf16_within_0_1_db_of_fp32"] = max(gaps) <= 0.1
    return out


def section_dip_variants(ctx: Context) -> dict:
    return _full_runs(ctx, "dip_variants", _VARIANT_RUNS)


# The precisions ``dip_precision`` compares, and the differences it reports.
# "fp32_again" repeats the fp32 run: eager CUDA DIP is not bitwise
# reproducible and DIP amplifies the last bits, so fp32 - fp32 is the floor
# under the other differences (on the CPU, a one-ulp nudge of the input moved
# a run's best PSNR by up to 0.44 dB, SD 0.19 dB over 16 seeds:
# bench/precision_emulation.py --study).
_PRECISION_MODES = ("bf16", "tf32", "fp32", "fp32_again")
_PRECISION_PAIRS = (("bf16", "fp32"), ("tf32", "fp32"), ("bf16", "tf32"), ("fp32_again", "fp32"))


def section_dip_precision(ctx: Context) -> dict:
    """bf16 and TF32 vs float32 over seeds: the ``dip_full`` problem (1200
    steps, 512^2, width 128) in every precision of ``_PRECISION_MODES`` for each
    seed of ``--precision-seeds``, on each path of ``--precision-paths``
    (compiled, then the CUDA graph), while the budget lasts.  DIP's
    trajectory is chaotic and eager CUDA training is not bitwise
    reproducible (two compiled fp32 runs of one seed gave 34.90 and 34.77
    dB), so one pair of runs says little: per path, the per-seed differences
    of ``_PRECISION_PAIRS`` (dB), their means and largest sizes."""
    import statistics

    from isnas_fast.quality import psnr

    size, width, iters = ctx.size(512, 64), ctx.size(128, 16), ctx.size(1200, 4)
    seeds = common.ints(ctx.args.precision_seeds) if not ctx.dry_run else [0, 1]
    arch = "nasdip-denoise"
    clean, obs = _dip_problem(size, ctx.device)
    out = {"ok": True, "size": size, "width": width, "iterations": iters, "arch": arch, "seeds": seeds,
           "modes": list(_PRECISION_MODES), "paths": {}}
    ctx.results["dip_precision"] = out
    paths = {"compiled": dict(compile=True), "graph": dict(cuda_graph=True)}
    for path in common.words(ctx.args.precision_paths):
        if path not in paths:
            raise ValueError(f"unknown --precision-paths entry {path!r}: choose from {', '.join(paths)}")
        if ctx.dry_run and path == "graph":
            out["paths"][path] = {"skipped": "CUDA graphs need a GPU"}
            continue
        kw = dict(compile=False) if ctx.dry_run else paths[path]
        entry = out["paths"].setdefault(path, {"runs": [], "differences_db": {}})
        compiled_modes: set = set()
        for seed in seeds:
            got = {}
            for label in _PRECISION_MODES:
                precision = label.removesuffix("_again")
                cold = path == "compiled" and precision not in compiled_modes
                if ctx.seconds_left() < (100 if cold else 60):
                    break
                compiled_modes.add(precision)
                torch._dynamo.reset()
                t0 = time.perf_counter()
                res, ms, first = _dip_run(arch, width, obs, iters, ctx.device, seed=seed, precision=precision, **kw)
                got[label] = float(psnr(res.output, clean)[0])
                entry["runs"].append({"seed": seed, "mode": label, "psnr": got[label],
                                      "wall_s": time.perf_counter() - t0, "first_step_s": first,
                                      "ms_per_step": ms})
                ctx.save()
            for a, b in _PRECISION_PAIRS:
                if a in got and b in got:
                    entry["differences_db"].setdefault(f"{a}_minus_{b}", []).append(got[a] - got[b])
        for key, diffs in entry["differences_db"].items():
            entry[f"{key}_mean"] = statistics.fmean(diffs)
            entry[f"{key}_max_abs"] = max(abs(d) for d in diffs)
    return out


def section_dip_cohort(ctx: Context) -> dict:
    """K = 15 cohort members (the first 15 of the 522 list, width 128) at
    64^2, 30 steps: the group together, replayed as one CUDA graph with a
    stream per member and eager (one program), then the members one after
    another, eager (the sum of their per-step medians).  All with the
    reference kernel backend (cuDNN): the fused Triton upsample + conv
    autotunes on first use of each new (channels, k, mode, activation), a
    one-time cost per machine that once ate this section's budget; both
    sides run the same ops either way.  The medians skip the first steps,
    and the solo runs stop when the time budget runs low (then the ratio is
    estimated from the members done, and says so).  Also: how far the
    graph-together members' losses are from the solo runs'."""
    from isnas_fast.dip import DIPSettings, fit_dip_group
    from isnas_fast.genotype import builtin_genotypes

    k, width, steps = ctx.size(15, 2), ctx.size(128, 16), ctx.size(30, 4)
    _, obs = _dip_problem(64, ctx.device)
    archs = [str(a) for a in builtin_genotypes()[:k]]
    seeds = list(range(k))
    out = {"ok": True, "k": k, "width": width, "steps": steps, "backend": "reference"}
    ctx.results["dip_cohort"] = out
    name = f"cohort/k{k}/w{width}/64x64"

    def together(**kw):
        nets = [_dip_net(a, width, ctx.device, s, cin=3) for a, s in zip(archs, seeds)]
        res, dt = common.step_times(lambda cb: fit_dip_group(nets, obs, DIPSettings(steps), seeds=seeds, quiet=True,
                                                             callback=cb, **kw), ctx.device)
        ms, first = _step_stats(dt)
        return res, {"ms_per_step": ms, "first_step_s": first, "wall_s": sum(dt) / 1e3}

    with _backend("reference"):
        graph_res = None
        if ctx.dry_run:
            out["together_graph"] = {"skipped": "CUDA graphs need a GPU"}
        else:
            # A hang (capture across streams) must not eat the rest of the budget: dump every
            # thread's stack and exit after 120 s; the report saved so far stays.
            faulthandler.dump_traceback_later(120, exit=True)
            try:
                graph_res, out["together_graph"] = together(cuda_graph=True)
            except Exception as e:
                out["together_graph"] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
                out["ok"] = False
            finally:
                faulthandler.cancel_dump_traceback_later()
            ctx.save()
        _, out["together_eager"] = together(compile=False)
        ctx.save()
        solo_ms, solo = [], []
        for a, s in zip(archs, seeds):
            if solo and ctx.seconds_left() < 15:
                break
            res, ms, _ = _dip_run(a, width, obs, steps, ctx.device, compile=False, cin=3, seed=s)
            solo_ms.append(ms)
            solo.append(res)
            out["solo_runs_done"] = len(solo)
            out["solo_ms_per_step"] = solo_ms
            ctx.save()
    one_by_one = sum(solo_ms) * k / len(solo_ms)
    out["one_by_one_eager_ms_per_step"] = one_by_one
    out["one_by_one_estimated_from"] = f"{len(solo)} of {k} members" if len(solo) < k else None
    out["ratio_eager_together"] = one_by_one / out["together_eager"]["ms_per_step"]
    ctx.rows.append(common.row(f"{name}/one_by_one_eager_vs_together_eager", one_by_one,
                               out["together_eager"]["ms_per_step"], ctx.device, solo_runs=len(solo)))
    if graph_res is not None:
        g = out["together_graph"]
        g["first_loss_rel"] = max(abs(x.losses[0] - r.losses[0]) / abs(r.losses[0]) for x, r in zip(graph_res, solo))
        g["max_loss_rel"] = max(max(abs(a - b) / abs(b) for a, b in zip(x.losses, r.losses))
                                for x, r in zip(graph_res, solo))
        out["ratio"] = one_by_one / g["ms_per_step"]
        out["at_least_3x"] = out["ratio"] >= 3
        # The first step of both is the same eager forward pass: it must agree to float32 rounding.
        out["ok"] = bool(g["first_loss_rel"] <= 1e-5)
        ctx.rows.append(common.row(f"{name}/one_by_one_eager_vs_together_graph", one_by_one, g["ms_per_step"],
                                   ctx.device, solo_runs=len(solo)))
    return out


SECTIONS = {
    "env": section_env,
    "dip_full": section_dip_full,
    "dip_cohort": section_dip_cohort,
    "correctness_spectral": section_correctness_spectral,
    "correctness_upsample_conv": section_correctness_upsample_conv,
    "dip_variants": section_dip_variants,
    "dip_precision": section_dip_precision,
    "copy_bandwidth": section_copy_bandwidth,
    "matmul": section_matmul,
    "spectral_timing": section_spectral_timing,
    "upsample_conv_timing": section_upsample_conv_timing,
}
# Sections run only when --only names them (too long for the default 8-minute run).
ON_REQUEST = {"dip_precision"}
# Seconds a section needs at least (on a GPU) to be started within the budget.
MIN_SECONDS = {"dip_full": 90, "dip_variants": 70, "dip_precision": 90, "dip_cohort": 40, "correctness_upsample_conv": 30, "spectral_timing": 30,
               "upsample_conv_timing": 30}


# --------------------------------------------------------------------------- #
# Driver
# --------------------------------------------------------------------------- #
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=None, help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    p.add_argument("--dry-run", action="store_true", help="CPU + TRITON_INTERPRET=1 at tiny sizes")
    p.add_argument("--out-dir", default=None, help="folder for the JSON file (default $OUT or ./bench/results)")
    p.add_argument("--spectral-batch", type=int, default=256)
    p.add_argument("--spectral-size", type=int, default=512)
    p.add_argument("--precision-seeds", default="0,1,2", help="seeds of the dip_precision section")
    p.add_argument("--precision-paths", default="compiled,graph",
                   help="paths of the dip_precision section, in order: compiled, graph")
    p.add_argument("--budget-s", type=float, default=450,
                   help="time budget in seconds: sections (and DIP runs) that would not fit are skipped")
    args = p.parse_args(argv)

    if args.dry_run:
        if os.environ.get("TRITON_INTERPRET") != "1":
            print("gpu_check: --dry-run needs TRITON_INTERPRET=1 set before Triton kernels are defined",
                  file=sys.stderr)
            return 2
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device found; this check needs a GPU "
              "(use --dry-run for a tiny CPU rehearsal under TRITON_INTERPRET=1)", file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda")

    names = [n for n in SECTIONS if n not in ON_REQUEST] if args.only is None else common.words(args.only)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"gpu_check: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}",
              file=sys.stderr)
        return 2

    out_dir = Path(args.out_dir or os.environ.get("OUT") or Path("bench") / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    label = "dry-run-cpu" if args.dry_run else common.device_label(device)
    path = out_dir / f"gpu_check-{common.slug(label)}.json"
    ctx = Context(device=device, dry_run=args.dry_run, args=args, path=path)
    failed = []
    for name in names:
        t0 = time.perf_counter()
        need = 0 if args.dry_run else MIN_SECONDS.get(name, 5)
        if ctx.seconds_left() < need:
            result = {"ok": True, "skipped": f"{ctx.seconds_left():.0f} s of the budget left, needs {need} s"}
        else:
            try:
                result = SECTIONS[name](ctx)
            except Exception as e:  # record and go on: one broken section must not hide the others
                result = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        result["seconds"] = round(time.perf_counter() - t0, 2)
        ctx.results[name] = result
        if not result.get("ok"):
            failed.append(name)
        print(f"[{'ok' if result.get('ok') else 'FAIL'}] {name} ({result['seconds']} s)"
              + (f": {result['error']}" if "error" in result else "")
              + (f": skipped, {result['skipped']}" if "skipped" in result else ""), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        ctx.save(failed)

    common.print_rows(ctx.rows)
    print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
