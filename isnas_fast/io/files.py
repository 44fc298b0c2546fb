"""Writing files safely: atomic writes, strict JSON and the one output-path check.

Every file the package writes goes through here: a temporary file (or
folder) beside the target, flushed to disk, then renamed into place and the
folder flushed too (so the rename itself survives a power cut), so a crash
or a kill never leaves a half-written output -- readers see the old file or
the new one.  A write the operating system refuses (disk full, read-only or
unwritable folder) raises :class:`~isnas_fast.errors.InputError` naming the
path and the system's reason.

JSON is written strictly (:func:`json_text`): NaN and infinities, which
``json.dumps`` would write as the non-standard ``NaN``/``Infinity``, become
``null``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from ..errors import InputError

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_folder", "atomic_path", "check_output_path",
           "check_output_folder", "make_folder", "fsync_folder", "os_error", "json_safe", "json_text",
           "atomic_write_json", "FILE_MODE", "FOLDER_MODE"]


def _current_umask() -> int:
    # Read once at import: os.umask is process-wide and racy to probe later.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
#: Permissions a plain ``open(path, "wb")`` / ``os.mkdir`` would give under this process's umask.
FILE_MODE = 0o666 & ~_UMASK
FOLDER_MODE = 0o777 & ~_UMASK


def check_output_path(path: str | os.PathLike, what: str, suffixes: Sequence[str] = ()) -> Path:
    """Fail before long work starts if ``path`` cannot be written as ``what``.

    Its folder must exist, it must not be a folder, and (if ``suffixes`` are
    given) it must end in one of them (case-insensitive).
    """
    p = Path(path)
    if not p.parent.is_dir():
        raise InputError(f"output folder does not exist: {p.parent} (for {what} {p})")
    if p.is_dir():
        raise InputError(f"{what} {p} is a folder")
    if suffixes and p.suffix.lower() not in suffixes:
        raise InputError(f"{what} {p} must end in {' or '.join(suffixes)}")
    return p


def check_output_folder(path: str | os.PathLike, what: str) -> Path:
    """Fail before long work starts if ``path`` cannot be the folder ``what``:
    its parent must exist, and if it exists it must be a folder."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{what} {p} exists and is not a folder")
    if not p.parent.is_dir():
        raise InputError(f"output folder does not exist: {p.parent} (for {what} {p})")
    return p


def os_error(action: str, path: str | os.PathLike, exc: OSError) -> InputError:
    """The one-line error for an operating-system refusal: ``cannot <action> <path>: <reason>``
    (e.g. "No space left on device", "Read-only file system", "Permission denied")."""
    return InputError(f"cannot {action} {path}: {exc.strerror or exc}")


def fsync_folder(folder: str | os.PathLike) -> None:
    """Flush ``folder``'s entries (a rename or a new file in it) to disk.

    Where a folder cannot be opened or flushed (some file systems, Windows)
    this does nothing: the rename has happened, only its durability across a
    power cut is then up to the system.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_folder(path: str | os.PathLike, what: str = "folder", *, parents: bool = False) -> Path:
    """Create the folder ``path`` if missing (with its missing parents when ``parents``); returns it.

    A refusal by the system (read-only or full disk, no permission, a file in
    the way) raises :class:`InputError` naming ``what``, the path and the reason.
    """
    p = Path(path)
    if p.is_dir():
        return p
    try:
        p.mkdir(parents=parents, exist_ok=True)
    except OSError as exc:
        raise os_error(f"create {what}", p, exc) from None
    fsync_folder(p.parent)
    return p


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data: NaN and infinite floats become None; NumPy
    scalars and arrays and torch tensors their Python values (``tolist``);
    tuples lists; anything else JSON has no type for its ``str``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k if isinstance(k, (str, int, bool)) or k is None else str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):
        try:
            return json_safe(value.tolist())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)


def json_text(data: Any, *, indent: Optional[int] = 2, sort_keys: bool = False, compact: bool = False) -> str:
    """``data`` as strict JSON text (no ``NaN``/``Infinity``: see :func:`json_safe`), without a final newline.

    ``compact``: no spaces after separators (one-line records).
    """
    return json.dumps(json_safe(data), indent=indent, sort_keys=sort_keys, allow_nan=False,
                      separators=(",", ":") if compact else None)


def atomic_write_json(path: str | os.PathLike, data: Any, *, indent: Optional[int] = 2,
                      sort_keys: bool = False) -> Path:
    """Write ``data`` as strict JSON (:func:`json_text`) plus a newline to ``path``, atomically; returns the path."""
    return atomic_write_text(path, json_text(data, indent=indent, sort_keys=sort_keys) + "\n")


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``.

    Readers see the old file or the new one, never a partial one; on any error
    the temporary file is removed. The result gets the permissions a plain
    ``open(path, "wb")`` would give.
    """
    path = check_output_path(path, "output path")
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        _fsync_write(Path(tmp_name), data)
        os.chmod(tmp_name, FILE_MODE)
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise os_error("write", path, exc) from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    fsync_folder(path.parent)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, what: str = "output") -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name
    (e.g. a compiler's packager); renamed to ``path`` when the block ends
    without error, removed otherwise."""
    path = check_output_path(path, what)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix or ".tmp")
        os.close(fd)
    except OSError as exc:
        raise os_error("write", path, exc) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600; give what open() would
        os.replace(tmp, path)
    except OSError as exc:
        raise os_error("write", path, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_folder(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_folder(target: str | os.PathLike, files: Mapping[str, bytes], *, replace: bool = False,
                        what: str = "folder") -> Path:
    """Write a folder of ``files`` (name -> bytes) atomically.

    The files go into a temporary folder beside ``target`` (each flushed to
    disk) that is then renamed into place.  An existing empty ``target`` is
    replaced; a non-empty one only when ``replace`` (it is moved aside first
    and restored if the rename fails).  Returns ``target``.
    """
    target = check_output_folder(target, what)
    tmp: Optional[Path] = None
    old: Optional[Path] = None
    try:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
        for name, data in files.items():
            _fsync_write(tmp / name, data)
            os.chmod(tmp / name, FILE_MODE)
        os.chmod(tmp, FOLDER_MODE)
        if target.is_dir():
            if any(target.iterdir()):
                if not replace:
                    raise InputError(f"{what} {target} exists and is not empty")
                old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
                os.replace(target, old)
            else:
                os.rmdir(target)
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        if old is not None and not target.exists():
            os.replace(old, target)
            old = None
        raise os_error(f"write {what}", target, exc) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    fsync_folder(target.parent)
    return target
