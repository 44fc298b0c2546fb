"""Inference of an exported DIP network: PyTorch eager vs ONNX Runtime and the AOTInductor ``.pt2``
(docs/design.md §1 step 6, §7).

One network (``nasdip-denoise`` with a 3-channel code, BatchNorm in training
mode as DIP runs it) at ``<S>x<S>``, on the CPU whatever ``--bench-device``
says.  Groups ``export/<backend>/<genotype>/w<W>/<S>x<S>`` (``path``:
``reference`` / ``fast``): reference = PyTorch eager (``no_grad``, batch
statistics), fast = the ONNX export in ONNX Runtime (CPU provider,
``onnxruntime-cpu``) or the AOTInductor package (``aoti-pt2``; its compile
takes a minute or more: needs ``--bench-compile``).  ``extra_info`` has the
export / compile seconds and the max abs difference from eager.

Check: the exported model's output is within 1e-4 (max abs, outputs in
[0, 1]) of eager's on the same code z (measured ~1e-5 at width 16).

Options: ``--bench-size`` (default 256; a multiple of 32), ``--bench-width``
(16; the paper's is 128), ``--bench-threads`` (torch and ONNX Runtime; on a
machine shared with other work 1 gives steady times), ``--bench-compile``.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import _common as common

ARCH = "nasdip-denoise"
IN_CHANNELS = 3
TOLERANCE = 1e-4
BACKENDS = ["onnxruntime-cpu", "aoti-pt2"]


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = [(s, w) for s in common.option_list(metafunc.config, "--bench-size", 256)
                 for w in common.option_list(metafunc.config, "--bench-width", 16)]
        metafunc.parametrize("case", cases, ids=[f"w{w}-{s}" for s, w in cases], scope="module")


class Exported:
    """The network, its code, the eager forward and the exported runtimes (built on first use)."""

    def __init__(self, size: int, width: int, threads: int, folder: Path):
        from isnas_fast.dip import make_input_code
        from isnas_fast.network import build_network, resolve_architecture
        from isnas_fast.trained import TrainedRun

        torch.manual_seed(0)
        self.net = build_network(ARCH, IN_CHANNELS, 3, width)
        self.z = make_input_code(IN_CHANNELS, (size, size), seed=0)
        self.genotype = str(resolve_architecture(ARCH))
        self.run = TrainedRun(network=self.net, z=self.z, genotype=self.genotype, width=width,
                              in_channels=IN_CHANNELS, out_channels=3, task="denoise")
        self.threads, self.folder = threads, folder
        self.fns: dict = {}
        self.info: dict = {}
        self.expected = self.eager().numpy()

    def eager(self) -> torch.Tensor:
        from isnas_fast.network import batch_statistics_only

        with torch.no_grad(), batch_statistics_only(self.net) as n:
            return n(self.z)

    def backend(self, name: str):
        if name not in self.fns:
            t = time.perf_counter()
            if name == "onnxruntime-cpu":
                import onnxruntime as ort

                from isnas_fast.export import to_onnx

                path = to_onnx(self.run, self.folder / "m.onnx")
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = self.threads
                opts.log_severity_level = 3
                sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
                self.fns[name] = lambda: sess.run(None, {})[0]
                self.info[name] = {"onnx_export_s": round(time.perf_counter() - t, 2), "onnxruntime": ort.__version__}
            else:
                from isnas_fast.export import to_pt2
                from isnas_fast.export.aoti import load_pt2

                pt2 = load_pt2(to_pt2(self.run, self.folder / "m.pt2"))

                def aoti():
                    with torch.no_grad():
                        return pt2()

                self.fns[name] = aoti
                self.info[name] = {"pt2_compile_s": round(time.perf_counter() - t, 2)}
        return self.fns[name]


@pytest.fixture(scope="module")
def exported(case):
    size, width = case
    with tempfile.TemporaryDirectory(prefix="isnas-bench-export-") as d:
        yield Exported(size, width, torch.get_num_threads(), Path(d))


@pytest.mark.parametrize("path", common.PATHS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_export(exported, case, backend, path, opts, measure, request):
    size, width = case
    if backend == "aoti-pt2":
        request.getfixturevalue("needs_compile")
        request.getfixturevalue("fresh_inductor_cache")
    group = f"export/{backend}/{exported.genotype}/w{width}/{size}x{size}"
    fast = exported.backend(backend)
    diff = float(np.abs(np.asarray(fast()) - exported.expected).max())
    assert diff <= TOLERANCE, f"{group}: exported output differs from eager by {diff:.3g} > {TOLERANCE}"
    measure(exported.eager if path == "reference" else fast, torch.device("cpu"), group, path,
            reference="pytorch-eager (train-mode BatchNorm)", fast=backend, max_abs_diff=diff, bound=TOLERANCE,
            torch=torch.__version__, **exported.info[backend])
