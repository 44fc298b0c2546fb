"""Image files from strangers: only image formats are decoded (never a
PostScript file, whatever its name), images over the pixel limit are refused
from their header before anything is decoded, and the declared dependency
minimums exclude releases with known vulnerabilities."""
from __future__ import annotations

import re
import struct
import subprocess
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
from packaging.specifiers import SpecifierSet
from PIL import EpsImagePlugin, Image

from isnas_fast.cli import main
from isnas_fast.errors import InputError
from isnas_fast.io import DEFAULT_MAX_PIXELS, default_max_pixels, read_image, set_max_pixels
from isnas_fast.io.images import MAX_PIXELS_ENV, check_pixels

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nnewpath 0 0 moveto 64 64 lineto stroke\nshowpage\n"


def _rgb(h: int = 70, w: int = 90) -> np.ndarray:
    return (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(width: int, height: int, depth: int = 8, interlace: int = 0) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with a few bytes of image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))


@pytest.fixture
def no_postscript(monkeypatch):
    """Fail loudly if Pillow's EPS reader or Ghostscript (any subprocess) is started; returns the calls."""
    calls: list[str] = []

    def forbid(what):
        def f(*args, **kwargs):
            calls.append(what)
            raise AssertionError(f"{what} was called")
        return f

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", forbid("EpsImageFile._open"))
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "load", forbid("EpsImageFile.load"))
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", forbid("Ghostscript"))
    for name in ("Popen", "run", "call", "check_call", "check_output"):
        monkeypatch.setattr(subprocess, name, forbid(f"subprocess.{name}"))
    return calls


@pytest.mark.parametrize("name", ["x.png", "x.jpg", "x"])
def test_postscript_named_as_an_image_is_refused_without_ghostscript(tmp_path, no_postscript, name):
    path = tmp_path / name
    path.write_bytes(EPS)
    with pytest.raises(InputError) as e:
        read_image(path)
    assert str(e.value) == (f"cannot read image {path}: EPS is not a supported image format "
                            "(give PNG, JPEG, TIFF, BMP, WebP, PPM/PGM/PBM or GIF)")
    assert no_postscript == []


def test_postscript_input_to_the_cli_is_one_line(tmp_path, no_postscript, capsys):
    (tmp_path / "x.png").write_bytes(EPS)
    capsys.readouterr()
    code = main(["corrupt", str(tmp_path / "x.png"), "--task", "denoise", "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "EPS is not a supported image format" in err[0]
    assert not (tmp_path / "o.png").exists() and no_postscript == []


def test_pdf_and_other_pillow_formats_are_refused(tmp_path):
    (tmp_path / "doc.png").write_bytes(b"%PDF-1.4\n1 0 obj << >> endobj\n")
    with pytest.raises(InputError, match="PDF is not a supported image format"):
        read_image(tmp_path / "doc.png")
    img = Image.fromarray(_rgb(64, 64))
    for fmt in ("PCX", "ICO", "SGI"):  # Pillow reads them; this package does not
        path = tmp_path / f"{fmt.lower()}.png"
        img.save(path, format=fmt)
        with pytest.raises(InputError, match=f"{fmt} is not a supported image format"):
            read_image(path)
    (tmp_path / "junk.png").write_bytes(b"hello, this is not an image at all")
    with pytest.raises(InputError, match="not a PNG, JPEG, TIFF, BMP, WebP, PPM/PGM/PBM or GIF file"):
        read_image(tmp_path / "junk.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(InputError, match="damaged PNG file"):
        read_image(tmp_path / "broken.png")


@pytest.mark.parametrize("suffix,kwargs", [
    (".png", {}), (".jpg", {"quality": 95}), (".tif", {}), (".bmp", {}), (".webp", {"lossless": True}),
    (".ppm", {}), (".gif", {}),
])
def test_supported_formats_still_read(tmp_path, suffix, kwargs):
    arr = _rgb(70, 90)
    img = Image.fromarray(arr)
    if suffix == ".gif":
        img = img.quantize(64)
    img.save(tmp_path / f"a{suffix}", **kwargs)
    x, depth = read_image(tmp_path / f"a{suffix}")
    assert tuple(x.shape) == (1, 3, 70, 90) and depth == 8
    if suffix in (".png", ".tif", ".bmp", ".webp", ".ppm"):  # lossless
        assert np.array_equal(np.round(x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8), arr)
    Image.fromarray(arr[:, :, 0]).save(tmp_path / "g.pgm")
    assert tuple(read_image(tmp_path / "g.pgm")[0].shape) == (1, 1, 70, 90)


# ------------------------------------------------------------ pixel limit


def test_huge_png_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(10000, 10000))
    assert path.stat().st_size < 200
    tracemalloc.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(InputError) as e:
                read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(e.value) == (f"image {path} is 10000x10000 px (100000000 pixels), over the limit of "
                            f"{DEFAULT_MAX_PIXELS} pixels; pass --max-pixels, set {MAX_PIXELS_ENV} (or "
                            "max_pixels= in Python) to allow larger images")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert peak < 20e6  # nothing of the 300 MB the pixels would take


@pytest.mark.parametrize("interlace", [0, 1])
def test_huge_sixteen_bit_headers_are_refused_before_allocating(tmp_path, interlace):
    # pypng allocates an interlaced image whole when reading starts: the limit comes first
    path = tmp_path / "bomb16.png"
    path.write_bytes(_png_header_only(60000, 60000, depth=16, interlace=interlace))
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="60000x60000 px .* over the limit"):
            read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6


def test_limit_can_be_raised_by_keyword_environment_and_setter(tmp_path, monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    path = tmp_path / "a.png"
    Image.fromarray(_rgb(80, 100)).save(path)  # 8000 pixels
    assert default_max_pixels() == DEFAULT_MAX_PIXELS >= 2048 * 2048
    check_pixels(2048, 2048, "photo")  # a 2048 x 2048 photo is within the default
    with pytest.raises(InputError, match=r"is 100x80 px \(8000 pixels\), over the limit of 7999 pixels"):
        read_image(path, max_pixels=7999)
    assert tuple(read_image(path, max_pixels=8000)[0].shape) == (1, 3, 80, 100)

    monkeypatch.setenv(MAX_PIXELS_ENV, "7999")
    with pytest.raises(InputError, match="over the limit of 7999"):
        read_image(path)
    assert read_image(path, max_pixels=8000)[1] == 8  # the keyword wins over the environment
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(InputError, match=f"{MAX_PIXELS_ENV} must be a whole number of pixels"):
        read_image(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "0")
    with pytest.raises(InputError, match=f"{MAX_PIXELS_ENV} must be a positive whole number"):
        read_image(path)

    set_max_pixels(7999)
    with pytest.raises(InputError, match="over the limit of 7999"):
        read_image(path)
    set_max_pixels(None)
    assert default_max_pixels() == DEFAULT_MAX_PIXELS and read_image(path)[1] == 8
    with pytest.raises(InputError, match="positive"):
        read_image(path, max_pixels=-1)


def test_limit_applies_to_sixteen_bit_png_and_tiff(tmp_path):
    arr = (np.random.default_rng(1).random((70, 90, 3)) * 65535).astype(np.uint16)
    with open(tmp_path / "a16.png", "wb") as fh:
        png.Writer(90, 70, greyscale=False, bitdepth=16).write(fh, arr.reshape(70, -1))
    tifffile.imwrite(tmp_path / "a16.tif", arr, photometric="rgb")
    for name in ("a16.png", "a16.tif"):
        with pytest.raises(InputError, match="90x70 px .* over the limit of 6299"):
            read_image(tmp_path / name, max_pixels=6299)
        x, depth = read_image(tmp_path / name, max_pixels=6300)
        assert depth == 16 and tuple(x.shape) == (1, 3, 70, 90)


def test_cli_honours_the_environment_limit(tmp_path, monkeypatch, capsys):
    path = tmp_path / "a.png"
    Image.fromarray(_rgb(80, 100)).save(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "7999")
    capsys.readouterr()
    code = main(["corrupt", str(path), "--task", "denoise", "-o", str(tmp_path / "o.png"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "over the limit of 7999 pixels" in err[0]
    monkeypatch.setenv(MAX_PIXELS_ENV, "8000")
    assert main(["corrupt", str(path), "--task", "denoise", "-o", str(tmp_path / "o.png"), "-q"]) == 0


# ------------------------------------------------------------ dependency minimums


def _declared(name: str) -> SpecifierSet:
    """The version range of dependency ``name`` declared in pyproject.toml."""
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    return SpecifierSet(re.search(rf'^\s*"{name}\s*([^";]*)', deps, re.M | re.I).group(1))


def test_declared_minimums_exclude_known_vulnerable_releases():
    torch_range, pillow_range = _declared("torch"), _declared("pillow")
    # torch < 2.6: torch.load(weights_only=True) can still run code (CVE-2025-32434); bundles rely on it.
    assert "2.5.1" not in torch_range and "2.6.0" in torch_range and "2.13.0" in torch_range
    # Pillow < 10.3.0: libwebp heap overflow (CVE-2023-4863, fixed 10.0.1), ImageMath.eval code
    # execution (CVE-2023-50447, fixed 10.2.0), _imagingcms buffer overflow (CVE-2024-28219, fixed 10.3.0).
    assert "10.2.0" not in pillow_range and "10.3.0" in pillow_range
