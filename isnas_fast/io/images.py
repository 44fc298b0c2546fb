"""Image loading and saving at the API edge — docs/design.md §2 ("convert once").

Everything the user gives (a path, a PIL image, a NumPy array, a tensor) is
converted once, by :func:`read_image` (or :func:`load_image`, which drops the
bit depth), to a ``(1, C, H, W)`` float32 tensor in [0, 1] with C = 1 or 3;
:func:`to_like` converts a result back to the kind the user gave, and
:func:`save_image` writes 8-bit files, or 16-bit PNG/TIFF. Files are written
atomically (temporary file in the same folder, then ``os.replace``) so a crash
never leaves a partial file behind.

What is accepted (everything else raises :class:`InputError`, one line):

* PIL modes "1" and "L" → 1 channel; "RGB" → 3; "RGBA"/"LA" (and the
  premultiplied "RGBa"/"La") → alpha dropped with a warning; "CMYK",
  "YCbCr" and other colour modes PIL can convert → RGB.
* Palette images ("P", "PA") → RGB, or 1 channel when every pixel is grey
  (r = g = b); a transparent colour or an alpha channel is dropped with the
  alpha warning.
* 16-bit images keep their precision (value / 65535): 16-bit grey, grey +
  alpha, RGB and RGBA PNGs (decoded with pypng, since PIL reduces 16-bit
  colour PNGs to 8 bit), 16-bit grey and RGB(A) TIFFs (decoded with
  tifffile), and PIL images in modes "I;16*". Their depth, from
  :func:`read_image`, is 16; that of every other source is 8.
* Refused: 32-bit integer/float modes "I"/"F" (which includes 16-bit PGM
  files, opened by PIL as "I"), signed 16-bit data, and 16-bit colour files
  in other formats whose PIL decoder would reduce them to 8 bit (raw mode
  ";16"). 16-bit PPM colour files are read at 8 bit, as PIL decodes them.
* Files: PNG, JPEG, TIFF, BMP, WebP, PPM/PGM/PBM and GIF, recognised by
  their content, not their name; every other format Pillow knows is refused
  (some, such as EPS, would run external programs). An image over
  :func:`default_max_pixels` pixels (default :data:`DEFAULT_MAX_PIXELS`, 8192 x 8192;
  the ``ISNAS_FAST_MAX_PIXELS`` environment variable or ``max_pixels=``
  changes it) is refused from its header, before its pixels are decoded.
  The EXIF orientation is applied (the image is used as viewers show
  it; for 16-bit PNGs from an eXIf chunk, for 16-bit TIFFs from the
  Orientation tag); of a multi-frame file only the first frame is read. A PIL
  image is taken as PIL decoded it.
* Arrays: (H, W) or (H, W, C), uint8 (0..255), uint16 (0..65535), bool, or
  float in [0, 1] (values within 1e-6 outside are clipped). C = 4 drops
  alpha with a warning.
* Tensors: (H, W), (C, H, W) or (1, C, H, W), uint8, uint16, bool or float in
  [0, 1]; the device is kept, the data copied.
"""
from __future__ import annotations

import io
import os
import struct
import sys
import warnings
import zlib
from pathlib import Path
from typing import Any, Optional

import numpy as np
import png
import tifffile
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ..errors import InputError
from .files import atomic_write_bytes, check_output_path

__all__ = [
    "IMAGE_SUFFIXES",
    "read_image",
    "load_image",
    "save_image",
    "to_like",
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "default_max_pixels",
    "set_max_pixels",
    "check_pixels",
]

_RANGE_SLACK = 1e-6
_SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_ORIENTATION_TAG = 0x0112
# What PIL, pypng, tifffile and zlib raise on damaged or unreadable data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, KeyError, IndexError, struct.error, zlib.error,
                  png.Error, UnidentifiedImageError, Image.DecompressionBombError)


def _warn(message: str) -> None:
    """Warn, attributed to the first caller outside this module (the user's code, or the CLI)."""
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
        level += 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _alpha_warning(where: str) -> None:
    _warn(f"image has an alpha channel; it is ignored{where}")


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

#: File suffixes the CLI accepts for images it writes.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp")

#: The Pillow formats a file may be decoded as ("PPM" is PBM/PGM/PPM/PNM). Others
#: are refused: EPS and PDF run Ghostscript, and rarely used decoders are the
#: usual place for memory-safety bugs.
_PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "PPM", "GIF")
_FORMAT_NAMES = "PNG, JPEG, TIFF, BMP, WebP, PPM/PGM/PBM or GIF"
#: The largest image (width x height, pixels) read from a file unless raised: 8192 x 8192,
#: about 0.8 GB as the (1, 3, H, W) float32 tensor it becomes.
DEFAULT_MAX_PIXELS = 8192 * 8192
#: Environment variable that sets the largest image read from a file, in pixels.
MAX_PIXELS_ENV = "ISNAS_FAST_MAX_PIXELS"


def _pixel_limit(value: Any, what: str) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InputError(f"{what} must be a whole number of pixels, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{what} must be a positive whole number of pixels, got {value!r}")
    return int(value)


def default_max_pixels() -> int:
    """The largest image (width x height, in pixels) read from a file when no ``max_pixels`` is given:
    the ``ISNAS_FAST_MAX_PIXELS`` environment variable if set, else :data:`DEFAULT_MAX_PIXELS`."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    return _pixel_limit(value, MAX_PIXELS_ENV) if value else DEFAULT_MAX_PIXELS


def set_max_pixels(limit: Optional[int]) -> None:
    """Set the largest image read from a file (pixels) for this process and the worker
    processes it starts (it sets ``ISNAS_FAST_MAX_PIXELS``); ``None`` restores the default."""
    if limit is None:
        os.environ.pop(MAX_PIXELS_ENV, None)
    else:
        os.environ[MAX_PIXELS_ENV] = str(_pixel_limit(limit, "the pixel limit"))


def check_pixels(width: int, height: int, source: Any, limit: Optional[int] = None) -> None:
    """Refuse a ``width`` x ``height`` image from ``source`` (named in the error) over ``limit``
    pixels (default :func:`default_max_pixels`), before anything is decoded or allocated."""
    limit = default_max_pixels() if limit is None else _pixel_limit(limit, "max_pixels")
    if width * height > limit:
        raise InputError(f"image {source} is {width}x{height} px ({width * height} pixels), over the "
                         f"limit of {limit} pixels; pass --max-pixels, set {MAX_PIXELS_ENV} (or max_pixels= in "
                         "Python) to allow larger images")


def read_image(src: Any, *, max_pixels: Optional[int] = None) -> tuple[Tensor, int]:
    """Convert a path, PIL image, NumPy array or tensor to (1, C, H, W) float32 in [0, 1], with its bit depth.

    Returns ``(image, depth)``: C = 1 or 3, and ``depth`` the source's bits per
    channel, 16 for 16-bit files, "I;16" PIL images and uint16 arrays or
    tensors, 8 for everything else (floats included). See the module
    docstring for what is accepted; anything else raises :class:`InputError`.
    ``max_pixels``: the largest file image (width x height) read; default
    :func:`default_max_pixels` (8192 x 8192 unless ``ISNAS_FAST_MAX_PIXELS`` says otherwise).
    """
    if isinstance(src, (str, os.PathLike)):
        limit = default_max_pixels() if max_pixels is None else _pixel_limit(max_pixels, "max_pixels")
        return _read_path(Path(src), limit)
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


def load_image(src: Any, *, max_pixels: Optional[int] = None) -> Tensor:
    """Convert a path, PIL image, NumPy array or tensor to (1, C, H, W) float32 in [0, 1] (C = 1 or 3).

    ``max_pixels`` as for :func:`read_image`."""
    return read_image(src, max_pixels=max_pixels)[0]


def _read_path(path: Path, limit: int) -> tuple[Tensor, int]:
    if not path.exists():
        raise InputError(f"image file not found: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    where = f" ({path})"
    try:
        with open(path, "rb") as fh:
            head = fh.read(32)
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {exc.strerror or exc}") from None
    # Sniff the header, not the suffix or PIL's mode: PIL opens 16-bit colour
    # PNGs as 8-bit "RGB", and older PIL versions open 16-bit grey PNGs as "I".
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR" and len(head) > 24 and head[24] == 16:
        return _sixteen_to_tensor(_read_png16(path, where, limit)), 16
    if head[:4] in _TIFF_SIGNATURES:
        arr = _read_tiff16(path, where, limit)
        if arr is not None:
            return _sixteen_to_tensor(arr), 16
    return _from_pil(_open(path, limit, head), where)


def _format_of(head: bytes) -> Optional[str]:
    """The Pillow format whose signature ``head`` (a file's first bytes) has, allowed ones
    first; None when none matches. Only the formats' signature checks run, no decoder."""
    if head.startswith(b"%PDF"):
        return "PDF"  # Pillow writes PDF but cannot read it
    Image.init()
    for fmt in sorted(Image.ID, key=lambda f: f not in _PIL_FORMATS):
        accept = Image.OPEN.get(fmt, (None, None))[1]
        try:
            if accept is not None and accept(head[:16]):
                return fmt
        except Exception:  # a signature check that cannot handle these bytes: not this format
            continue
    return None


def _open(path: Path, limit: int, head: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # The pixel limit below replaces Pillow's decompression-bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path, formats=_PIL_FORMATS)
    except UnidentifiedImageError:
        fmt = _format_of(head)
        if fmt is None:
            raise InputError(f"cannot read image {path}: not a {_FORMAT_NAMES} file") from None
        if fmt not in _PIL_FORMATS:
            raise InputError(f"cannot read image {path}: {fmt} is not a supported image format "
                             f"(give {_FORMAT_NAMES})") from None
        raise InputError(f"cannot read image {path}: damaged {fmt} file (Pillow cannot identify it)") from None
    except _DECODE_ERRORS as exc:
        raise InputError(f"cannot read image {path}: {_reason(exc)}") from None
    try:
        with img:
            check_pixels(img.width, img.height, path, limit)  # from the header: nothing decoded yet
            if _reduced_by_pil(img):
                raise InputError(f"16-bit {img.format} colour images are not supported; "
                                 f"save them as 16-bit PNG or TIFF ({path})")
            img.load()  # decode now: truncated or corrupt data fails here, not later
            try:
                oriented = ImageOps.exif_transpose(img)  # a copy, rotated if EXIF says so
            except Exception:  # a broken EXIF block should not make the pixels unusable
                oriented = None
            return oriented if oriented is not None else img.copy()
    except InputError:
        raise
    except _DECODE_ERRORS as exc:
        raise InputError(f"cannot read image {path}: {_reason(exc)}") from None


def _reduced_by_pil(img: Image.Image) -> bool:
    """True for 16-bit colour data that PIL decodes to 8 bit (raw mode "RGB;16B" etc. under mode "RGB")."""
    if img.mode.startswith("I;16"):
        return False  # PIL keeps 16-bit grey exact
    try:
        return any(";16" in str(tile[3]) for tile in (img.tile or ()))
    except (TypeError, IndexError):
        return False


def _read_png16(path: Path, where: str, limit: int) -> np.ndarray:
    """A 16-bit PNG as (H, W, C) uint16, C = 1 or 3: alpha dropped (with a warning), EXIF orientation applied."""
    try:
        data = path.read_bytes()
        # read(), not asDirect(): asDirect rescales to the sBIT depth, and a
        # 16-bit PNG has no palette to expand.
        reader = png.Reader(bytes=data)
        reader.preamble()  # the chunks before the image data: the header, nothing decoded
        # Before read(): for an interlaced file pypng allocates the whole image there.
        check_pixels(reader.width, reader.height, path, limit)
        width, height, rows, info = reader.read()
        planes = int(info["planes"])
        arr = np.empty((height, width * planes), np.uint16)
        n = 0
        for row in rows:
            if n == height:
                break
            arr[n] = np.frombuffer(row, np.uint16)
            n += 1
        if n != height:
            raise ValueError(f"image data is truncated ({n} of {height} rows)")
    except InputError:
        raise
    except _DECODE_ERRORS as exc:
        raise InputError(f"cannot read image {path}: {_reason(exc)}") from None
    arr = arr.reshape(height, width, planes)
    if info["alpha"]:
        _alpha_warning(where)
        arr = arr[:, :, :-1]
    return _orient(arr, _png_orientation(data))


def _png_orientation(data: bytes) -> int:
    """The EXIF orientation (1..8) of a PNG's eXIf chunk; 1 when it has none or it cannot be parsed."""
    pos = len(_PNG_SIGNATURE)
    try:
        while pos + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            if kind == b"eXIf":
                exif = Image.Exif()
                exif.load(data[pos + 8:pos + 8 + length])
                value = int(exif.get(_ORIENTATION_TAG, 1))
                return value if 1 <= value <= 8 else 1
            if kind == b"IEND":
                break
            pos += 12 + length  # length, type, data, CRC
    except Exception:  # a broken EXIF block should not make the pixels unusable
        pass
    return 1


def _read_tiff16(path: Path, where: str, limit: int) -> Optional[np.ndarray]:
    """A 16-bit TIFF's first page as (H, W, C) uint16, C = 1 or 3; ``None`` if it is not 16-bit.

    Alpha (extra samples) is dropped with a warning, the Orientation tag
    applied, and "min-is-white" grey inverted.
    """
    try:
        tif = tifffile.TiffFile(path)
    except Exception:  # not a TIFF tifffile can parse: PIL reads it or reports why not
        return None
    try:
        with tif:
            page = tif.pages[0]
            if page.bitspersample != 16:
                return None
            photometric = int(page.photometric)
            samples = int(page.samplesperpixel)
            if int(page.sampleformat) != 1:
                raise InputError(f"signed or floating-point 16-bit TIFF images are not supported; "
                                 f"give unsigned 16-bit data{where}")
            colour = photometric == 2  # RGB
            if photometric not in (0, 1, 2) or samples < (3 if colour else 1) or samples > (4 if colour else 2):
                raise InputError(f"16-bit TIFF images must be grey or RGB (optionally with alpha), got "
                                 f"photometric {photometric} with {samples} samples per pixel{where}")
            axes = page.axes
            if axes not in ("YX", "YXS", "SYX"):
                raise InputError(f"16-bit TIFF pages with axes {axes!r} are not supported; "
                                 f"give one grey or RGB image{where}")
            height, width = page.imagelength, page.imagewidth
            check_pixels(width, height, path, limit)  # before the pixels are read
            tag = page.tags.get(_ORIENTATION_TAG)
            orientation = int(tag.value) if tag is not None and isinstance(tag.value, int) else 1
            arr = np.asarray(page.asarray(), dtype=np.uint16)
    except InputError:
        raise
    except _DECODE_ERRORS as exc:
        raise InputError(f"cannot read image {path}: {_reason(exc)}") from None
    if axes == "YX":
        arr = arr[:, :, None]
    elif axes == "SYX":
        arr = np.moveaxis(arr, 0, -1)
    if samples > (3 if colour else 1):
        _alpha_warning(where)
        arr = arr[:, :, :3 if colour else 1]
    if photometric == 0:  # min-is-white: 0 is white
        arr = np.uint16(65535) - arr
    return _orient(arr, orientation if 1 <= orientation <= 8 else 1)


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) as shown for an EXIF orientation value -- the transposes ImageOps.exif_transpose uses."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(arr, -1)
    if orientation == 7:
        return arr[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(arr, 1)
    return arr


def _sixteen_to_tensor(arr: np.ndarray) -> Tensor:
    """(H, W, C) 16-bit unsigned → (1, C, H, W) float32 = value / 65535."""
    data = np.ascontiguousarray(arr, dtype=np.uint16).astype(np.float32) / np.float32(65535)
    return torch.from_numpy(data).permute(2, 0, 1)[None].contiguous()


def _from_pil(img: Image.Image, where: str = "") -> tuple[Tensor, int]:
    mode = img.mode
    if mode.startswith("I;16"):
        arr = np.asarray(img)
        if arr.dtype.kind != "u" or arr.dtype.itemsize != 2:
            raise InputError(f"signed 16-bit images (PIL mode {mode!r}) are not supported{where}")
        return _sixteen_to_tensor(arr[:, :, None]), 16
    if mode in ("I", "F"):
        raise InputError(
            f"16/32-bit images (PIL mode {mode!r}) are not supported; convert to 8-bit{where}"
        )
    if mode in ("P", "PA"):
        arr = _palette_to_array(img, where)
    else:
        if mode in ("RGBA", "RGBa", "LA", "La"):
            _alpha_warning(where)
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
    return torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous(), 8


def _palette_to_array(img: Image.Image, where: str) -> np.ndarray:
    """A palette image as (H, W, 3) uint8, or (H, W, 1) when every pixel is grey; alpha dropped with a warning."""
    if img.mode == "PA" or "transparency" in img.info:
        _alpha_warning(where)
        # Through RGBA: PIL warns when a palette image with transparency is converted straight to RGB.
        rgb = img.convert("RGBA").convert("RGB")
    else:
        rgb = img.convert("RGB")
    arr = np.asarray(rgb, dtype=np.uint8)
    if (arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 1] == arr[:, :, 2]).all():
        return arr[:, :, :1]  # a grey palette (e.g. a grey GIF): one channel, as for mode "L"
    return arr


def _check_values(t: Tensor, what: str) -> Tensor:
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{what} contains NaN or infinite values")
    lo, hi = float(t.min()), float(t.max())
    if lo < -_RANGE_SLACK or hi > 1.0 + _RANGE_SLACK:
        raise InputError(f"{what} values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]")
    return t.clamp_(0.0, 1.0)


def _drop_alpha(channels: int, what: str) -> None:
    if channels == 4:
        _warn(f"{what} has 4 channels; the 4th (alpha) is ignored")


def _from_array(arr: np.ndarray) -> tuple[Tensor, int]:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        hint = " (arrays are channels-last)" if arr.ndim == 3 and arr.shape[0] in (1, 3) else ""
        raise InputError(f"array must have shape (H, W) or (H, W, C) with C = 1 or 3, "
                         f"got {arr.shape}{hint}")
    _drop_alpha(arr.shape[2], "array")
    arr = arr[:, :, :3]
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "u" and size == 1:
        data = arr.astype(np.float32) / 255.0
    elif kind == "u" and size == 2:  # either byte order
        return _sixteen_to_tensor(arr), 16
    elif kind == "b":
        data = arr.astype(np.float32)
    elif kind == "f":
        data = arr.astype(np.float32)
    else:
        raise InputError(f"array dtype {arr.dtype} is not supported; give uint8, uint16 or float in [0, 1]")
    t = torch.from_numpy(np.ascontiguousarray(data)).permute(2, 0, 1)[None].contiguous()
    return _check_values(t, "array"), 8


def _from_tensor(t: Tensor) -> tuple[Tensor, int]:
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
        return t.to(torch.float32) / 255.0, 8
    if t.dtype == getattr(torch, "uint16", None):  # torch >= 2.3
        return (t.to(torch.float32) / 65535.0).contiguous(), 16
    if t.dtype == torch.bool:
        return t.to(torch.float32), 8
    if not t.is_floating_point():
        raise InputError(f"tensor dtype {t.dtype} is not supported; give uint8, uint16 or float in [0, 1]")
    return _check_values(t.to(torch.float32, copy=True).contiguous(), "tensor"), 8


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------

def _to_uint_hwc(x: Tensor, bit_depth: int = 8) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) in [0, 1] → (H, W, C) uint8 or uint16, rounded; clips, refuses NaN."""
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
    if bit_depth == 16:
        # float64: in float32, v * 65535 can land on the wrong side of a .5
        arr16 = (x.to(torch.float64).clamp(0.0, 1.0) * 65535.0).round().to(torch.int32)
        return arr16.permute(1, 2, 0).numpy().astype(np.uint16)
    arr = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return arr.permute(1, 2, 0).numpy()


def _to_pil(x: Tensor) -> Image.Image:
    arr = _to_uint_hwc(x)
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def _encode_png16(arr: np.ndarray) -> bytes:
    """(H, W, C) uint16, C = 1 or 3 → the bytes of a 16-bit grey or RGB PNG."""
    height, width, channels = arr.shape
    writer = png.Writer(width=width, height=height, greyscale=channels == 1, bitdepth=16)
    rows = np.ascontiguousarray(arr, dtype=">u2").reshape(height, width * channels)  # PNG is big-endian
    buf = io.BytesIO()
    writer.write_packed(buf, (row.tobytes() for row in rows))
    return buf.getvalue()


def _encode_tiff16(arr: np.ndarray) -> bytes:
    """(H, W, C) uint16, C = 1 or 3 → the bytes of an uncompressed 16-bit grey or RGB TIFF."""
    buf = io.BytesIO()
    if arr.shape[2] == 1:
        tifffile.imwrite(buf, arr[:, :, 0], photometric="minisblack", metadata=None)
    else:
        tifffile.imwrite(buf, arr, photometric="rgb", metadata=None)
    return buf.getvalue()


def save_image(x: Tensor, path: str | os.PathLike, *, bit_depth: int = 8) -> Path:
    """Save (1, C, H, W) or (C, H, W) in [0, 1] (C = 1 or 3) as an 8- or 16-bit image, atomically.

    The format follows the suffix (".png", ".jpg", ...); values are clipped
    to [0, 1] and rounded: ``round(v * 255)`` for ``bit_depth=8``,
    ``round(v * 65535)`` for ``bit_depth=16``, which needs ".png" or
    ".tif"/".tiff". Unknown suffixes, a missing folder, a bad ``bit_depth``
    or NaN values raise :class:`InputError`, and nothing is written. Returns
    the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if bit_depth not in (8, 16):
        raise InputError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if bit_depth == 16:
        if suffix not in _SIXTEEN_BIT_SUFFIXES:
            raise InputError(f"16-bit output needs .png or .tif/.tiff, got {suffix or '(none)'!r} for {path}")
        fmt = "PNG" if suffix == ".png" else "TIFF"
    else:
        fmt = Image.registered_extensions().get(suffix)
        if fmt is None or fmt not in Image.SAVE:
            raise InputError(f"unknown image file type {suffix or '(none)'!r} for {path}; use .png or .jpg")
    check_output_path(path, "output image")
    if bit_depth == 16:
        arr = _to_uint_hwc(x, 16)
        try:
            data = _encode_png16(arr) if fmt == "PNG" else _encode_tiff16(arr)
        except (png.Error, ValueError, OSError) as exc:
            raise InputError(f"cannot save a 16-bit image as {fmt}: {_reason(exc)}") from None
        return atomic_write_bytes(path, data)
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
      uint8 if ``like`` was uint8 (``round(v * 255)``), uint16 if it was
      uint16 (``round(v * 65535)``), else float32.
    * tensor → tensor with ``like``'s number of dimensions ((H, W), (C, H, W)
      or (1, C, H, W)), device and dtype (uint8 is rescaled to 0..255;
      other non-float dtypes give float32).
    * anything else (e.g. a file path) → the (1, C, H, W) float32 tensor.
    """
    if isinstance(like, Image.Image):
        return _to_pil(x)
    if isinstance(like, np.ndarray):
        if like.dtype.kind == "u" and like.dtype.itemsize in (1, 2):
            arr = _to_uint_hwc(x, 8 * like.dtype.itemsize)
        else:
            t = x[0] if x.ndim == 4 else x
            arr = t.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy().copy()
        if like.ndim == 2 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        return arr
    if isinstance(like, Tensor):
        t = x[0] if x.ndim == 4 else x  # (C, H, W)
        if like.dtype == torch.uint8:
            t = torch.from_numpy(_to_uint_hwc(t)).permute(2, 0, 1)
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
