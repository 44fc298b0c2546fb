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

What the bundle and an exported model reproduce is the image the run
returned: its network is the run's
:class:`~isnas_fast.dip.averaging.AveragedNetwork` (block-averaged weights
over the steps the estimate averages, each member on one of its noisy
inputs; the manifest's ``members`` says how many), evaluated on the stored
code without autocast, BatchNorm in training mode (batch statistics of the
one image), then, for a denoising run that has one, read through its
clipped-noise readout (the manifest's ``readout_points``: the table's
length; format version 3).  A blended run (``blend``; format version 4)
holds two averaged networks side by side, the run's own on ``z`` and its
partner's (the manifest's ``partner``: architecture, width, channels,
members) on its own code, stored with the weights as ``code_1``, and
serves their weighted mean (``weights``).  An anchored super-resolution
(``anchor``; format version 5) holds its starts' merged averaged network,
the bicubic image ``anchor`` and the weight ``weight``, and serves
``weight * network(z) + (1 - weight) * anchor``.  The manifest's
``reproduction`` section says so and records how far the served image is
from the returned one (0 for one run; an ensemble of several runs,
``ensemble`` > 1, returns their weighted mean, which one exported network
does not compute).  Format version 1 bundles, whose
network is the last step's and reproduces its raw output f(z), still load.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import Tensor

from .versions import __version__
from .errors import InputError
from .io import atomic_write_folder, check_output_folder, load_image
from .io.files import json_text
from .network import build_network, resolve_architecture
from .dip.anchor import AnchoredNetwork
from .dip.averaging import AveragedNetwork
from .dip.blend import BlendedNetwork
from .dip.readout import MAX_POINTS as MAX_READOUT_POINTS
from .dip.readout import check_readout
from .quality import psnr
from .tasks import task_class
from .trained import Restoration, TrainedRun

__all__ = ["LoadedRun", "save_run", "load_run", "as_trained_run", "export_report", "FORMAT_NAME",
           "FORMAT_VERSION", "RunSource"]

FORMAT_NAME = "isnas-fast-run"
FORMAT_VERSION = 5
#: Format versions load_run reads (1: a plain network, the last step's weights).
READ_VERSIONS = (1, 2, 3, 4, 5)
#: What a manifest's ``anchor`` may name (format version 5).
ANCHOR_NAMES = ("bicubic",)
#: Most members of an averaged network a bundle may describe.
MAX_MEMBERS = 64
_WEIGHTS, _Z, _REPORT, _MANIFEST = "weights.pt", "z.pt", "report.json", "manifest.json"

REPRODUCES = ("the image the run returned: sum_j c_j f_{w_j}(z + n_j), the run's averaged network on its stored "
              "code z -- w_j the mean weights of block j of consecutive DIP steps inside the averaged window "
              "(the early stop's window, or the EMA's steps), n_j one of that block's input noises, c_j the "
              "block's share -- without autocast, BatchNorm using the batch statistics of the one image")
REPRODUCES_PLAIN = ("f(z): the network's output on its stored input code z, without input noise, BatchNorm "
                    "using the batch statistics of the one image")
READ_THROUGH = (", then read through the clipped-noise readout stored with the weights (a table read by linear "
                "interpolation: the bias clip(x + n) puts on dark and bright regions removed)")
BLENDED = ("; blended: the weighted mean (the stored weights) of that image and the partner run's, computed the "
           "same way by the partner's averaged network on its own stored code")
ANCHORED = ("; anchored: the stored anchor image (bicubic upsampling of the low-resolution input) plus the "
            "stored weight times that image's difference from it")
RESTORED = ("restore's returned image: the same network's output (with ensemble > 1, the weighted mean of "
            "several runs' images, which one exported network does not compute)")


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
    first = _own_network(run.network)
    served = REPRODUCES if isinstance(first, AveragedNetwork) else REPRODUCES_PLAIN
    if _readout_points(first) is not None:
        served += READ_THROUGH
    if isinstance(run.network, BlendedNetwork):
        served += BLENDED
    if isinstance(run.network, AnchoredNetwork):
        served += ANCHORED
    rec: dict[str, Any] = {"exported_output": served, "restored_image": RESTORED}
    if run.dip is not None and run.dip.averaged_over:
        rec["averaged_over"] = run.dip.averaged_over
    if report.get("psnr") is not None:
        rec["psnr_restored"] = report["psnr"]
    if restored is None and ground_truth is None:
        return rec
    if final is None:
        final = run.output()
    task = task_class(run.task)
    if restored is not None and tuple(restored.shape) == tuple(final.shape):
        r = restored.detach().float().cpu()
        rec["max_abs_diff_final_vs_restored"] = round(float((final - r).abs().max()), 6)
        rec["psnr_final_vs_restored"] = round(float(psnr(final.clamp(0, 1), r.clamp(0, 1))[0]), 4)
    if ground_truth is not None:
        gt = _crop_like_restore(load_image(ground_truth).cpu(), final, run)
        if tuple(gt.shape) != tuple(final.shape):
            raise InputError(f"ground truth has shape {tuple(gt.shape)} but the network's output has "
                             f"{tuple(final.shape)}")
        rec["psnr_final_output"] = round(float(task.psnr(final.clamp(0, 1), gt)[0]), 4)
        if restored is not None and "psnr_restored" not in rec:
            rec["psnr_restored"] = round(float(task.psnr(restored.float().cpu().clamp(0, 1), gt)[0]), 4)
        rec["psnr_y_channel"] = task.psnr_on_y(int(final.shape[1]))
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
    if (getattr(source, "search_info", None) or {}).get("tiles"):
        raise InputError("this image was restored in tiles, one network each; a run bundle holds one network "
                         "(restore without --tile, on a device that holds the whole image, to save it)")
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
    first = _own_network(run.network)
    manifest: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "genotype": run.genotype,
        "width": run.width,
        "in_channels": run.in_channels,
        "out_channels": run.out_channels,
        "task": {"name": run.task, "params": run.task_params},
        "sizes": {"z": list(z.shape), "output": [1, run.out_channels, *z.shape[2:]]},
        "crop": list(run.crop) if run.crop is not None else None,
        "members": len(first.members) if isinstance(first, AveragedNetwork) else None,
        "readout_points": _readout_points(first),
        "partner": _partner_entry(run),
        "anchor": _anchor_entry(run),
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


def _own_network(network: Any) -> Any:
    """The run's own network: a blend's first part, an anchored run's merged starts, else the
    network itself."""
    if isinstance(network, AnchoredNetwork):
        return network.network
    return network.parts[0] if isinstance(network, BlendedNetwork) else network


def _anchor_entry(run: TrainedRun) -> Optional[dict]:
    """The manifest's ``anchor`` of an anchored run (None for any other)."""
    net = run.network
    if not isinstance(net, AnchoredNetwork):
        return None
    name = net.name
    if run.task != "sr" or not isinstance(net.network, AveragedNetwork) or name not in ANCHOR_NAMES:
        raise InputError("a run bundle holds an anchored super-resolution run: the starts' averaged network "
                         "shrunk toward bicubic upsampling")
    return {"name": name, "weight": round(float(net.weight), 6)}


def _partner_entry(run: TrainedRun) -> Optional[dict]:
    """The manifest's ``partner`` of a blended run (None for any other)."""
    net = run.network
    if not isinstance(net, BlendedNetwork):
        return None
    other = net.parts[1]
    if run.partner is None or len(net.parts) != 2 or not isinstance(other, AveragedNetwork) \
            or not isinstance(net.parts[0], AveragedNetwork):
        raise InputError("a run bundle holds a blend of two runs' averaged networks, with the partner's run")
    p = run.partner
    return {"genotype": p.genotype, "width": p.width, "in_channels": p.in_channels,
            "members": len(other.members), "readout_points": _readout_points(other)}


# --------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------
#
# A bundle may come from anyone, so load_run checks everything it can before
# it allocates: the manifest is read with a size and nesting cap and every
# field is type- and range-checked; the expected state_dict is derived from
# the manifest on the meta device (no memory); every file must be a regular
# file directly inside the bundle (no symlink), no larger than the manifest
# implies, and match its sha256; the torch files must be uncompressed zip
# archives (no decompression bombs) before torch.load(weights_only=True)
# reads them; every tensor must be a plain contiguous tensor that owns
# exactly its storage (no stride-0 or overlapping views) with the shape and
# dtype the rebuilt network expects.

#: Largest manifest.json read, bytes.
MAX_MANIFEST_BYTES = 1 << 20
#: Largest report.json read, bytes.
MAX_REPORT_BYTES = 16 << 20
#: Deepest nesting of JSON arrays/objects accepted in manifest.json and report.json.
MAX_JSON_DEPTH = 32
#: Widest network a bundle may describe (the network's weights grow with width²: about 430 MB at 512).
MAX_WIDTH = 512
#: Most input-code channels a bundle may describe (searched networks use the image's 1 or 3,
#: the named baselines 32).
MAX_IN_CHANNELS = 64
#: Output channels of an image network: grey or RGB.
OUT_CHANNELS = (1, 3)
#: Most pixels (H x W) of z and of the output, far beyond what a DIP run fits in memory.
MAX_PIXELS = 1 << 26
#: Most entries in the manifest's file list, and the size cap of a listed file load_run does not read.
MAX_FILES, MAX_OTHER_FILE_BYTES = 16, 256 << 20
#: Room a torch.save file takes beyond its tensors' bytes: zip headers and the pickle, per tensor and in all.
_TORCH_FILE_SLACK, _TORCH_TENSOR_SLACK = 64 << 10, 1 << 10
_MAX_GENOTYPE_CHARS = 200
_REQUIRED_FILES = (_WEIGHTS, _Z, _REPORT)


def _damaged(directory: Path, what: str) -> InputError:
    return InputError(f"run bundle {directory} is damaged: {what}")


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (manifest values can be anything)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _shape(value: Any, name: str, directory: Path) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) != 4 or not all(_is_int(v) and v > 0 for v in value):
        raise _damaged(directory, f"manifest field sizes.{name} must be 4 positive integers, got {_short(value)}")
    return tuple(value)


def _int_field(manifest: dict, key: str, directory: Path, low: int, high: int, step: int = 1) -> int:
    v = manifest.get(key)
    if not _is_int(v) or not low <= v <= high or v % step:
        what = f" multiple of {step}" if step > 1 else ""
        raise _damaged(directory, f"manifest field {key!r} must be a positive integer{what} from {low} to {high}, "
                                  f"got {_short(v)}")
    return v


def _plain_name(name: Any) -> bool:
    """A file name with no folder part: what a bundle's files are."""
    return (isinstance(name, str) and 0 < len(name) <= 255 and name not in (".", "..")
            and not any(c in name for c in "/\\:\0"))


def _open_member(d: Path, name: str, limit: int) -> tuple[Any, int]:
    """Open ``d/name`` for reading: a regular file directly inside ``d`` (not a symlink), at most ``limit`` bytes.

    Returns the open binary file and its size in bytes.
    """
    path = d / name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise _damaged(d, f"{name} is missing") from None
    except OSError as exc:
        raise _damaged(d, f"cannot read {name}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise _damaged(d, f"{name} is a symbolic link; a bundle's files must be regular files inside it")
    if not stat.S_ISREG(st.st_mode):
        raise _damaged(d, f"{name} is not a regular file")
    try:
        inside = path.resolve(strict=True).parent == d.resolve(strict=True)
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise _damaged(d, f"{name} is not inside the bundle folder")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _damaged(d, f"cannot read {name}: {exc.strerror or exc}") from None
    fh = os.fdopen(fd, "rb")
    st = os.fstat(fh.fileno())  # the file actually opened, not the name checked above
    if not stat.S_ISREG(st.st_mode):
        fh.close()
        raise _damaged(d, f"{name} is not a regular file")
    if st.st_size > limit:
        fh.close()
        raise _damaged(d, f"{name} is {st.st_size} bytes; at most {limit} are read for it")
    return fh, st.st_size


def _sha256_file(fh: Any) -> str:
    h = hashlib.sha256()
    fh.seek(0)
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)
    fh.seek(0)
    return h.hexdigest()


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(f"the key {_short(k, 40)} appears twice")
        out[k] = v
    return out


def _json_depth(value: Any) -> int:
    """Nesting depth of arrays/objects in a parsed JSON value (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _read_json(d: Path, name: str, limit: int) -> Any:
    """Parse ``d/name`` as JSON: at most ``limit`` bytes, UTF-8, no repeated keys, nesting within MAX_JSON_DEPTH."""
    fh, _ = _open_member(d, name, limit)
    with fh:
        data = fh.read(limit + 1)
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise _damaged(d, f"{name} is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, repeated keys, over-long integers
        lines = str(exc).splitlines()
        raise _damaged(d, f"{name} is not valid JSON ({lines[0][:200] if lines else type(exc).__name__})") from None
    if _json_depth(value) > MAX_JSON_DEPTH:
        raise _damaged(d, f"{name} is nested more than {MAX_JSON_DEPTH} levels deep")
    return value


@dataclass(frozen=True)
class _Spec:
    """The checked manifest: what the bundle claims to hold."""

    genotype: str
    arch: Any
    width: int
    in_channels: int
    out_channels: int
    task: str
    task_params: dict
    z_shape: tuple[int, ...]
    files: dict
    members: Optional[int] = None
    readout_points: Optional[int] = None
    partner: Optional["_Spec"] = None
    anchor: Optional[str] = None


def _readout_points(network: Any) -> Optional[int]:
    """The length of an averaged network's readout table, or None when it has none."""
    readout = getattr(network, "readout", None) if isinstance(network, AveragedNetwork) else None
    return None if readout is None else int(readout.shape[0])


def _check_task(d: Path, task: Any) -> tuple[str, dict]:
    """The task's canonical name and its parameters, checked with :func:`~isnas_fast.tasks.make_task`."""
    from .tasks import make_task

    if not isinstance(task, dict) or not isinstance(task.get("name"), str):
        raise _damaged(d, "manifest field 'task' must be {\"name\": ..., \"params\": {...}}")
    params = task.get("params")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise _damaged(d, f"manifest field task.params must be an object of the task's parameters, "
                          f"got {type(params).__name__}")
    if len(task["name"]) > 40:
        raise _damaged(d, f"manifest task: unknown task {_short(task['name'])}")
    try:
        name = make_task(task["name"]).name
        if name == "inpaint" and params.get("mask") is not None:
            # a user's mask is not stored, only how much of the image it hid
            missing = params.get("missing_percent")
            if params["mask"] != "user" or params.get("p") is not None or set(params) - {"p", "mask",
                                                                                         "missing_percent"}:
                raise InputError(f"inpainting parameters must be p, or mask 'user' with missing_percent, "
                                 f"got {_short(params)}")
            if isinstance(missing, bool) or not isinstance(missing, (int, float)) or not 0 <= missing <= 100:
                raise InputError(f"missing_percent must be a percentage, got {_short(missing)}")
        else:
            make_task(name, **params)
    except InputError as exc:
        raise _damaged(d, f"manifest task: {str(exc)[:200]}") from None
    return name, dict(params)


def _check_manifest(d: Path, manifest: Any) -> _Spec:
    """Check every manifest field load_run uses (types, ranges, agreement) before anything is allocated."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise _damaged(d, f"{_MANIFEST} is not an isnas-fast run manifest")
    version = manifest.get("format_version")
    if not _is_int(version) or version not in READ_VERSIONS:
        raise InputError(f"run bundle {d} has format version {_short(version)}; this isnas-fast reads versions "
                         f"{', '.join(map(str, READ_VERSIONS))}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise _damaged(d, f"{_MANIFEST} lists no files")
    if len(files) > MAX_FILES:
        raise _damaged(d, f"{_MANIFEST} lists {len(files)} files; a bundle has at most {MAX_FILES}")
    for name, entry in files.items():
        if not _plain_name(name):
            raise _damaged(d, f"{_MANIFEST} lists the file {_short(name)}, which is not a plain file name "
                              "inside the bundle")
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise _damaged(d, f"{_MANIFEST} has no checksum for {name}")
    for name in _REQUIRED_FILES:
        if name not in files:
            raise _damaged(d, f"{_MANIFEST} has no checksum for {name}")

    genotype, arch, width, in_ch = _network_fields(d, manifest, "")
    out_ch = manifest.get("out_channels")
    if not _is_int(out_ch) or out_ch not in OUT_CHANNELS:
        raise _damaged(d, f"manifest field 'out_channels' must be 1 or 3 (a grey or RGB image), got {_short(out_ch)}")
    task, params = _check_task(d, manifest.get("task"))
    sizes = manifest.get("sizes")
    if not isinstance(sizes, dict):
        raise _damaged(d, "manifest field 'sizes' is missing")
    z_shape = _shape(sizes.get("z"), "z", d)
    out_shape = _shape(sizes.get("output"), "output", d)
    if z_shape[0] != 1 or out_shape[0] != 1:
        raise _damaged(d, f"sizes z {list(z_shape)} / output {list(out_shape)} must hold one image (batch 1)")
    if z_shape[1] != in_ch or out_shape[1] != out_ch or z_shape[2:] != out_shape[2:]:
        raise _damaged(d, f"sizes z {list(z_shape)} / output {list(out_shape)} do not agree with "
                          f"{in_ch} input and {out_ch} output channels")
    if z_shape[2] * z_shape[3] > MAX_PIXELS:
        raise _damaged(d, f"sizes claim a {z_shape[3]}x{z_shape[2]} image; at most {MAX_PIXELS} pixels are read")
    members = None
    if version >= 2 and manifest.get("members") is not None:
        members = _int_field(manifest, "members", d, 1, MAX_MEMBERS)
        if members * z_shape[2] * z_shape[3] > MAX_PIXELS:
            raise _damaged(d, f"{members} members' input noises of {z_shape[3]}x{z_shape[2]} exceed "
                              f"{MAX_PIXELS} pixels")
    readout_points = None
    if version >= 3 and manifest.get("readout_points") is not None:
        if members is None or task != "denoise":
            raise _damaged(d, "manifest field 'readout_points' applies only to a denoising run's averaged network")
        readout_points = _int_field(manifest, "readout_points", d, 2, MAX_READOUT_POINTS)
    partner = None
    if version >= 4 and manifest.get("partner") is not None:
        if members is None:
            raise _damaged(d, "manifest field 'partner' needs the run's own averaged network ('members')")
        partner = _check_partner(d, manifest["partner"], task, out_ch, z_shape, members)
    anchor = None
    if version >= 5 and manifest.get("anchor") is not None:
        entry = manifest["anchor"]
        anchor = entry.get("name") if isinstance(entry, dict) else None
        if anchor not in ANCHOR_NAMES:
            raise _damaged(d, f"manifest field 'anchor' must name one of {', '.join(ANCHOR_NAMES)}, "
                              f"got {_short(entry)}")
        if task != "sr" or members is None or partner is not None:
            raise _damaged(d, "manifest field 'anchor' applies only to a super-resolution run's averaged network")
    return _Spec(genotype=genotype, arch=arch, width=width, in_channels=in_ch, out_channels=out_ch, task=task,
                 task_params=params, z_shape=z_shape, files=files, members=members, readout_points=readout_points,
                 partner=partner, anchor=anchor)


def _network_fields(d: Path, fields: dict, prefix: str) -> tuple[str, Any, int, int]:
    """The genotype (text), its architecture, the width and the input channels that
    ``fields`` name under ``prefix`` + ``genotype`` / ``width`` / ``in_channels``, checked."""
    key = prefix + "genotype"
    genotype = fields.get(key)
    if not isinstance(genotype, str) or len(genotype) > _MAX_GENOTYPE_CHARS:
        raise _damaged(d, f"manifest field {key!r} must be text, got {_short(genotype)}")
    try:
        arch = resolve_architecture(genotype)
    except InputError as exc:
        raise _damaged(d, f"bad {prefix}genotype: {exc}") from None
    width = _int_field(fields, prefix + "width", d, 16, MAX_WIDTH, 16)
    in_ch = _int_field(fields, prefix + "in_channels", d, 1, MAX_IN_CHANNELS)
    return genotype, arch, width, in_ch


def _check_partner(d: Path, entry: Any, task: str, out_ch: int, z_shape: tuple[int, ...], members: int) -> _Spec:
    """The checked ``partner`` of a blended run's manifest: an averaged network of its own
    architecture, width, channels and members, on a code of the run's size."""
    if not isinstance(entry, dict):
        raise _damaged(d, f"manifest field 'partner' must be an object, got {_short(entry)}")
    fields = {f"partner.{k}": v for k, v in entry.items() if isinstance(k, str)}
    genotype, arch, width, in_ch = _network_fields(d, fields, "partner.")
    k = _int_field(fields, "partner.members", d, 1, MAX_MEMBERS)
    if (members + k) * z_shape[2] * z_shape[3] > MAX_PIXELS:
        raise _damaged(d, f"{members + k} members' input noises of {z_shape[3]}x{z_shape[2]} exceed "
                          f"{MAX_PIXELS} pixels")
    readout_points = None
    if entry.get("readout_points") is not None:
        if task != "denoise":
            raise _damaged(d, "manifest field partner.readout_points applies only to a denoising run")
        readout_points = _int_field(fields, "partner.readout_points", d, 2, MAX_READOUT_POINTS)
    return _Spec(genotype=genotype, arch=arch, width=width, in_channels=in_ch, out_channels=out_ch, task=task,
                 task_params={}, z_shape=(1, in_ch, *z_shape[2:]), files={}, members=k, readout_points=readout_points)


def _crop_field(d: Path, crop: Any, z_shape: tuple[int, ...]) -> Optional[tuple[int, int, int, int]]:
    """The manifest's ``crop`` ([top, left, height, width] of the user's image in the output) or None."""
    if crop is None:
        return None
    h, w = z_shape[2], z_shape[3]
    if not isinstance(crop, list) or len(crop) != 4 or not all(_is_int(v) for v in crop):
        raise _damaged(d, f"manifest field 'crop' must be [top, left, height, width], got {_short(crop)}")
    top, left, ch, cw = crop
    if top < 0 or left < 0 or ch < 1 or cw < 1 or top + ch > h or left + cw > w:
        raise _damaged(d, f"manifest field 'crop' {crop} does not lie inside the {w}x{h} output")
    return int(top), int(left), int(ch), int(cw)


def _expected_state(d: Path, spec: _Spec) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Name -> (shape, dtype) of the state_dict of the manifest's network, built on the meta device (no memory)."""
    if spec.anchor is not None:
        own = _expected_state(d, replace(spec, anchor=None))
        state = {f"network.{k}": v for k, v in own.items()}
        state["anchor"] = ((1, spec.out_channels, *spec.z_shape[2:]), torch.float32)
        state["weight"] = ((), torch.float32)
        return state
    if spec.partner is not None:
        own = _expected_state(d, replace(spec, partner=None))
        other = _expected_state(d, spec.partner)
        state = {**{f"parts.0.{k}": v for k, v in own.items()}, **{f"parts.1.{k}": v for k, v in other.items()}}
        state["code_1"] = (spec.partner.z_shape, torch.float32)
        state["weights"] = ((2,), torch.float32)
        return state
    try:
        net = build_network(spec.arch, spec.in_channels, spec.out_channels, spec.width, task=spec.task,
                            device="meta")
    except InputError as exc:
        raise _damaged(d, f"cannot rebuild the network: {exc}") from None
    one = {k: (tuple(v.shape), v.dtype) for k, v in net.state_dict().items()}
    if spec.members is None:
        return one
    k = spec.members
    state = {f"members.{j}.{name}": v for j in range(k) for name, v in one.items()}
    state["offsets"] = ((k, *spec.z_shape[1:]), torch.float32)
    state["coefficients"] = ((k,), torch.float32)
    if spec.readout_points is not None:
        state["readout"] = ((spec.readout_points,), torch.float32)
    return state


def _torch_file_cap(shapes: list[tuple[tuple[int, ...], torch.dtype]]) -> int:
    """Largest size in bytes a torch.save file of tensors of these shapes and dtypes can have."""
    data = 0
    for shape, dtype in shapes:
        n = 1
        for s in shape:
            n *= s
        data += n * torch.empty((), dtype=dtype, device="meta").element_size()
    return data + _TORCH_FILE_SLACK + _TORCH_TENSOR_SLACK * len(shapes)


def _check_torch_zip(d: Path, name: str, fh: Any, size: int, max_records: int) -> None:
    """Refuse a torch file that is not an uncompressed zip archive whose records fit in ``size`` bytes.

    torch.save stores its records uncompressed; a compressed record could
    make torch.load allocate far more than the file's size.
    """
    try:
        with zipfile.ZipFile(fh) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise _damaged(d, f"cannot read {name}: not a torch.save archive ({str(exc)[:100]})") from None
    finally:
        fh.seek(0)
    if len(infos) > max_records:
        raise _damaged(d, f"cannot read {name}: {len(infos)} records; a torch.save file of its tensors has "
                          f"at most {max_records}")
    if any(i.compress_type != zipfile.ZIP_STORED for i in infos):
        raise _damaged(d, f"cannot read {name}: it holds compressed records, which torch.save never writes")
    if sum(i.file_size for i in infos) > size:
        raise _damaged(d, f"cannot read {name}: its records claim more bytes than the file holds")


def _plain_tensor(t: Tensor) -> bool:
    """A dense contiguous tensor that owns exactly its storage (no stride-0, overlapping or offset views)."""
    return (t.layout == torch.strided and t.device.type == "cpu" and t.is_contiguous() and t.storage_offset() == 0
            and t.untyped_storage().nbytes() == t.numel() * t.element_size())


def _load_torch(d: Path, name: str, fh: Any) -> Any:
    try:
        return torch.load(fh, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; any of them means a damaged file
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _damaged(d, f"cannot read {name}: {why[:200]}") from None


def _check_state(d: Path, state: Any, expected: dict, genotype: str) -> None:
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise _damaged(d, f"{_WEIGHTS} does not hold a state_dict of tensors")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:5])}"] if missing else []) + \
                ([f"unexpected {', '.join(_short(k, 60) for k in unexpected[:5])}"] if unexpected else [])
        raise _damaged(d, f"{_WEIGHTS} does not fit the {genotype} network: {'; '.join(parts)}")
    for k, t in state.items():
        shape, dtype = expected[k]
        if tuple(t.shape) != shape or t.dtype != dtype:
            raise _damaged(d, f"{_WEIGHTS} does not fit the {genotype} network: {k} is {tuple(t.shape)} "
                              f"{str(t.dtype).replace('torch.', '')}, expected {shape} "
                              f"{str(dtype).replace('torch.', '')}")
        if not _plain_tensor(t):
            raise _damaged(d, f"{_WEIGHTS}: {k} is a view (strided, offset or sharing a larger storage), "
                              "not a plain tensor as save_run writes")


def _check_values(d: Path, state: dict, spec: _Spec) -> None:
    """Refuse readout tables and blend weights whose values a served network cannot use."""
    prefix = "parts.0." if spec.partner is not None else "network." if spec.anchor is not None else ""
    tables = [prefix + "readout"] if spec.readout_points is not None else []
    if spec.partner is not None and spec.partner.readout_points is not None:
        tables.append("parts.1.readout")
    for name in tables:
        why = check_readout(state[name])
        if why is not None:
            raise _damaged(d, f"{_WEIGHTS}: {why}")
    if spec.partner is not None:
        w = state["weights"]
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or abs(float(w.sum()) - 1.0) > 1e-5:
            raise _damaged(d, f"{_WEIGHTS}: the blend's weights must be finite, non-negative and sum to 1, "
                              f"got {[round(float(v), 6) for v in w]}")
    if spec.anchor is not None:
        w, image = state["weight"], state["anchor"]
        if not bool(torch.isfinite(w)) or not 0.0 <= float(w) <= 1.0:
            raise _damaged(d, f"{_WEIGHTS}: the anchor's weight must be in [0, 1], got {float(w)!r}")
        if not bool(torch.isfinite(image).all()) or bool((image < 0).any()) or bool((image > 1).any()):
            raise _damaged(d, f"{_WEIGHTS}: the anchor image must hold finite values in [0, 1]")


def load_run(directory: Union[str, os.PathLike]) -> LoadedRun:
    """Load a run bundle written by :func:`save_run`; safe on bundles from anyone.

    Before any tensor is read, the manifest (at most ``MAX_MANIFEST_BYTES``,
    nested at most ``MAX_JSON_DEPTH`` deep) is checked field by field: format
    and version, a genotype that parses, a width that is a multiple of 16 up
    to ``MAX_WIDTH``, 1 to ``MAX_IN_CHANNELS`` input and 1 or 3 output
    channels, a known task with valid parameters, and sizes of one image of
    at most ``MAX_PIXELS`` pixels that agree with the channels.  Every file
    must be a regular file inside the folder (no symbolic link), no larger
    than the manifest implies, and match its sha256; weights and z are read
    with ``torch.load(weights_only=True)`` (no pickled code runs) and must be
    plain contiguous tensors with the shapes and dtypes of the network the
    manifest describes.  Any problem raises a one-line :class:`InputError`
    naming it.
    """
    d = Path(directory)
    if not d.exists():
        raise InputError(f"run bundle not found: {d}")
    if not d.is_dir():
        raise InputError(f"run bundle must be a folder (as written by save_run / --save-run), got the file {d}")
    if not os.path.lexists(d / _MANIFEST):
        raise InputError(f"{d} is not a run bundle: {_MANIFEST} is missing")
    manifest = _read_json(d, _MANIFEST, MAX_MANIFEST_BYTES)
    spec = _check_manifest(d, manifest)
    expected = _expected_state(d, spec)
    caps = {_WEIGHTS: _torch_file_cap(list(expected.values())),
            _Z: _torch_file_cap([(spec.z_shape, torch.float32)]),
            _REPORT: MAX_REPORT_BYTES}
    for name, entry in spec.files.items():
        fh, _ = _open_member(d, name, caps.get(name, MAX_OTHER_FILE_BYTES))
        with fh:
            if _sha256_file(fh) != entry["sha256"]:
                raise _damaged(d, f"{name} does not match its sha256 in {_MANIFEST} (modified or truncated)")
    report = _read_json(d, _REPORT, MAX_REPORT_BYTES)

    fh, size = _open_member(d, _WEIGHTS, caps[_WEIGHTS])
    with fh:
        _check_torch_zip(d, _WEIGHTS, fh, size, len(expected) + 10)
        state = _load_torch(d, _WEIGHTS, fh)
    fh, size = _open_member(d, _Z, caps[_Z])
    with fh:
        _check_torch_zip(d, _Z, fh, size, 11)
        z = _load_torch(d, _Z, fh)
    _check_state(d, state, expected, spec.genotype)
    _check_values(d, state, spec)
    if not isinstance(z, Tensor) or tuple(z.shape) != spec.z_shape or z.dtype != torch.float32:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise _damaged(d, f"{_Z} holds {shape}, expected a float32 tensor of shape {spec.z_shape}")
    if not _plain_tensor(z):
        raise _damaged(d, f"{_Z} holds a view (strided, offset or sharing a larger storage), not a plain tensor")
    try:
        net = _skeleton(spec)
        if spec.partner is not None:
            net = BlendedNetwork([net, _skeleton(spec.partner)], [torch.zeros(spec.partner.z_shape)])
        if spec.anchor is not None:
            net = AnchoredNetwork(net, torch.zeros(1, spec.out_channels, *spec.z_shape[2:]), 0.0, spec.anchor)
        net.load_state_dict(state, strict=True)
    except (InputError, RuntimeError) as exc:
        why = " ".join(str(exc).split())
        raise _damaged(d, f"{_WEIGHTS} does not fit the {spec.genotype} network: {why[:300]}") from None
    crop = _crop_field(d, manifest.get("crop"), spec.z_shape)
    partner = None
    if spec.partner is not None:
        p = spec.partner
        partner = TrainedRun(network=net.parts[1], z=net.code_1.clone(), genotype=p.genotype, width=p.width,
                             in_channels=p.in_channels, out_channels=p.out_channels, task=spec.task,
                             task_params=spec.task_params, crop=crop)
    return LoadedRun(
        network=net.train(), z=z, genotype=spec.genotype, width=spec.width, in_channels=spec.in_channels,
        out_channels=spec.out_channels, task=spec.task, task_params=spec.task_params,
        report=report if isinstance(report, dict) else {}, manifest=manifest, directory=d,
        crop=crop, partner=partner,
    )


def _skeleton(spec: _Spec) -> torch.nn.Module:
    """The manifest's network (a plain one, or an averaged one of its members), ready for its weights."""
    net = build_network(spec.arch, spec.in_channels, spec.out_channels, spec.width, task=spec.task)
    if spec.members is not None:
        net = AveragedNetwork.like(net, spec.members, spec.z_shape, spec.readout_points)
    return net
