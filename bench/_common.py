"""Shared helpers of the benchmarks, ``gpu_check.py`` and ``precision_emulation.py`` (docs/design.md §7).

Benchmarks measure a reference and a fast path on the same inputs and report
``ratio = reference / fast`` (> 1: the fast path is faster), never a bare
absolute time.  The pytest-benchmark tests (``bench/test_*.py``) take their
options and fixtures from ``bench/conftest.py``; ``gpu_check.py`` writes
rows ``{"name", "reference_ms", "fast_ms", "ratio", "device", ...}``
(:func:`row`) into its report.
"""
from __future__ import annotations

import json
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "results"

#: The metric sets of the spectral benchmarks.
METRIC_SETS = {
    "strip": ["psd_db_strip_mse"],
    "mse": ["psd_db_strip_mse", "psd_db_mse", "nodc_psd_db_mse"],
    "all": [
        "psd_db_strip_mse", "psd_strip_hist_emd", "psd_db_mse",
        "nodc_psd_db_strip_mse", "nodc_psd_strip_hist_emd", "nodc_psd_db_mse",
    ],
}

#: The two sides of every benchmark group; the pytest ids are exactly these.
PATHS = ["reference", "fast"]

COMPILE_SKIP = ("compiles (torch.compile / AOTInductor: 1-2 min per architecture on a CPU): "
                "pass --bench-compile to run it")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_label(device: torch.device) -> str:
    """The GPU's name, or ``cpu (<processor>, N threads)``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int = 3, reps: int = 10) -> float:
    """Median wall time of ``fn()`` in ms after ``warmup`` untimed calls (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(max(1, reps)):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def row(name: str, reference_ms: float, fast_ms: float, device: torch.device, **extra) -> dict:
    return {
        "name": name,
        "reference_ms": round(reference_ms, 4),
        "fast_ms": round(fast_ms, 4),
        "ratio": round(reference_ms / fast_ms, 3) if fast_ms > 0 else None,
        "device": device_label(device),
        **extra,
    }


def step_times(run: Callable[[Callable[[int, float], None]], object], device: torch.device) -> tuple[object, list[float]]:
    """Call ``run(callback)`` (a DIP fit given ``callback=``) and return its
    result and the per-step wall times (ms) from the callback's stamps (the
    GPU synchronised at each); the first step includes any compilation."""
    stamps: list[float] = []

    def cb(it: int, loss: float) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    result = run(cb)
    stamps.insert(0, t0)
    return result, [(b - a) * 1e3 for a, b in zip(stamps, stamps[1:])]


def print_rows(rows: Iterable[dict]) -> None:
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "n/a"
        extra = f" [{r['backend']}]" if "backend" in r else ""
        print(f"{r['name']:<58} ref {r['reference_ms']:>10.3f} ms  fast {r['fast_ms']:>10.3f} ms  {ratio}{extra}")


def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def words(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|actual - expected| / max|expected|`` in float64 (inf if anything is non-finite)."""
    a, e = actual.detach().double(), expected.detach().double()
    if not (torch.isfinite(a).all() and torch.isfinite(e).all()):
        return float("inf")
    scale = e.abs().max().item()
    return (a - e).abs().max().item() / scale if scale > 0 else (a - e).abs().max().item()


def max_abs_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (actual.detach().double() - expected.detach().double()).abs().max().item()


def spectral_inputs(batch: int, channels: int, h: int, w: int, device: torch.device, seed: int = 0):
    """A noisy corrupted image and ``batch`` smooth random outputs in (0, 1), like random nets give."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    y = torch.rand(channels, h, w, generator=g, device=device)
    o = torch.rand(batch, channels, h, w, generator=g, device=device)
    o = F.avg_pool2d(F.pad(o, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    return y, torch.sigmoid(6 * (o - 0.5))


def upsample_conv_inputs(batch: int, c_in: int, c_out: int, size: int, k: int, dtype, device: torch.device,
                         seed: int = 0):
    """Activations (batch, c_in, size, size) and a k x k weight, both in ``dtype``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    x = torch.randn(batch, c_in, size, size, generator=g, device=device)
    w = torch.randn(c_out, c_in, k, k, generator=g, device=device) / (c_in * k * k) ** 0.5
    return x.to(dtype), w.to(dtype)


def option_list(config, name: str, default, cast: Callable = int) -> list:
    """A comma-separated pytest option as a list (``default`` when the option is not given)."""
    value = config.getoption(name)
    return [cast(v) for v in words(str(default if value is None else value))]


def median_of_steps(runs: list[list[float]], warmup: int) -> float:
    """Median of the per-step times (ms) of several runs, each after its first ``warmup`` steps
    (at least each run's last step is kept)."""
    return statistics.median([t for steps in runs for t in steps[min(warmup, len(steps) - 1):]])


def record_study(out: Path, name: str, entry: dict, runs: list[dict]) -> None:
    """Keep ``entry`` and the per-run rows (floats to 4 decimals) under ``name`` in the JSON file
    ``out``, beside what other names hold there, and say so."""
    data = json.loads(out.read_text()) if out.exists() else {}
    data[name] = {**entry, "runs": [{k: (round(x, 4) if isinstance(x, float) else x) for k, x in r.items()}
                                    for r in runs]}
    out.write_text(json.dumps(data, indent=1) + "\n")
    print("wrote", out)
