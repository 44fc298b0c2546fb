"""Shared setup of the benchmark scripts (DESIGN §7: ratios measured in one run).

Every script times a reference and a fast path side by side on the same
inputs and writes rows ``{"name", "reference_ms", "fast_ms", "ratio",
"device", ...}`` (``ratio = reference_ms / fast_ms``, > 1 means the fast path
is faster) to one JSON file.
"""
from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Callable, Iterable

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_label(device: torch.device) -> str:
    """The GPU's name, or ``cpu (<processor>)``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def default_out(name: str, device: torch.device) -> Path:
    """``bench/results/<name>-<device>.json``."""
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return RESULTS / f"{name}-{slug(label)}.json"


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


def write_rows(rows: Iterable[dict], path: os.PathLike | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(rows), indent=1) + "\n")
    return path


def print_rows(rows: Iterable[dict]) -> None:
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "n/a"
        extra = f" [{r['backend']}]" if "backend" in r else ""
        print(f"{r['name']:<58} ref {r['reference_ms']:>10.3f} ms  fast {r['fast_ms']:>10.3f} ms  {ratio}{extra}")


def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def words(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
