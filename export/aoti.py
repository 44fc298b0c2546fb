"""Compiled TorchInductor (AOT) package of a trained DIP network (docs/design.md §1 step 6).

:func:`to_pt2` exports ``forward() -> image`` with ``torch.export`` — the
trained code z is a buffer of the module, so the compiled program takes *no
input* and its one output is f(z) at the training size — and compiles it
with AOTInductor into a ``.pt2`` package.  BatchNorm keeps DIP's training
semantics (see :mod:`isnas_fast.export.module`).

The package is loaded with ``torch._inductor.aoti_load_package`` in Python
(no isnas_fast code needed: :func:`run_pt2`) or with
``torch::inductor::AOTIModelPackageLoader`` in C++ (``export/cpp/runner.cpp``);
both call it with an empty input list.  The shape is static: a package is
compiled for one size (use the ONNX model for other sizes).

Compiling takes a minute or more on a CPU (it runs a C++ compiler).

A ``.pt2`` package is executable native code: loading one runs its shared
library (and a package holding C++ sources runs a compiler command it names).
Load only packages you built yourself or got from someone you trust.
:func:`load_pt2` refuses archives whose member names would be extracted
outside the loader's folder, symbolic-link members, duplicate names and
oversized archives (:func:`check_pt2_archive`) before torch sees them, and
removes what a failed load extracted; no check can make an untrusted
package's own code safe.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
import threading
import warnings
import weakref
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Union

import torch
from torch import Tensor

from ..versions import __version__
from ..bundle import RunSource, as_trained_run, export_report
from ..errors import InputError
from ..io import atomic_path, check_output_path
from ..io.files import json_text
from .module import NoInputModule
from .serve import sniff_model_file

__all__ = ["to_pt2", "run_pt2", "load_pt2", "check_pt2_archive", "MAX_PT2_MEMBERS", "MAX_PT2_BYTES",
           "MAX_PT2_RATIO"]

#: Most members a package may hold (a CPU package has about ten; a CUDA one adds a kernel file per kernel).
MAX_PT2_MEMBERS = 10_000
#: Most bytes a package may unpack to, all members together.
MAX_PT2_BYTES = 8 << 30
#: Largest ratio of a member's unpacked to packed size (torch stores members uncompressed: ratio 1);
#: members of up to 1 MiB are not held to it.
MAX_PT2_RATIO = 100


def to_pt2(run: RunSource, path: Union[str, os.PathLike], *, device: str = "cpu") -> Path:
    """Compile the trained network of ``run`` into an AOTInductor package at ``path`` (``.pt2``, atomic).

    ``run``: a :class:`~isnas_fast.trained.TrainedRun` (a loaded bundle is
    one), a restore result or a run bundle folder.  ``device``: ``"cpu"`` or ``"cuda"`` — the package runs
    on the device it was compiled for.  Returns ``path``.
    """
    from torch._inductor import aoti_compile_and_package

    out = check_output_path(path, "compiled package", (".pt2",))
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("a CUDA package needs a CUDA device; compile with device='cpu'")
    r = as_trained_run(run)
    module = NoInputModule(r.network, r.z, r.crop).to(dev)
    metadata = {
        "producer": "isnas-fast",
        "isnas_fast.version": __version__,
        "isnas_fast.genotype": r.genotype,
        "isnas_fast.task": json_text({"name": r.task, "params": r.task_params}, indent=None),
        "isnas_fast.reproduces": export_report(r)["exported_output"],
    }
    with atomic_path(out, "compiled package") as tmp, warnings.catch_warnings():
        # torch's own deprecation notices from inside export/compile (torch.jit, pytree): not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        with torch.no_grad():
            program = torch.export.export(module, ())
        aoti_compile_and_package(program, package_path=str(tmp),
                                 inductor_configs={"aot_inductor.metadata": metadata})
    return out


def _unsafe_name(name: str) -> str | None:
    """Why the member name ``name`` could be extracted outside the loader's folder, or None."""
    if not name or "\0" in name:
        return "an empty or NUL-containing name"
    if "\\" in name:
        return "a backslash"
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":" and name[0].isalpha()):
        return "an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "a '..' component"
    return None


def check_pt2_archive(path: Union[str, os.PathLike]) -> None:
    """Refuse a ``.pt2`` zip archive whose extraction could escape its folder or exhaust the disk.

    Raises :class:`InputError` (one line) for a member name with a ``..``
    component, an absolute path (leading ``/`` or a drive letter), a
    backslash or a NUL; a symbolic-link member; a name that appears twice;
    more than :data:`MAX_PT2_MEMBERS` members; more than
    :data:`MAX_PT2_BYTES` bytes unpacked in all; or a member that unpacks to
    more than :data:`MAX_PT2_RATIO` times its packed size (a zip bomb).
    Passing these checks does not make a package safe to load: its shared
    library is code and runs when loaded.
    """
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError(f"{p} is not a readable zip archive, not a .pt2 TorchInductor package "
                         f"({' '.join(str(exc).split())[:100]})") from None
    if len(infos) > MAX_PT2_MEMBERS:
        raise InputError(f"refusing {p}: {len(infos)} members, more than the {MAX_PT2_MEMBERS} a package may hold")
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        shown = repr(name if len(name) <= 80 else name[:77] + "...")
        why = _unsafe_name(name)
        if why is not None:
            raise InputError(f"refusing {p}: member {shown} has {why} (it would be extracted outside its folder)")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InputError(f"refusing {p}: member {shown} is a symbolic link")
        if name in seen:
            raise InputError(f"refusing {p}: member {shown} appears twice")
        seen.add(name)
        if info.file_size > max(1 << 20, MAX_PT2_RATIO * info.compress_size):
            raise InputError(f"refusing {p}: member {shown} unpacks to {info.file_size} bytes from "
                             f"{info.compress_size} (more than {MAX_PT2_RATIO} times; a zip bomb?)")
        total += info.file_size
    if total > MAX_PT2_BYTES:
        raise InputError(f"refusing {p}: it unpacks to {total} bytes, more than the {MAX_PT2_BYTES} a package may")


_TMPDIR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_temp_dir(folder: str) -> Iterator[None]:
    """Point TMPDIR, where torch's C++ package loader unpacks a package, at ``folder`` for the block.

    Python's own temporary folder is fixed first, so only native code reads
    the changed variable; one load at a time changes it.
    """
    tempfile.gettempdir()
    with _TMPDIR_LOCK:
        old = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = folder
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = old


def load_pt2(path: Union[str, os.PathLike]) -> Any:
    """Load a ``.pt2`` package (``torch._inductor.aoti_load_package``) with clear errors for bad files.

    A package is code (its shared library runs when loaded): load only
    packages you built or trust.  The archive is checked first
    (:func:`check_pt2_archive`); torch unpacks it into a temporary folder of
    this call's own, removed when the load fails or the returned model is
    garbage-collected.
    """
    from torch._inductor import aoti_load_package

    p = sniff_model_file(path, what="package")
    if not zipfile.is_zipfile(p):
        with open(p, "rb") as fh:
            head = fh.read(8)
        kind = "a PNG image" if head.startswith(b"\x89PNG") else "not a zip archive (truncated or another format)"
        raise InputError(f"{p} is {kind}, not a .pt2 TorchInductor package")
    check_pt2_archive(p)
    work = tempfile.mkdtemp(prefix="isnas-fast-pt2-")
    loaded = False
    # torch logs a warning before it retries a package its first loader rejects; the error below says it all
    torch_log = logging.getLogger("torch._inductor.package.package")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)
    try:
        with _native_temp_dir(work):
            model = aoti_load_package(str(p))
        loaded = True
    except Exception as exc:  # loader failures come as RuntimeError / KeyError / ...
        why = " ".join(str(exc).split())
        raise InputError(f"cannot load TorchInductor package {p}: {why[:300]}") from None
    finally:
        torch_log.setLevel(level)
        if not loaded:
            shutil.rmtree(work, ignore_errors=True)
    # a CUDA package reads its kernel files from the unpacked folder while it runs: keep it as long as the model
    try:
        weakref.finalize(model, shutil.rmtree, work, True)
    except TypeError:  # a loader object without weak references: torch's own destructor empties the folder
        pass
    return model


def run_pt2(path: Union[str, os.PathLike]) -> Tensor:
    """Run a package written by :func:`to_pt2`: f(z), (1, C, H, W) float32 on the CPU."""
    model = load_pt2(path)
    with torch.no_grad():
        out = model()
    if isinstance(out, (list, tuple)):
        out = out[0]
    if not isinstance(out, Tensor) or out.ndim != 4 or out.shape[0] != 1:
        raise InputError(f"{path} did not produce one (1, C, H, W) image")
    return out.float().cpu()
