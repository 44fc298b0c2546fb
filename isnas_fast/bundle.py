"""Run bundles: a trained DIP network with its input code, on disk (docs/design.md §1 step 6).

A bundle is a folder::

    manifest.json    format version, architecture, channels, task, sizes,
                     what an exported model reproduces, sha256 of each file
    weights.pt       the network's state_dict (torch.save of tensors only)
    z.pt             the input code z, (1, C_in, H, W) float32
    report.json      the run's report (RestoreResult.report())

Weights are loaded with ``torch.load(weights_only=True)``: no pickled code is
ever executed.  The network is rebuilt from the stored genotype, width,
channels and task name with :func:`~isnas_fast.network.build_network`.

What an exported model reproduces is ``f(z)``: the trained network's raw
output on its stored code, without the input noise of the DIP steps, with
BatchNorm in training mode (batch statistics of the one image).  DIP's
restored image is different: the exponential moving average of the raw
outputs over the run.  The manifest's ``reproduction`` section records how
far apart the two are (and their PSNR when ground truth was given).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import Tensor

from . import __version__
from .errors import InputError
from .io import atomic_write_folder, check_output_folder, load_image
from .io.files import json_text
from .network import build_network, resolve_architecture
from .quality import psnr
from .trained import Restoration, TrainedRun

__all__ = ["LoadedRun", "save_run", "load_run", "as_trained_run", "export_report", "FORMAT_NAME",
           "FORMAT_VERSION", "RunSource"]

FORMAT_NAME = "isnas-fast-run"
FORMAT_VERSION = 1
_WEIGHTS, _Z, _REPORT, _MANIFEST = "weights.pt", "z.pt", "report.json", "manifest.json"

REPRODUCES = ("f(z): the trained network's raw output on its stored input code z after the last DIP step, "
              "without input noise, BatchNorm using the batch statistics of the one image")
RESTORED = ("DIP's restored image: the exponential moving average (0.99) of the raw outputs over the run "
            "(at the detected stopping point when early stopping is on); not what an exported model computes")


@dataclass
class LoadedRun(TrainedRun):
    """A :class:`~isnas_fast.trained.TrainedRun` read from a bundle by :func:`load_run`.

    ``network`` is rebuilt in training mode (BatchNorm uses batch
    statistics); ``dip`` is None.  ``report``: the run's report dict;
    ``manifest``: the bundle's manifest; ``directory``: where it was read.
    """

    report: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    directory: Optional[Path] = None


#: What the bundle and export functions accept: a trained run (a LoadedRun is
#: one), a restoration (``restore``'s result) or a bundle folder.
RunSource = Union[TrainedRun, Restoration, str, os.PathLike]


def as_trained_run(source: RunSource) -> TrainedRun:
    """The :class:`~isnas_fast.trained.TrainedRun` of ``source``: itself, a
    restoration's ``run``, or the bundle loaded from a folder."""
    if isinstance(source, TrainedRun):
        return source
    if isinstance(source, (str, os.PathLike)):
        return load_run(source)
    run = getattr(source, "run", None)
    if not isinstance(run, TrainedRun):
        raise InputError(f"expected a trained run, a restore result or a run bundle folder, "
                         f"got {type(source).__name__}")
    return run


def _report_of(source: RunSource, run: TrainedRun) -> dict:
    if isinstance(run, LoadedRun):
        return run.report
    report = getattr(source, "report", None)
    return report() if callable(report) else {}


def _reproduction(run: TrainedRun, report: dict, final: Optional[Tensor], restored: Optional[Tensor],
                  ground_truth: Any) -> dict:
    """The manifest's ``reproduction`` section; ``final`` (f(z)) is computed here when needed and not given."""
    rec: dict[str, Any] = {"exported_output": REPRODUCES, "restored_image": RESTORED}
    if report.get("psnr") is not None:
        rec["psnr_restored"] = report["psnr"]
    if restored is None and ground_truth is None:
        return rec
    if final is None:
        final = run.output()
    y_ch = run.task == "sr" and final.shape[1] == 3
    if restored is not None and tuple(restored.shape) == tuple(final.shape):
        r = restored.detach().float().cpu()
        rec["max_abs_diff_final_vs_restored"] = round(float((final - r).abs().max()), 6)
        rec["psnr_final_vs_restored"] = round(float(psnr(final.clamp(0, 1), r.clamp(0, 1))[0]), 4)
    if ground_truth is not None:
        gt = _crop_like_restore(load_image(ground_truth).cpu(), final, run)
        if tuple(gt.shape) != tuple(final.shape):
            raise InputError(f"ground truth has shape {tuple(gt.shape)} but the network's output has "
                             f"{tuple(final.shape)}")
        rec["psnr_final_output"] = round(float(psnr(final.clamp(0, 1), gt, y_channel=y_ch)[0]), 4)
        if restored is not None and "psnr_restored" not in rec:
            rec["psnr_restored"] = round(float(psnr(restored.float().cpu().clamp(0, 1), gt, y_channel=y_ch)[0]), 4)
        rec["psnr_y_channel"] = y_ch
    return rec


def _crop_like_restore(gt: Tensor, final: Tensor, run: TrainedRun) -> Tensor:
    """Centre-crop a ground truth of the user's (uncropped) size as :func:`~isnas_fast.api.restore` does.

    restore crops the input to multiples of 32 (the low-resolution input to
    multiples of 32/f for x f super-resolution) around the centre; the same
    offsets, scaled by f, apply to the ground truth.
    """
    f = run.task_params.get("factor", 1) if run.task == "sr" else 1
    f = f if isinstance(f, int) and f >= 1 else 1
    (gh, gw), (h, w) = gt.shape[-2:], final.shape[-2:]
    if (gh, gw) == (h, w) or gh < h or gw < w or gh % f or gw % f:
        return gt
    top, left = (gh // f - h // f) // 2 * f, (gw // f - w // f) // 2 * f
    return gt[..., top : top + h, left : left + w]


def _restored_of(source: RunSource, run: TrainedRun) -> Optional[Tensor]:
    restored = getattr(source, "tensor", None)
    if restored is None and run.dip is not None:
        restored = run.dip.output
    return restored.detach().float().cpu() if isinstance(restored, Tensor) else None


def export_report(source: RunSource, *, ground_truth: Any = None) -> dict:
    """What an exported model of ``source`` reproduces, next to DIP's restored image.

    ``source``: a trained run, a restore result or a run bundle folder.
    Returns ``exported_output`` (f(z)) and ``restored_image`` (the
    EMA-smoothed result) as text; when the restored image is known, also the
    two's max abs difference and PSNR against each other; ``psnr_restored``
    when the run's report has a PSNR; ``psnr_final_output`` (PSNR of f(z),
    dB) when ground truth was given here or to :func:`save_run`.
    """
    run = as_trained_run(source)
    if isinstance(run, LoadedRun) and run.manifest.get("reproduction") and ground_truth is None:
        return dict(run.manifest["reproduction"])
    return _reproduction(run, _report_of(source, run), None, _restored_of(source, run), ground_truth)


# --------------------------------------------------------------------------
# Save
# --------------------------------------------------------------------------

def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _check_target(target: Path, overwrite: bool) -> None:
    check_output_folder(target, "run folder")
    if target.is_dir():
        if any(target.iterdir()):
            if not overwrite:
                raise InputError(f"run folder {target} exists and is not empty; pass overwrite=True to replace it")
            if not (target / _MANIFEST).is_file():
                raise InputError(f"run folder {target} is not empty and holds no {_MANIFEST}; "
                                 "refusing to replace a folder that is not a run bundle")


def save_run(source: RunSource, directory: Union[str, os.PathLike], *, overwrite: bool = False,
             ground_truth: Any = None) -> Path:
    """Save the trained network of ``source`` (a restore result or a trained run) as a run bundle.

    Written atomically: the files go into a temporary folder beside
    ``directory`` that is then renamed into place, so a crash leaves no
    partial bundle.  An existing non-empty ``directory`` is refused unless
    ``overwrite`` (and then only if it is itself a run bundle).
    ``ground_truth`` (image or path; optional; the clean image at the size
    given to ``restore``, centre-cropped here as ``restore`` crops; a
    restore result's own cropped ground truth is used when not given) adds
    ``psnr_final_output``, the PSNR of f(z), to the manifest.  Returns the
    bundle's path.
    """
    target = Path(directory)
    _check_target(target, overwrite)
    run = as_trained_run(source)
    if ground_truth is None:
        ground_truth = getattr(source, "ground_truth", None)
    z = run.z.detach().float().cpu().contiguous()
    if z.ndim != 4 or z.shape[0] != 1 or z.shape[1] != run.in_channels:
        raise InputError(f"the run's input code has shape {tuple(z.shape)}, expected (1, {run.in_channels}, H, W)")
    report = _report_of(source, run)
    restored = _restored_of(source, run)
    final = run.output()
    state = {k: v.detach().cpu().contiguous().clone() for k, v in run.network.state_dict().items()}
    reloaded = isinstance(run, LoadedRun) and run.manifest.get("reproduction")
    manifest: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "genotype": run.genotype,
        "width": run.width,
        "in_channels": run.in_channels,
        "out_channels": run.out_channels,
        "task": {"name": run.task, "params": run.task_params},
        "sizes": {"z": list(z.shape), "output": list(final.shape)},
        "weights_format": "torch.save state_dict (load with torch.load(weights_only=True))",
        "reproduction": (dict(run.manifest["reproduction"]) if reloaded and ground_truth is None
                         else _reproduction(run, report, final, restored, ground_truth)),
        "isnas_fast_version": __version__,
        "torch_version": torch.__version__,
        "files": {},
    }
    contents = {
        _WEIGHTS: _torch_bytes(state),
        _Z: _torch_bytes(z),
        _REPORT: json_text(report).encode("utf-8"),
    }
    for name, data in contents.items():
        manifest["files"][name] = {"sha256": _sha256_bytes(data), "bytes": len(data)}
    contents[_MANIFEST] = json_text(manifest).encode("utf-8")
    return atomic_write_folder(target, contents, replace=overwrite, what="run bundle")


# --------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------

def _damaged(directory: Path, what: str) -> InputError:
    return InputError(f"run bundle {directory} is damaged: {what}")


def _shape(value: Any, name: str, directory: Path) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) != 4 or not all(isinstance(v, int) and v > 0 for v in value):
        raise _damaged(directory, f"manifest field sizes.{name} must be 4 positive integers, got {value!r}")
    return tuple(value)


def _int_field(manifest: dict, key: str, directory: Path) -> int:
    v = manifest.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _damaged(directory, f"manifest field {key!r} must be a positive integer, got {v!r}")
    return v


def load_run(directory: Union[str, os.PathLike]) -> LoadedRun:
    """Load a run bundle written by :func:`save_run`.

    Every file is checked against the manifest's sha256; a missing file, bad
    JSON, a checksum mismatch or weights that do not fit the stored
    architecture raise :class:`InputError` naming the problem.
    """
    d = Path(directory)
    if not d.exists():
        raise InputError(f"run bundle not found: {d}")
    if not d.is_dir():
        raise InputError(f"run bundle must be a folder (as written by save_run / --save-run), got the file {d}")
    mpath = d / _MANIFEST
    if not mpath.is_file():
        raise InputError(f"{d} is not a run bundle: {_MANIFEST} is missing")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(d, f"{_MANIFEST} is not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise _damaged(d, f"{_MANIFEST} is not an isnas-fast run manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"run bundle {d} has format version {version!r}; this isnas-fast reads version "
                         f"{FORMAT_VERSION}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise _damaged(d, f"{_MANIFEST} lists no files")
    for name in (_WEIGHTS, _Z, _REPORT):
        entry = files.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise _damaged(d, f"{_MANIFEST} has no checksum for {name}")
        p = d / name
        if not p.is_file():
            raise _damaged(d, f"{name} is missing")
        if _sha256(p) != entry["sha256"]:
            raise _damaged(d, f"{name} does not match its sha256 in {_MANIFEST} (modified or truncated)")

    genotype = manifest.get("genotype")
    if not isinstance(genotype, str):
        raise _damaged(d, f"manifest field 'genotype' must be text, got {genotype!r}")
    try:
        arch = resolve_architecture(genotype)
    except InputError as exc:
        raise _damaged(d, f"bad genotype: {exc}") from None
    width = _int_field(manifest, "width", d)
    in_ch = _int_field(manifest, "in_channels", d)
    out_ch = _int_field(manifest, "out_channels", d)
    task = manifest.get("task")
    if not isinstance(task, dict) or not isinstance(task.get("name"), str):
        raise _damaged(d, "manifest field 'task' must be {\"name\": ..., \"params\": {...}}")
    sizes = manifest.get("sizes")
    if not isinstance(sizes, dict):
        raise _damaged(d, "manifest field 'sizes' is missing")
    z_shape = _shape(sizes.get("z"), "z", d)
    out_shape = _shape(sizes.get("output"), "output", d)
    if z_shape[1] != in_ch or out_shape[1] != out_ch or z_shape[2:] != out_shape[2:]:
        raise _damaged(d, f"sizes z {list(z_shape)} / output {list(out_shape)} do not agree with "
                          f"{in_ch} input and {out_ch} output channels")

    try:
        report = json.loads((d / _REPORT).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(d, f"{_REPORT} is not valid JSON ({str(exc).splitlines()[0]})") from None
    state = _load_tensors(d, _WEIGHTS)
    z = _load_tensors(d, _Z)
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise _damaged(d, f"{_WEIGHTS} does not hold a state_dict of tensors")
    if not isinstance(z, Tensor) or tuple(z.shape) != z_shape or not z.is_floating_point():
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise _damaged(d, f"{_Z} holds {shape}, expected a float tensor of shape {z_shape}")
    try:
        net = build_network(arch, in_ch, out_ch, width, task=task["name"])
    except InputError as exc:
        raise _damaged(d, f"cannot rebuild the network: {exc}") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        why = " ".join(str(exc).split())
        raise _damaged(d, f"{_WEIGHTS} does not fit the {genotype} network: {why[:300]}") from None
    return LoadedRun(
        network=net.train(), z=z.float().contiguous(), genotype=genotype, width=width, in_channels=in_ch,
        out_channels=out_ch, task=task["name"], task_params=dict(task.get("params") or {}),
        report=report if isinstance(report, dict) else {}, manifest=manifest, directory=d,
    )


def _load_tensors(d: Path, name: str) -> Any:
    try:
        return torch.load(d / name, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; any of them means a damaged file
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _damaged(d, f"cannot read {name}: {why[:200]}") from None
