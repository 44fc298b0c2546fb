"""ONNX export of a trained DIP network (docs/design.md §1 step 6).

The graph has one input ``z`` (1, C_in, height, width) with dynamic height
and width, and one output ``image`` (1, C_out, height, width).  The trained
code z is stored in the model as an initializer *of the same name*: since
ONNX IR 4 an initializer named like a graph input is that input's default
value, so

* running the model with no feed at all reproduces the network's final
  output f(z) (ONNX Runtime: ``session.run(None, {})``; ``z`` is listed by
  ``get_overridable_initializers()``, not by ``get_inputs()``), and
* feeding ``z`` of another size (multiples of 32) runs the same network on a
  new code — the dynamic height and width.

BatchNorm keeps DIP's training semantics (batch statistics of the one image,
see :mod:`isnas_fast.export.module`).

Exporter: the TorchScript-based exporter (``dynamo=False``).  The dynamo
exporter needs ``onnxscript``, which is not a dependency of this package;
the TorchScript one handles every op of the search space (reflection pad,
PixelShuffle -> DepthToSpace, bilinear/bicubic/nearest Resize,
ConvTranspose, grouped Conv) at opsets 11–20, and the tests check parity with
PyTorch on ONNX Runtime.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, Union

import torch

from .. import __version__
from ..bundle import RunSource, as_trained_run, export_report
from ..errors import InputError
from ..io import atomic_write_bytes, check_output_path
from ..io.files import json_text
from ..trained import TrainedRun
from .module import DeployModule

__all__ = ["to_onnx", "INPUT_NAME", "OUTPUT_NAME"]

INPUT_NAME = "z"
OUTPUT_NAME = "image"
_MIN_OPSET, _MAX_OPSET = 11, 20  # DepthToSpace CRD / cubic Resize need 11; the TorchScript exporter stops at 20


def _metadata(run: TrainedRun) -> dict[str, str]:
    rec = export_report(run)
    return {
        "producer": "isnas-fast",
        "isnas_fast.version": __version__,
        "isnas_fast.genotype": run.genotype,
        "isnas_fast.width": str(run.width),
        "isnas_fast.task": json_text({"name": run.task, "params": run.task_params}, indent=None),
        "isnas_fast.input": (f"optional '{INPUT_NAME}' (1, {run.in_channels}, H, W), H and W multiples of 32; "
                             f"default: the trained code, {run.size[0]}x{run.size[1]}"),
        "isnas_fast.reproduces": rec["exported_output"],
        "isnas_fast.reproduction": json_text(rec, indent=None),
    }


def to_onnx(run: RunSource, path: Union[str, os.PathLike], *, opset: int = 17) -> Path:
    """Export the trained network of ``run`` to an ONNX file at ``path`` (written atomically).

    ``run``: a :class:`~isnas_fast.trained.TrainedRun` (a loaded bundle is
    one), a restore result or a run bundle folder.  ``opset``: ONNX opset, 11–20.  The model needs no input
    to reproduce f(z); its optional input ``z`` has dynamic height and width
    (module docstring).  The model is checked with ``onnx.checker`` before it
    is written.  Returns ``path``.
    """
    import onnx
    from onnx import numpy_helper

    if isinstance(opset, bool) or not isinstance(opset, int) or not _MIN_OPSET <= opset <= _MAX_OPSET:
        raise InputError(f"ONNX opset must be an integer in [{_MIN_OPSET}, {_MAX_OPSET}], got {opset!r}")
    out = check_output_path(path, "ONNX model", (".onnx",))
    r = as_trained_run(run)
    module = DeployModule(r.network)
    z = r.z.detach().to("cpu", torch.float32).contiguous()
    buf = io.BytesIO()
    dims = {2: "height", 3: "width"}
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated, and traces shape
        # arithmetic (dip-skip's centre crop) with TracerWarnings: both expected here.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module, (z,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: dims, OUTPUT_NAME: dims},
            )
        except Exception as exc:  # exporter failures have many types; report one line
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"ONNX export of {r.genotype} failed: {why}") from None
    model = onnx.load_from_string(buf.getvalue())
    # The trained code becomes the default value of the input z (IR >= 4 semantics).
    model.graph.initializer.append(numpy_helper.from_array(z.numpy(), INPUT_NAME))
    for key, value in _metadata(r).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = ("isnas-fast DIP network " + r.genotype + ": run with no input to get the restored "
                        "network output f(z); optional input z (dynamic H, W).")
    onnx.checker.check_model(model, full_check=True)
    return atomic_write_bytes(out, model.SerializeToString())
