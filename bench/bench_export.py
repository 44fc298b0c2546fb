"""Benchmark: inference latency of an exported DIP network at 256x256 (DESIGN §1 step 6, §7).

    python bench/bench_export.py                 # width 16 (CPU smoke, ~2 min: the .pt2 compile)
    python bench/bench_export.py --width 128     # the paper's width

One network (default: the NAS-DIP denoising genotype with a 3-channel code),
BatchNorm in training mode as DIP runs it, on the CPU.  Rows (one JSON file,
see bench/_common.py): ``export/<backend>/<genotype>/w<W>/<H>x<W>`` with
reference = PyTorch eager (the network as trained, ``no_grad``) and fast =
the exported model in ONNX Runtime (CPU provider) or the AOTInductor
``.pt2``.  The backends run in interleaved rounds (eager, ONNX Runtime, .pt2,
eager, ...) after warm-up so machine load hits them alike; medians.  Each
row also reports the max abs difference from eager and the export/compile
time.  The .pt2 compile takes one to a few minutes on a CPU (``--no-pt2``
skips it).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

from isnas_fast.bundle import LoadedRun
from isnas_fast.network import batch_statistics_only
from isnas_fast.dip import make_input_code
from isnas_fast.network import build_network, resolve_architecture


def _ms(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="nasdip-denoise", help="genotype 'u,bits' or baseline name")
    ap.add_argument("--width", type=int, default=16, help="channel width W (multiple of 16; the paper: 128)")
    ap.add_argument("--size", type=int, default=256, help="height = width of the code z (multiple of 32)")
    ap.add_argument("--in-channels", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="threads for both runtimes (default: torch's)")
    ap.add_argument("--no-pt2", action="store_true", help="skip the AOTInductor package (slow compile)")
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/export-cpu.json)")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    from isnas_fast.export import to_onnx, to_pt2
    from isnas_fast.export.aoti import load_pt2

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    net = build_network(args.arch, args.in_channels, 3, args.width)
    z = make_input_code(args.in_channels, (args.size, args.size), seed=0)
    genotype = str(resolve_architecture(args.arch))
    run = LoadedRun(network=net, z=z, genotype=genotype, width=args.width, in_channels=args.in_channels,
                    out_channels=3, task="denoise")

    def eager() -> torch.Tensor:
        with torch.no_grad(), batch_statistics_only(net) as n:
            return n(z)

    backends: dict[str, object] = {}
    info: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        onnx_path = to_onnx(run, Path(tmp) / "m.onnx")
        info["onnx_export_s"] = time.perf_counter() - t
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
        backends["onnxruntime-cpu"] = lambda: sess.run(None, {})[0]
        if not args.no_pt2:
            t = time.perf_counter()
            pt2 = load_pt2(to_pt2(run, Path(tmp) / "m.pt2"))
            info["pt2_compile_s"] = time.perf_counter() - t

            def aoti() -> torch.Tensor:
                with torch.no_grad():
                    return pt2()

            backends["aoti-pt2"] = aoti

        ref = eager().numpy()
        errs = {k: float(np.abs(np.asarray(fn()) - ref).max()) for k, fn in backends.items()}
        for _ in range(args.warmup):
            eager()
            for fn in backends.values():
                fn()
        times: dict[str, list[float]] = {"eager": [], **{k: [] for k in backends}}
        for _ in range(args.repeats):  # interleaved rounds
            times["eager"].append(_ms(eager))
            for k, fn in backends.items():
                times[k].append(_ms(fn))

    ref_ms = statistics.median(times["eager"])
    cpu = torch.device("cpu")
    rows = [
        common.row(f"export/{k}/{genotype}/w{args.width}/{args.size}x{args.size}", ref_ms,
                   statistics.median(times[k]), cpu, reference="pytorch-eager (train-mode BatchNorm)",
                   repeats=args.repeats, max_abs_diff=errs[k], **{key: round(v, 2) for key, v in info.items()},
                   torch=torch.__version__, onnxruntime=ort.__version__)
        for k in backends
    ]
    common.print_rows(rows)
    out = common.write_rows(rows, args.out or common.default_out("export", cpu))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
