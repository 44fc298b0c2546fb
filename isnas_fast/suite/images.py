"""The images of a suite and the corrupted inputs made from them.

Images come from folders (PNG, JPEG, TIFF, BMP), file paths, or
``builtin:paper`` (the three test images of the ISNAS-DIP paper shipped in
``isnas_fast/data/paper``).  Each is the ground truth of its rows: it is
used at its own size (at least 64 px a side; for super-resolution its
bottom and right edges are trimmed to multiples of the factor, so that the
low-resolution input is exactly 1/f of it), saved as ``inputs/<name>-clean.png``, and corrupted per seed by the task
into ``inputs/<name>-seed<k>.png`` (and ``-mask.png`` for inpainting).  Jobs
read those files, so every row can be re-run by hand from them.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence, Union

from torch import Tensor

from ..errors import InputError
from ..io import check_min_size, load_image, read_image, save_image
from ..io.files import make_folder
from ..tasks import Inpaint, SuperResolve, Task
from .jobs import corruption_seed

__all__ = ["SUITE_SUFFIXES", "BUILTIN_PAPER", "SuiteImage", "Skipped", "ProblemFiles", "collect_images",
           "prepare_inputs", "load_problem"]

#: File types a folder is searched for (case-insensitive).
SUITE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
BUILTIN_PAPER = "builtin:paper"


@dataclass(frozen=True)
class SuiteImage:
    """A readable image: its unique ``name`` (rows and files use it), where it
    came from, its path, bit depth (8 or 16) and the SHA-256 of its file."""

    name: str
    source: str
    path: Path
    depth: int
    sha256: str


@dataclass(frozen=True)
class Skipped:
    """An image that could not be used, and why (one line)."""

    source: str
    reason: str


@dataclass(frozen=True)
class ProblemFiles:
    """The files of one (image, seed): paths relative to the suite folder."""

    clean: str
    observed: str
    mask: Optional[str]
    corruption_seed: int
    depth: int


def _paper_folder() -> Path:
    folder = Path(str(resources.files("isnas_fast").joinpath("data/paper")))
    if not folder.is_dir():
        raise InputError(f"{BUILTIN_PAPER}: the paper's images are not installed with this package ({folder})")
    return folder


def _candidates(spec: Union[str, os.PathLike]) -> list[tuple[str, Path]]:
    """(source label, path) of every image file ``spec`` names."""
    if str(spec) == BUILTIN_PAPER:
        return [(f"{BUILTIN_PAPER}/{p.name}", p) for p in sorted(_paper_folder().iterdir())
                if p.suffix.lower() in SUITE_SUFFIXES]
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUITE_SUFFIXES)
        if not files:
            raise InputError(f"no images (PNG, JPEG, TIFF or BMP) in folder {path}")
        return [(str(p), p) for p in files]
    if not path.exists():
        raise InputError(f"image or folder not found: {path}")
    return [(str(path), path)]


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """File stems, made unique: the suffix joins a shared stem, then a counter."""
    stems = [p.stem for p in paths]
    names = [f"{p.stem}_{p.suffix.lstrip('.').lower()}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    seen: dict[str, int] = {}
    unique = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return unique


def collect_images(specs: Sequence[Union[str, os.PathLike]]) -> tuple[list[SuiteImage], list[Skipped]]:
    """The usable images of ``specs`` (folders, files, ``builtin:paper``), and the skipped ones.

    An image is skipped (not an error) when it cannot be decoded or is under
    64 px on a side; a folder without image files, a path that does not
    exist, or no usable image at all raise InputError.
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    by_path: dict[Path, str] = {}
    for spec in specs:
        for src, path in _candidates(spec):
            by_path.setdefault(path.resolve(), src)  # the same file named twice is one image
    found = [(src, path) for path, src in by_path.items()]
    if not found:
        raise InputError("no images given")
    usable: list[tuple[str, Path, int, str]] = []
    skipped: list[Skipped] = []
    for source, path in found:
        try:
            x, depth = read_image(path)
            check_min_size(int(x.shape[-2]), int(x.shape[-1]), min_side=64)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except InputError as e:
            skipped.append(Skipped(source, str(e)))
            continue
        except OSError as e:
            skipped.append(Skipped(source, f"cannot read {path}: {e.strerror or e}"))
            continue
        usable.append((source, path, depth, digest))
    if not usable:
        raise InputError(f"none of the {len(found)} image(s) could be used "
                         f"(first: {skipped[0].source}: {skipped[0].reason})")
    names = _unique_names([p for _, p, _, _ in usable])
    return [SuiteImage(n, s, p, d, h) for n, (s, p, d, h) in zip(names, usable)], skipped


def prepare_inputs(image: SuiteImage, task: Task, seed: int, folder: Path) -> ProblemFiles:
    """Write (once) the ground truth and seed ``seed``'s corrupted input of ``image``.

    Files that exist are kept: the rows already made were computed from
    them.  Every write is atomic.
    """
    inputs = folder / "inputs"
    make_folder(inputs, "suite inputs folder")
    files = ProblemFiles(
        clean=f"inputs/{image.name}-clean.png", observed=f"inputs/{image.name}-seed{seed}.png",
        mask=f"inputs/{image.name}-seed{seed}-mask.png" if isinstance(task, Inpaint) else None,
        corruption_seed=corruption_seed(image.name, seed), depth=image.depth)
    clean_path = folder / files.clean
    if not clean_path.exists():
        x, _ = read_image(image.path)
        if isinstance(task, SuperResolve):
            h, w = x.shape[-2:]
            x = x[..., : h - h % task.factor, : w - w % task.factor]
        save_image(x, clean_path, bit_depth=image.depth)
    if (folder / files.observed).exists() and (files.mask is None or (folder / files.mask).exists()):
        return files
    obs = task.corrupt(load_image(clean_path), seed=files.corruption_seed)
    if files.mask is not None:
        save_image(obs.mask, folder / files.mask)
    save_image(obs.y, folder / files.observed, bit_depth=image.depth)
    return files


def load_problem(folder: Path, files: ProblemFiles) -> tuple[Tensor, Optional[Tensor], Tensor]:
    """(corrupted input, mask or None, ground truth) as (1, C, h, w), (1, 1, h, w), (1, C, H, W) float32."""
    mask = load_image(folder / files.mask) if files.mask is not None else None
    return load_image(folder / files.observed), mask, load_image(folder / files.clean)
