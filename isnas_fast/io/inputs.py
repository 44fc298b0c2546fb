"""Many inputs and the standard streams: folders of images, ``-`` for stdin and stdout."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence, Union

from torch import Tensor

from ..errors import InputError
from .images import IMAGE_SUFFIXES, read_image, save_image

__all__ = ["collect_image_files", "read_stdin_image", "write_stdout_image", "check_writable_folder",
           "MAX_STDIN_BYTES"]

#: The most bytes read from standard input (an image file).
MAX_STDIN_BYTES = 512 * 1024 * 1024


def collect_image_files(specs: Sequence[Union[str, os.PathLike]]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The image files named by ``specs`` (files, and the image files directly inside folders,
    by name), and the ones left out with why.

    A folder's files whose suffix is not an image suffix are ignored; a named
    file is kept whatever its suffix (decoding decides).  A path that does not
    exist, or a folder without image files, raises :class:`InputError`.
    The same file named twice is kept once.
    """
    files: list[Path] = []
    seen: set[Path] = set()
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        elif path.is_file():
            found = [path]
        else:
            raise InputError(f"input {path} does not exist")
        for p in found:
            if p.resolve() not in seen:
                seen.add(p.resolve())
                files.append(p)
    usable, unreadable = [], []
    for p in files:
        try:
            with open(p, "rb") as fh:
                if not fh.read(16):
                    raise InputError("empty file")
        except OSError as exc:
            unreadable.append((p, exc.strerror or str(exc)))
            continue
        except InputError as exc:
            unreadable.append((p, str(exc)))
            continue
        usable.append(p)
    return usable, unreadable


def read_stdin_image() -> tuple[Tensor, int]:
    """Decode one image file from standard input: ``(image (1, C, H, W), bit depth)``.

    The bytes go through the same checks as a file (format, pixel cap).
    """
    stream = sys.stdin.buffer
    if stream.isatty():
        raise InputError("'-' reads an image from standard input, but standard input is a terminal")
    data = stream.read(MAX_STDIN_BYTES + 1)
    if not data:
        raise InputError("standard input is empty (expected an image file)")
    if len(data) > MAX_STDIN_BYTES:
        raise InputError(f"standard input holds more than {MAX_STDIN_BYTES // 2**20} MiB; not an image to restore")
    with tempfile.TemporaryDirectory(prefix="isnas-stdin-") as tmp:
        path = Path(tmp) / "stdin"
        path.write_bytes(data)
        try:
            return read_image(path)
        except InputError as exc:
            raise InputError(str(exc).replace(str(path), "standard input")) from None


def write_stdout_image(x: Tensor, bit_depth: int = 8) -> None:
    """Write (1, C, H, W) ``x`` as a PNG (16-bit when ``bit_depth`` is 16) to standard output."""
    with tempfile.TemporaryDirectory(prefix="isnas-stdout-") as tmp:
        path = save_image(x, Path(tmp) / "out.png", bit_depth=bit_depth)
        data = path.read_bytes()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def check_writable_folder(folder: Path, what: str = "output folder") -> None:
    """Raise :class:`InputError` unless a file can be created in ``folder`` (checked before any work)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".isnas-write-check-", dir=folder)
    except OSError as exc:
        raise InputError(f"cannot write to {what} {folder}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)
