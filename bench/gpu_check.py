"""One-command GPU check of the Triton kernels: correctness, then timings (docs/design.md §7).

    python bench/gpu_check.py                   # on a CUDA machine (< 8 min on an H100)
    python bench/gpu_check.py --only env,spectral_timing
    python bench/gpu_check.py --dry-run         # CPU, TRITON_INTERPRET=1, tiny sizes (a rehearsal)

Sections (run in this order; ``--only`` picks a subset):

* ``env``: GPU name, capability, memory, versions.
* ``dip_full``, ``dip_cohort``, then after the correctness sections
  ``dip_variants``: see below.
* ``correctness_kernels``, ``correctness_dip``: the CUDA correctness tests,
  ``tests/gpu/test_cuda_kernels.py`` (fused spectral scores vs the float32
  and float64 references, exact histogram counts; fused upsample + conv vs
  float64 for k in {1,3,5,7}, both modes, all activations, fp32 and bf16,
  gradients, UpsampleBlock's fused path, bf16 autocast) and
  ``tests/gpu/test_cuda_dip.py`` (a CUDA-graph cohort's first losses vs its
  eager solo runs; the bf16 DIP on the eager, graph and compiled paths), each
  run by pytest (the ``test`` extra) in a child process; the section reports
  every test's outcome (the tolerances are in those files).
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
  eager one after another, and how far the graph members' losses are from
  the solo runs' (reported; the check is in ``correctness_dip``).

The DIP sections run first; ``--budget-s`` (default 450 s) skips whatever
would not fit, and the report is rewritten after every section.

Writes one JSON file ``$OUT/gpu_check-<gpu>.json`` (``$OUT`` defaults to
./bench/results; ``--out-dir`` overrides).  Exit status: 0 all sections
passed, 1 a section failed (its error is in the JSON), 2 no CUDA device
(without ``--dry-run``).  Sections are ``section_<name>(ctx)`` functions
listed in ``SECTIONS``.
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


TESTS = Path(__file__).resolve().parents[1] / "tests" / "gpu"


def _junit_cases(path: Path) -> list[dict]:
    """Per test of a JUnit XML report: ``{"test", "outcome", "seconds"}`` (+ ``message``)."""
    import xml.etree.ElementTree as ET

    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        entry = {"test": f"{case.get('classname', '')}::{case.get('name', '')}", "outcome": "passed",
                 "seconds": float(case.get("time") or 0)}
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                entry["outcome"] = "failed" if tag == "failure" else tag
                entry["message"] = (node.get("message") or node.text or "")[:2000]
                break
        cases.append(entry)
    return cases


def _run_tests(ctx: Context, name: str) -> dict:
    """Run ``tests/gpu/<name>`` with pytest in a child process (a crash or hang
    there leaves this report alone) and report every test's outcome.  On a
    GPU the kernels compiled (``TRITON_INTERPRET=0``); in a dry run the
    tests' CPU rehearsal (``ISNAS_GPU_TESTS_ON_CPU=1``, interpreter, tiny
    sizes, GPU-only tests skipped)."""
    import subprocess
    import tempfile

    path = TESTS / name
    if not path.is_file():
        return {"ok": False, "error": f"{path} not found: run gpu_check from a source checkout"}
    env = dict(os.environ)
    if ctx.dry_run:
        env.update(TRITON_INTERPRET="1", ISNAS_GPU_TESTS_ON_CPU="1")
    else:
        env["TRITON_INTERPRET"] = "0"
        env.pop("ISNAS_GPU_TESTS_ON_CPU", None)
    timeout = max(60.0, ctx.seconds_left())
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as d:
        junit = Path(d) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", str(path), "-q", "-rfEs", f"--junitxml={junit}"]
        try:
            proc = subprocess.run(cmd, cwd=TESTS.parents[1], env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"pytest {name} timed out after {timeout:.0f} s"}
        cases = _junit_cases(junit) if junit.is_file() else []
    by = {k: [c for c in cases if c["outcome"] == k] for k in ("passed", "failed", "error", "skipped")}
    ok = proc.returncode == 0 and not by["failed"] and not by["error"] and bool(by["passed"])
    out = {"ok": ok, "returncode": proc.returncode, "passed": len(by["passed"]),
           "failed": by["failed"] + by["error"], "skipped": len(by["skipped"]),
           "skip_reasons": sorted({c.get("message", "") for c in by["skipped"]}), "tests": cases}
    if not ok:
        out["output_tail"] = (proc.stdout + proc.stderr)[-4000:]
    return out


def section_suite_throughput(ctx: Context) -> dict:
    """Suite jobs per hour, one by one vs their full-size runs trained together
    (``bench/test_suite_throughput.py`` in a child process; on a GPU 8 jobs at
    256x256, width 128, 200 steps)."""
    import subprocess
    import tempfile

    opts = ["--bench-size", "64", "--bench-width", "16", "--bench-steps", "3", "--bench-cohort", "2",
            "--bench-rounds", "1", "--bench-device", "cpu"] if ctx.dry_run else \
        ["--bench-size", "256", "--bench-width", "128", "--bench-steps", "200", "--bench-cohort", "8",
         "--bench-rounds", "2", "--bench-device", "cuda"]
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as d:
        out_json = Path(d) / "bench.json"
        cmd = [sys.executable, "-m", "pytest", str(Path(__file__).resolve().parent / "test_suite_throughput.py"),
               "-q", f"--benchmark-json={out_json}", *opts]
        try:
            proc = subprocess.run(cmd, cwd=TESTS.parents[1], capture_output=True, text=True,
                                  timeout=max(60.0, ctx.seconds_left()))
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": "the suite throughput benchmark timed out"}
        if proc.returncode != 0 or not out_json.is_file():
            return {"ok": False, "output_tail": (proc.stdout + proc.stderr)[-4000:]}
        benches = json.loads(out_json.read_text())["benchmarks"]
    paths = {b["extra_info"]["path"]: b["extra_info"] for b in benches}
    out = {"ok": True, **{f"{k}_jobs_per_hour": v["jobs_per_hour"] for k, v in paths.items()}}
    if {"reference", "fast"} <= paths.keys():
        out["speedup_together"] = paths["fast"]["jobs_per_hour"] / paths["reference"]["jobs_per_hour"]
    out["cases"] = paths
    return out


def section_correctness_kernels(ctx: Context) -> dict:
    return _run_tests(ctx, "test_cuda_kernels.py")


def section_correctness_dip(ctx: Context) -> dict:
    return _run_tests(ctx, "test_cuda_dip.py")


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
    from isnas_fast.kernels import spectral_reference as ref
    from isnas_fast.kernels.fused_spectral import triton_spectral_scores
    from isnas_fast.kernels.spectral_reference import spectral_scores_reference

    b, c, s = ctx.size((ctx.args.spectral_batch, 3, ctx.args.spectral_size), (2, 3, 40))
    y, o = common.spectral_inputs(b, c, s, s, ctx.device, seed=5)
    out = {"ok": True, "shape": [b, c, s, s], "sets": {}}
    fft_ms = ctx.time(lambda: torch.fft.rfft2(o, norm="forward"), warmup=3, reps=10)
    out["rfft2_outputs_ms"] = fft_ms
    for set_name in ("strip", "all"):
        metrics = common.METRIC_SETS[set_name]
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
    from isnas_fast.kernels.fused_upsample_conv import upsample_conv_forward, upsample_conv_reference

    c, s = ctx.size((128, 256), (16, 8))
    peaks = ctx.results.get("_peaks", {})
    out = {"ok": True, "channels": c, "input": s, "output": 2 * s, "cases": []}
    for k in (3, 5):
        for dtype in (torch.float32, torch.bfloat16):
            for mode in ("bilinear",) if k == 5 else ("bilinear", "nearest"):
                x, w = common.upsample_conv_inputs(1, c, c, s, k, dtype, ctx.device)
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
    graph-together members' losses are from the solo runs' (reported here;
    tests/gpu/test_cuda_dip.py checks the first losses)."""
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
        ctx.rows.append(common.row(f"{name}/one_by_one_eager_vs_together_graph", one_by_one, g["ms_per_step"],
                                   ctx.device, solo_runs=len(solo)))
    return out


def section_search_e2e(ctx: Context) -> dict:
    """The whole search as ``isnas-fast restore`` runs it, timed per stage: the paper
    preset on F16 (512x512, sigma 25, the bundled paper image) twice (cold, then
    with Inductor's caches warm), the quick preset once, and the NAS-DIP genotype
    at the paper preset's budget; PSNR/SSIM of each beside the paper's SSIM
    (DIP 0.875, NAS-DIP 0.880, ISNAS-DIP 0.876)."""
    from importlib import resources

    import isnas_fast
    from isnas_fast.io import load_image
    from isnas_fast.tasks import Denoise

    with resources.as_file(resources.files("isnas_fast").joinpath("data/paper/f16_512_rgb.png")) as path:
        clean = load_image(path)
    size = ctx.size(512, 64)
    clean = clean[..., :size, :size]
    noisy = Denoise(25).corrupt(clean, seed=0).y
    tiny = dict(width=16, num_candidates=3, cohort_size=2, cohort_iterations=3, iterations=3) if ctx.dry_run else {}
    runs = {"paper_cold": ("paper", None), "paper_warm": ("paper", None), "quick": ("quick", None),
            "nasdip_paper_budget": ("paper", "nasdip-denoise")}
    out: dict = {"ok": True, "size": size, "paper_ssim": {"dip": 0.875, "nasdip": 0.880, "isnas_dip": 0.876}, "runs": {}}
    for name, (preset, arch) in runs.items():
        if ctx.seconds_left() < 60 and not ctx.dry_run:
            out["runs"][name] = {"skipped": "time budget"}
            continue
        if name == "paper_warm":
            torch._dynamo.reset()  # a new process would start here; Inductor's on-disk cache stays warm
        t = time.perf_counter()
        r = isnas_fast.restore(noisy, "denoise", preset, sigma=25, ground_truth=clean, seed=0, arch=arch,
                               device=ctx.device, quiet=True, **tiny)
        out["runs"][name] = {"wall_s": time.perf_counter() - t, "timings_s": r.timings_s, "psnr": r.psnr,
                             "ssim": r.ssim, "genotype": str(r.genotype), "iterations_run": r.dip.iterations_run,
                             "compiled": r.dip.compiled, "cuda_graph": r.dip.cuda_graph,
                             "precision": r.dip.precision}
        ctx.save()
    warm = out["runs"].get("paper_warm", {})
    if "wall_s" in warm:
        out["paper_warm_under_60_s"] = warm["wall_s"] < 60
    quick = out["runs"].get("quick", {})
    if "wall_s" in quick:
        out["quick_under_10_s"] = quick["wall_s"] < 10
    return out


SECTIONS = {
    "env": section_env,
    "dip_full": section_dip_full,
    "dip_cohort": section_dip_cohort,
    "correctness_kernels": section_correctness_kernels,
    "correctness_dip": section_correctness_dip,
    "dip_variants": section_dip_variants,
    "dip_precision": section_dip_precision,
    "copy_bandwidth": section_copy_bandwidth,
    "matmul": section_matmul,
    "spectral_timing": section_spectral_timing,
    "upsample_conv_timing": section_upsample_conv_timing,
    "search_e2e": section_search_e2e,
    "suite_throughput": section_suite_throughput,
}
# Sections run only when --only names them (too long for the default 8-minute run).
ON_REQUEST = {"dip_precision", "search_e2e", "suite_throughput"}
# Seconds a section needs at least (on a GPU) to be started within the budget.
MIN_SECONDS = {"dip_full": 90, "dip_variants": 70, "dip_precision": 90, "dip_cohort": 40, "correctness_kernels": 30,
               "correctness_dip": 90, "spectral_timing": 30, "search_e2e": 120, "suite_throughput": 90,
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
