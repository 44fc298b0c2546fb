"""Serving exported models with ONNX Runtime (docs/design.md §1 step 6).

:func:`run_onnx` is the one place that picks the execution provider: CUDA
when it is asked for (``"cuda"`` or ``"auto"``) and ONNX Runtime reports it
available (the ``onnxruntime-gpu`` build), otherwise the CPU.  Providers are
always passed explicitly.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import InputError

__all__ = ["run_onnx", "run_session", "open_session", "choose_providers", "sniff_model_file", "PROVIDERS"]

PROVIDERS = ("auto", "cpu", "cuda")
_CPU, _CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"P6", "a PPM image"),
    (b"P5", "a PGM image"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"PK\x03\x04", "a zip archive (a .pt2 TorchInductor package or a torch.save file?)"),
    (b"{", "a JSON/text file"),
)


def sniff_model_file(path: Union[str, os.PathLike], what: str = "model") -> Path:
    """Check that ``path`` is a readable file; refuse files that are recognisably not models.

    Returns the path.  Images, .npy files and JSON are named in the error
    (``"x.png is a PNG image, not an ONNX model"``).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} file not found: {p}")
    if not p.is_file():
        raise InputError(f"{what} path is not a file: {p}")
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise InputError(f"cannot read {what} file {p}: {exc.strerror or exc}") from None
    if not head:
        raise InputError(f"{what} file {p} is empty")
    return p


def _refuse_non_onnx(p: Path) -> None:
    with open(p, "rb") as fh:
        head = fh.read(16)
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            raise InputError(f"{p} is {kind}, not an ONNX model")


def choose_providers(provider: str = "auto") -> list[str]:
    """The ONNX Runtime providers for ``provider`` = ``"auto"``, ``"cpu"`` or ``"cuda"``.

    CUDA comes first only when asked for and available; the CPU provider is
    always last as the fallback.  Asking for ``"cuda"`` where ONNX Runtime
    has no CUDA provider warns and uses the CPU.
    """
    import onnxruntime as ort

    if not isinstance(provider, str) or provider.strip().lower() not in PROVIDERS:
        raise InputError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    provider = provider.strip().lower()
    available = ort.get_available_providers()
    if provider in ("auto", "cuda") and _CUDA in available:
        return [_CUDA, _CPU]
    if provider == "cuda":
        warnings.warn("ONNX Runtime has no CUDAExecutionProvider here (install onnxruntime-gpu instead of "
                      "onnxruntime); using the CPU", stacklevel=3)
    return [_CPU]


def open_session(model_path: Union[str, os.PathLike], *, provider: str = "auto") -> Any:
    """An ``onnxruntime.InferenceSession`` for an exported model, with clear errors for bad files."""
    import onnxruntime as ort

    p = sniff_model_file(model_path)
    _refuse_non_onnx(p)
    providers = choose_providers(provider)
    opts = ort.SessionOptions()
    # Only errors are logged: a model from elsewhere may warn about things its owner chose.
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(p), sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own pybind exception types (InvalidProtobuf, Fail, ...)
        why = " ".join(str(exc).split())
        if "Protobuf parsing failed" in why or "INVALID_PROTOBUF" in why:
            raise InputError(f"{p} is not a valid ONNX model (truncated or not ONNX)") from None
        raise InputError(f"cannot load ONNX model {p}: {why[:300]}") from None


def run_onnx(model_path: Union[str, os.PathLike], *, provider: str = "auto",
             z: Optional[np.ndarray] = None) -> tuple[np.ndarray, str]:
    """Run an exported model; returns ``(image, provider_used)``.

    ``image``: (1, C, H, W) float32 in [0, 1].  With ``z`` None the model's
    stored code is used, reproducing the run's returned image (isnas-fast's
    models have no inputs); a ``z`` array (1, C_in, H, W), H and W multiples
    of 32, feeds a model that takes an input code.  ``provider_used`` is the provider ONNX Runtime actually
    runs on (e.g. ``"CPUExecutionProvider"``).
    """
    sess = open_session(model_path, provider=provider)
    return run_session(sess, model_path, z)


def run_session(sess: Any, model_path: Union[str, os.PathLike], z: Optional[np.ndarray] = None
                ) -> tuple[np.ndarray, str]:
    """Run an open ONNX Runtime session of an exported model (see :func:`run_onnx`);
    ``model_path`` names the model in error messages."""
    feed: dict[str, np.ndarray] = {}
    required = [i.name for i in sess.get_inputs()]
    optional = [i.name for i in sess.get_overridable_initializers()]
    if z is not None:
        names = required or optional
        if not names:
            raise InputError(f"{model_path} takes no input; run it without z")
        arr = np.ascontiguousarray(np.asarray(z, dtype=np.float32))
        if arr.ndim != 4 or arr.shape[0] != 1:
            raise InputError(f"z must have shape (1, C, H, W), got {arr.shape}")
        if arr.shape[2] % 32 or arr.shape[3] % 32:
            raise InputError(f"z's sides must be multiples of 32, got {arr.shape[3]}x{arr.shape[2]} px")
        feed[names[0]] = arr
    elif required:
        raise InputError(f"{model_path} needs input(s) {', '.join(required)} and has no stored default; "
                         "it was not exported by isnas-fast")
    try:
        outputs = sess.run(None, feed)
    except Exception as exc:
        why = " ".join(str(exc).split())
        raise InputError(f"running {model_path} failed: {why[:300]}") from None
    image = np.asarray(outputs[0], dtype=np.float32)
    if image.ndim != 4 or image.shape[0] != 1:
        raise InputError(f"{model_path} produced an output of shape {image.shape}, not one (1, C, H, W) image")
    return image, sess.get_providers()[0]
