"""Deployment: ONNX export served by ONNX Runtime, a compiled TorchInductor package, a C++ runner.

docs/design.md §1 step 6.  Installed as ``isnas_fast.export``.

* :func:`to_onnx` / :func:`run_onnx` — ONNX model (no inputs; the trained
  code is a constant) and ONNX Runtime serving.
* :func:`to_pt2` / :func:`run_pt2` — AOTInductor ``.pt2`` package (no input;
  z baked in), also run by the C++ runner in ``export/cpp``.
* :func:`export_report` — what the exported model reproduces (the run's
  returned image) and how far it is from what ``restore`` returned.

Every exported model keeps DIP's train-mode BatchNorm (batch statistics of
the one image): see :mod:`isnas_fast.export.module`.
"""
from __future__ import annotations

from ..bundle import export_report
from .aoti import load_pt2, run_pt2, to_pt2
from .module import BatchStatNorm2d, DeployModule, NoInputModule, with_batch_statistics
from .onnx_export import to_onnx
from .serve import choose_providers, open_session, run_onnx

__all__ = [
    "to_onnx", "run_onnx", "open_session", "choose_providers", "to_pt2", "run_pt2", "load_pt2", "export_report",
    "BatchStatNorm2d", "with_batch_statistics", "DeployModule", "NoInputModule",
]
