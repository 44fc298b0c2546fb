"""Image loading and saving at the API edge — DESIGN §2 ("convert once").

Everything the user gives (a path, a PIL image, a NumPy array, a tensor) is
converted once, by :func:`load_image`, to a ``(1, C, H, W)`` float32 tensor in
[0, 1] with C = 1 or 3; :func:`to_like` converts a result back to the kind the
user gave. Files are written atomically (temporary file in the same folder,
then ``os.replace``) so a crash never leaves a partial file behind.

What is accepted (everything else raises :class:`InputError`, one line):

* PIL modes "1" and "L" → 1 channel; "RGB" → 3; "RGBA"/"LA" (and the
  premultiplied "RGBa"/"La") → alpha dropped with a warning; "CMYK",
  "YCbCr" and other colour modes PIL can convert → RGB.
* Refused: 16-bit images (modes "I;16*", and 16-bit-per-channel PNGs that
  PIL would silently reduce to 8 bit), 32-bit integer/float modes "I"/"F"
  (older PIL opens 16-bit PNGs as "I"), palette images ("P", "PA": convert
  them to RGB first so the colours are explicit).
* Files: the EXIF orientation is applied (the image is used as viewers show
  it); of a multi-frame file only the first frame is read.
* Arrays: (H, W) or (H, W, C), uint8 (0..255), bool, or float in [0, 1]
  (values within 1e-6 outside are clipped). C = 4 drops alpha with a warning.
* Tensors: (H, W), (C, H, W) or (1, C, H, W), uint8 or float in [0, 1]; the
  device is kept, the data copied.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ..errors import InputError
from .files import atomic_write_bytes

__all__ = [
    "IMAGE_SUFFIXES",
    "read_image",
    "load_image",
    "save_image",
    "to_like",
]

_RANGE_SLACK = 1e-6
_SIXTEEN_BIT = "16-bit images are not supported; convert to 8-bit"


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

#: File suffixes the CLI accepts for images it writes.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp")


def read_image(src: Any) -> tuple[Tensor, int]:
    """Like :func:`load_image`, also returning the source's bit depth per channel (8 or 16)."""
    return load_image(src), 8


def load_image(src: Any) -> Tensor:
    """Convert a path, PIL image, NumPy array or tensor to (1, C, H, W) float32 in [0, 1]."""
    if isinstance(src, (str, os.PathLike)):
        return _from_pil(_open(Path(src)), where=f" ({src})")
    if isinstance(src, Image.Image):
        return _from_pil(src)
    if isinstance(src, np.ndarray):
        return _from_array(src)
    if isinstance(src, Tensor):
        return _from_tensor(src)
    raise InputError(
        f"unsupported image type {type(src).__name__}; "
        "give a file path, a PIL image, a NumPy array or a torch tensor"
    )


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise InputError(f"image file not found: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    try:
        with Image.open(path) as img:
            if _is_sixteen_bit(img):
                raise InputError(f"{_SIXTEEN_BIT} ({path})")
            img.load()  # decode now: truncated or corrupt data fails here, not later
            try:
                oriented = ImageOps.exif_transpose(img)  # a copy, rotated if EXIF says so
            except Exception:  # a broken EXIF block should not make the pixels unusable
                oriented = None
            return oriented if oriented is not None else img.copy()
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, UnidentifiedImageError,
            Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot read image {path}: {reason}") from None


def _is_sixteen_bit(img: Image.Image) -> bool:
    """True for 16-bit data, including 16-bit RGB(A) PNGs that PIL reads as 8-bit "RGB"."""
    if img.mode.startswith("I;16"):
        return True
    try:
        return any(";16" in str(tile[3]) for tile in (img.tile or ()))
    except (TypeError, IndexError):
        return False


def _from_pil(img: Image.Image, where: str = "") -> Tensor:
    mode = img.mode
    if mode.startswith("I;16"):
        raise InputError(_SIXTEEN_BIT + where)
    if mode in ("I", "F"):
        raise InputError(
            f"16/32-bit images (PIL mode {mode!r}) are not supported; convert to 8-bit{where}"
        )
    if mode in ("P", "PA"):
        raise InputError(f"palette images (PIL mode {mode!r}) are not supported; convert to RGB{where}")
    if mode in ("RGBA", "RGBa", "LA", "La"):
        warnings.warn(f"image has an alpha channel; it is ignored{where}", stacklevel=3)
        img = img.convert("L" if mode in ("LA", "La") else "RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode not in ("L", "RGB"):
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as exc:
            raise InputError(f"unsupported image mode {mode!r}: {exc}{where}") from None
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


def _check_values(t: Tensor, what: str) -> Tensor:
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{what} contains NaN or infinite values")
    lo, hi = float(t.min()), float(t.max())
    if lo < -_RANGE_SLACK or hi > 1.0 + _RANGE_SLACK:
        raise InputError(f"{what} values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]")
    return t.clamp_(0.0, 1.0)


def _drop_alpha(channels: int, what: str) -> None:
    if channels == 4:
        warnings.warn(f"{what} has 4 channels; the 4th (alpha) is ignored", stacklevel=4)


def _from_array(arr: np.ndarray) -> Tensor:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        hint = " (arrays are channels-last)" if arr.ndim == 3 and arr.shape[0] in (1, 3) else ""
        raise InputError(f"array must have shape (H, W) or (H, W, C) with C = 1 or 3, "
                         f"got {arr.shape}{hint}")
    _drop_alpha(arr.shape[2], "array")
    arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        data = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.bool_:
        data = arr.astype(np.float32)
    elif arr.dtype in (np.uint16, np.int16):
        raise InputError(_SIXTEEN_BIT + " (got a 16-bit integer array)")
    elif np.issubdtype(arr.dtype, np.floating):
        data = arr.astype(np.float32)
    else:
        raise InputError(f"array dtype {arr.dtype} is not supported; give uint8 or float in [0, 1]")
    t = torch.from_numpy(np.ascontiguousarray(data)).permute(2, 0, 1)[None].contiguous()
    return _check_values(t, "array")


def _from_tensor(t: Tensor) -> Tensor:
    t = t.detach()
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise InputError(f"tensor must have shape (H, W), (C, H, W) or (1, C, H, W), got {tuple(t.shape)}")
    if t.shape[0] != 1:
        raise InputError(f"expected one image, got a batch of {t.shape[0]}")
    if t.shape[1] not in (1, 3, 4):
        raise InputError(f"tensor must have 1 or 3 channels, got {t.shape[1]} (shape {tuple(t.shape)})")
    _drop_alpha(t.shape[1], "tensor")
    t = t[:, :3]
    if t.dtype == torch.uint8:
        return t.to(torch.float32) / 255.0
    if t.dtype == torch.bool:
        return t.to(torch.float32)
    if not t.is_floating_point():
        raise InputError(f"tensor dtype {t.dtype} is not supported; give uint8 or float in [0, 1]")
    return _check_values(t.to(torch.float32, copy=True).contiguous(), "tensor")


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------

def _to_uint8_hwc(x: Tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) in [0, 1] → (H, W, C) uint8, rounded; clips, refuses NaN."""
    if not isinstance(x, Tensor):
        raise InputError(f"expected a tensor, got {type(x).__name__}")
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise InputError(f"expected one image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise InputError(f"image must have shape (1, C, H, W) or (C, H, W) with C = 1 or 3, "
                         f"got {tuple(x.shape)}")
    x = x.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise InputError("image contains NaN or infinite values")
    arr = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return arr.permute(1, 2, 0).numpy()


def _to_pil(x: Tensor) -> Image.Image:
    arr = _to_uint8_hwc(x)
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def save_image(x: Tensor, path: str | os.PathLike, *, bit_depth: int = 8) -> Path:
    """Save (1, C, H, W) or (C, H, W) in [0, 1] as an 8-bit image, atomically.

    The format follows the suffix (".png", ".jpg", ...); values are clipped
    to [0, 1] and rounded. Unknown suffixes, a missing folder, or NaN values
    raise :class:`InputError`, and nothing is written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise InputError(f"unknown image file type {suffix or '(none)'!r} for {path}; use .png or .jpg")
    if not path.parent.is_dir():
        raise InputError(f"output folder does not exist: {path.parent}")
    img = _to_pil(x)
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot save a {img.mode} image as {fmt}: {exc}") from None
    return atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------
# Back to the user's kind
# --------------------------------------------------------------------------

def to_like(x: Tensor, like: Any) -> Any:
    """Return image ``x`` ((1, C, H, W) or (C, H, W) in [0, 1]) as the kind ``like`` is.

    * PIL image → PIL image ("L" or "RGB", 8-bit).
    * ndarray → ndarray (H, W, C) — (H, W) if ``like`` was 2-D and C = 1 —
      uint8 if ``like`` was uint8, else float32.
    * tensor → tensor with ``like``'s number of dimensions ((H, W), (C, H, W)
      or (1, C, H, W)), device and dtype (uint8 is rescaled to 0..255;
      other non-float dtypes give float32).
    * anything else (e.g. a file path) → the (1, C, H, W) float32 tensor.
    """
    if isinstance(like, Image.Image):
        return _to_pil(x)
    if isinstance(like, np.ndarray):
        if like.dtype == np.uint8:
            arr = _to_uint8_hwc(x)
        else:
            t = x[0] if x.ndim == 4 else x
            arr = t.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy().copy()
        if like.ndim == 2 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        return arr
    if isinstance(like, Tensor):
        t = x[0] if x.ndim == 4 else x  # (C, H, W)
        if like.dtype == torch.uint8:
            t = torch.from_numpy(_to_uint8_hwc(t)).permute(2, 0, 1)
        elif like.is_floating_point():
            t = t.detach().to(like.dtype)
        else:
            t = t.detach().to(torch.float32)
        t = t.to(like.device)
        if like.ndim == 4:
            t = t[None]
        elif like.ndim == 2 and t.shape[0] == 1:
            t = t[0]
        return t.contiguous()
    return x if x.ndim == 4 else x[None]
