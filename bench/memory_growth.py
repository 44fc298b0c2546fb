"""Resident memory along a long DIP run: does it grow with the step count?

One 256x256 denoising run (NAS-DIP's architecture, width 16, 32-channel
code, sigma 25, no early stop, one thread, eager): VmRSS and VmHWM (peak
resident) from /proc/self/status after steps 1, 5, 25, 50, 100, ..., and
after the run (which builds its averaged network).  Linux only.  Prints one
JSON line per checkpoint; with ``--out`` also writes them as JSON.

    .venv/bin/python bench/memory_growth.py [--steps 300] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from isnas_fast.dip import DIPSettings, fit_dip
from isnas_fast.network import build_network
from isnas_fast.tasks import Denoise


def memory_mib() -> dict[str, int]:
    """This process's VmRSS and VmHWM in MiB."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) // 1024
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    clean = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 256, 256, generator=g), 5, 1, 2)
    obs = Denoise(25).corrupt(clean, seed=0)
    net = build_network("nasdip-denoise", 32, 3, width=16, task="denoise")
    marks = {1, 5, 25, 50} | set(range(100, args.steps + 1, 50))
    rows = []

    def record(it: int, loss: float) -> None:
        if it in marks:
            rows.append({"step": it, **memory_mib()})
            print(json.dumps(rows[-1]), flush=True)

    fit_dip(net, obs, DIPSettings(args.steps), seed=0, quiet=True, compile=False, callback=record)
    rows.append({"step": "after the run", **memory_mib()})
    print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
