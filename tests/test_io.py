"""Loading, size preparation, atomic saving and returning the user's kind (isnas_fast.io)."""
from __future__ import annotations

import io
import os
import warnings

import numpy as np
import png
import pytest
import tifffile
import torch
from PIL import Image

from isnas_fast.io import files
from isnas_fast.io.files import FILE_MODE
from isnas_fast.errors import InputError
from isnas_fast.io import (
    atomic_write_bytes,
    atomic_write_text,
    load_image,
    plan_padding,
    read_image,
    save_image,
    to_like,
)


def _rgb(h=40, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _u16(shape, seed=0):
    """Random 16-bit values, with both ends of the range present."""
    arr = np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)
    arr.flat[0], arr.flat[-1] = 0, 65535
    return arr


def _exact(arr):
    """What a 16-bit source must load as: (1, C, H, W) float32 = value / 65535."""
    hwc = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(hwc.astype(np.float32) / 65535).permute(2, 0, 1)[None]


def _write_png16(path, arr, alpha=False):
    """(H, W) or (H, W, C) uint16 → a 16-bit PNG written by pypng (grey, grey + alpha, RGB or RGBA)."""
    h, w = arr.shape[:2]
    planes = 1 if arr.ndim == 2 else arr.shape[2]
    writer = png.Writer(w, h, greyscale=planes in (1, 2), alpha=alpha, bitdepth=16)
    with open(path, "wb") as fh:
        writer.write(fh, arr.reshape(h, w * planes).tolist())


def _png_with_exif(data, orientation):
    """PNG bytes with an eXIf chunk (EXIF orientation) inserted after IHDR."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw = exif.tobytes()
    chunks = list(png.Reader(bytes=data).chunks())
    chunks.insert(1, (b"eXIf", raw[6:] if raw.startswith(b"Exif\x00\x00") else raw))
    buf = io.BytesIO()
    png.write_chunks(buf, chunks)
    return buf.getvalue()


# ---------------------------------------------------------------- loading

def test_png_roundtrip(tmp_path):
    arr = _rgb()
    x = load_image(arr)
    assert x.shape == (1, 3, 40, 48) and x.dtype == torch.float32
    out = save_image(x, tmp_path / "a.png")
    assert out == tmp_path / "a.png"
    back = load_image(tmp_path / "a.png")
    assert torch.equal(back, x)
    with Image.open(tmp_path / "a.png") as img:
        assert np.array_equal(np.asarray(img), arr)
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


def test_grey_roundtrip(tmp_path):
    arr = _rgb()[:, :, 0]
    save_image(load_image(arr), str(tmp_path / "g.png"))
    back = load_image(str(tmp_path / "g.png"))
    assert back.shape == (1, 1, 40, 48)
    assert np.array_equal((back[0, 0].numpy() * 255).round().astype(np.uint8), arr)


def test_rgba_warns_and_drops_alpha(tmp_path):
    rgba = np.dstack([_rgb(), np.full((40, 48), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="alpha"):
        x = load_image(tmp_path / "a.png")
    assert torch.equal(x, load_image(rgba[:, :, :3]))
    with pytest.warns(UserWarning, match="alpha"):
        assert load_image(Image.fromarray(rgba[:, :, [0, 3]], "LA")).shape == (1, 1, 40, 48)


def test_mode_conversions():
    grey = Image.fromarray(_rgb()[:, :, 0])
    assert load_image(grey.convert("1")).shape == (1, 1, 40, 48)
    assert set(torch.unique(load_image(grey.convert("1"))).tolist()) <= {0.0, 1.0}
    cmyk = Image.fromarray(_rgb()).convert("CMYK")
    assert load_image(cmyk).shape == (1, 3, 40, 48)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plain RGB / L load without any warning
        load_image(Image.fromarray(_rgb()))
        load_image(grey)


def test_sixteen_bit_png_keeps_precision(tmp_path):
    grey, rgb = _u16((20, 24), seed=1), _u16((20, 24, 3), seed=2)
    _write_png16(tmp_path / "g16.png", grey)
    _write_png16(tmp_path / "rgb16.png", rgb)
    with Image.open(tmp_path / "rgb16.png") as img:
        assert img.mode == "RGB"  # what PIL alone would give: 8 bits per channel
    for name, arr in (("g16.png", grey), ("rgb16.png", rgb)):
        x, depth = read_image(tmp_path / name)
        assert depth == 16 and x.dtype == torch.float32
        assert torch.equal(x, _exact(arr))
        assert torch.equal(load_image(str(tmp_path / name)), x)


def test_sixteen_bit_tiff_keeps_precision(tmp_path):
    grey, rgb = _u16((20, 24), seed=3), _u16((20, 24, 3), seed=4)
    tifffile.imwrite(tmp_path / "g16.tif", grey, photometric="minisblack")
    tifffile.imwrite(tmp_path / "rgb16.tiff", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "planar16.tif", np.moveaxis(rgb, -1, 0), photometric="rgb",
                     planarconfig="separate")
    tifffile.imwrite(tmp_path / "be16.tif", grey.astype(">u2"), byteorder=">")
    for name, arr in (("g16.tif", grey), ("rgb16.tiff", rgb), ("planar16.tif", rgb), ("be16.tif", grey)):
        x, depth = read_image(tmp_path / name)
        assert depth == 16, name
        assert torch.equal(x, _exact(arr)), name


def test_sixteen_bit_save_roundtrip(tmp_path):
    for shape in ((1, 3, 10, 12), (1, 1, 10, 12)):
        x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        x[0, 0, 0, 0], x[0, 0, 0, 1] = 0.0, 1.0
        expected = (x[0].double() * 65535).round().to(torch.int32).permute(1, 2, 0).numpy().astype(np.uint16)
        for name in ("o16.png", "o16.tif", "o16.tiff"):
            assert save_image(x, tmp_path / name, bit_depth=16) == tmp_path / name
            if name.endswith(".png"):
                width, height, rows, info = png.Reader(filename=str(tmp_path / name)).read()
                assert info["bitdepth"] == 16 and info["planes"] == shape[1] and not info["alpha"]
                stored = np.array([list(r) for r in rows], np.uint16).reshape(height, width, shape[1])
            else:
                stored = tifffile.imread(tmp_path / name).reshape(10, 12, shape[1])
                assert stored.dtype == np.uint16
            assert np.array_equal(stored, expected), name
            back, depth = read_image(tmp_path / name)
            assert depth == 16 and torch.equal(back, _exact(expected))
            save_image(back, tmp_path / ("again" + name), bit_depth=16)  # 16-bit → 16-bit is lossless
            assert torch.equal(load_image(tmp_path / ("again" + name)), back)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["o16.png", "o16.tif", "o16.tiff", "againo16.png", "againo16.tif", "againo16.tiff"])


def test_eight_bit_sources_have_depth_8(tmp_path):
    save_image(load_image(_rgb()), tmp_path / "a.png")
    assert read_image(tmp_path / "a.png")[1] == 8
    Image.fromarray(_rgb()).save(tmp_path / "a.tif")
    x, depth = read_image(tmp_path / "a.tif")
    assert depth == 8 and torch.equal(x, load_image(_rgb()))
    assert read_image(_rgb())[1] == 8
    assert read_image(np.random.default_rng(0).random((8, 8)))[1] == 8
    assert read_image(torch.rand(3, 8, 8))[1] == 8
    assert read_image(Image.fromarray(_rgb()))[1] == 8


def test_sixteen_bit_rgba_drops_alpha_with_warning(tmp_path):
    rgba, la = _u16((12, 16, 4), seed=5), _u16((12, 16, 2), seed=6)
    _write_png16(tmp_path / "rgba16.png", rgba, alpha=True)
    _write_png16(tmp_path / "la16.png", la, alpha=True)
    tifffile.imwrite(tmp_path / "rgba16.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    for name, arr in (("rgba16.png", rgba[:, :, :3]), ("la16.png", la[:, :, :1]), ("rgba16.tif", rgba[:, :, :3])):
        with pytest.warns(UserWarning, match="alpha"):
            x, depth = read_image(tmp_path / name)
        assert depth == 16 and torch.equal(x, _exact(arr)), name


def test_sixteen_bit_orientation_applied(tmp_path):
    arr8 = _rgb(6, 10, seed=7)
    arr16 = arr8.astype(np.uint16) * 257  # v * 257 / 65535 == v / 255: the same floats as the 8-bit file
    _write_png16(tmp_path / "plain16.png", arr16)
    data = (tmp_path / "plain16.png").read_bytes()
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(arr8).save(tmp_path / "o8.png", exif=exif)
        (tmp_path / "o16.png").write_bytes(_png_with_exif(data, orientation))
        x16, depth = read_image(tmp_path / "o16.png")
        assert depth == 16 and torch.equal(x16, load_image(tmp_path / "o8.png")), orientation
    tifffile.imwrite(tmp_path / "o16.tif", arr16, photometric="rgb", extratags=[(0x0112, "H", 1, 6, True)])
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr8).save(tmp_path / "o8.png", exif=exif)
    x16 = load_image(tmp_path / "o16.tif")
    assert x16.shape == (1, 3, 10, 6) and torch.equal(x16, load_image(tmp_path / "o8.png"))


def test_truncated_sixteen_bit_files_refused(tmp_path):
    _write_png16(tmp_path / "full.png", _u16((64, 64, 3)))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut16.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read image .*cut16.png"):
        load_image(tmp_path / "cut16.png")
    tifffile.imwrite(tmp_path / "full.tif", _u16((64, 64, 3)), photometric="rgb")
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut16.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut16.tif"):
        load_image(tmp_path / "cut16.tif")


def test_sixteen_bit_arrays_tensors_and_pil():
    grey, rgb = _u16((8, 10), seed=8), _u16((8, 10, 3), seed=9)
    for arr in (grey, rgb, grey[:, :, None], rgb.astype(">u2")):
        x, depth = read_image(arr)
        assert depth == 16 and torch.equal(x, _exact(arr.astype(np.uint16)))
    with pytest.warns(UserWarning, match="alpha"):
        assert torch.equal(read_image(np.dstack([rgb, grey]))[0], _exact(rgb))
    t = torch.from_numpy(rgb.astype(np.int32)).to(torch.uint16).permute(2, 0, 1)
    x, depth = read_image(t)
    assert depth == 16 and torch.equal(x, _exact(rgb))
    x, depth = read_image(Image.fromarray(grey))  # PIL mode "I;16"
    assert depth == 16 and torch.equal(x, _exact(grey))
    with pytest.raises(InputError, match="dtype int16"):
        load_image(grey.astype(np.int16))
    for mode in ("I", "F"):  # 32-bit modes stay refused
        with pytest.raises(InputError, match=f"mode '{mode}'"):
            load_image(Image.new(mode, (8, 8)))


def test_to_like_uint16():
    rgb = _u16((8, 10, 3), seed=10)
    out = to_like(load_image(rgb), rgb)
    assert out.dtype == np.uint16 and np.array_equal(out, rgb)
    grey = rgb[:, :, 0]
    out = to_like(load_image(grey), grey)
    assert out.dtype == np.uint16 and out.shape == (8, 10) and np.array_equal(out, grey)


def _palette_image(mode="P"):
    """A palette image of distinct, non-grey colours in a pattern that uses all of them."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 100, 50), (10, 20, 30), (255, 255, 0)]
    img = Image.new("P", (24, 16))
    img.putpalette([c for rgb in colours for c in rgb])
    img.putdata([(x * 7 + y * 3) % len(colours) for y in range(16) for x in range(24)])
    return img.convert("PA") if mode == "PA" else img


def test_palette_read_as_rgb(tmp_path):
    img = _palette_image()
    expected = load_image(img.convert("RGB"))
    assert expected.shape == (1, 3, 16, 24)
    img.save(tmp_path / "p.png")
    img.save(tmp_path / "p.gif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no transparency: no warning
        assert torch.equal(load_image(img), expected)
        for name in ("p.png", "p.gif"):
            with Image.open(tmp_path / name) as f:
                assert f.mode == "P"
            x, depth = read_image(tmp_path / name)
            assert depth == 8 and torch.equal(x, expected), name
        grey = Image.fromarray(_rgb()[:, :, 0]).convert("P")  # grey palette: one channel
        assert torch.equal(load_image(grey), load_image(grey.convert("L")))


def test_palette_transparency_drops_alpha_with_warning(tmp_path):
    img = _palette_image()
    expected = load_image(img.convert("RGB"))
    img.save(tmp_path / "t.png", transparency=2)
    with Image.open(tmp_path / "t.png") as f:
        assert f.mode == "P" and "transparency" in f.info
    with pytest.warns(UserWarning, match="alpha"):
        assert torch.equal(load_image(tmp_path / "t.png"), expected)
    pa = _palette_image("PA")
    assert pa.mode == "PA"
    with pytest.warns(UserWarning, match="alpha"):
        assert torch.equal(load_image(pa), expected)


def test_sixteen_bit_output_needs_png_or_tiff(tmp_path):
    x = torch.rand(1, 3, 8, 8)
    for name in ("a.jpg", "a.bmp", "a"):
        with pytest.raises(InputError, match=r"16-bit output needs \.png or \.tif/\.tiff"):
            save_image(x, tmp_path / name, bit_depth=16)
    with pytest.raises(InputError, match="bit_depth must be 8 or 16"):
        save_image(x, tmp_path / "a.png", bit_depth=12)
    with pytest.raises(InputError, match="NaN"):
        save_image(torch.full((3, 8, 8), float("nan")), tmp_path / "n.png", bit_depth=16)
    with pytest.raises(InputError, match="output folder does not exist"):
        save_image(x, tmp_path / "missing" / "a.png", bit_depth=16)
    assert os.listdir(tmp_path) == []


def test_truncated_png_refused(tmp_path):
    Image.fromarray(_rgb(128, 128)).save(tmp_path / "full.png")  # noise: barely compresses
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.png"):
        load_image(tmp_path / "cut.png")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="cannot read image"):
        load_image(tmp_path / "junk.png")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="not a file"):
        load_image(tmp_path)


def test_exif_orientation_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when shown
    Image.fromarray(_rgb(32, 64)).save(tmp_path / "o.png", exif=exif)
    assert load_image(tmp_path / "o.png").shape == (1, 3, 64, 32)


def test_arrays():
    f = np.random.default_rng(0).random((40, 48, 3)).astype(np.float64)
    x = load_image(f)
    assert x.dtype == torch.float32 and np.allclose(x[0].permute(1, 2, 0).numpy(), f, atol=1e-7)
    assert load_image(np.ones((40, 48, 1), np.float32)).shape == (1, 1, 40, 48)
    assert torch.equal(load_image(np.ones((40, 48), bool)), torch.ones(1, 1, 40, 48))
    nan = f.copy()
    nan[3, 4, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        load_image(nan)
    with pytest.raises(InputError, match="NaN"):
        load_image(np.full((8, 8), np.inf))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        load_image(f * 255)
    with pytest.raises(InputError, match="channels-last"):
        load_image(np.zeros((3, 40, 48)))
    with pytest.raises(InputError, match="C = 1 or 3"):
        load_image(np.zeros((40, 48, 2)))
    with pytest.raises(InputError, match="shape"):
        load_image(np.zeros((1, 40, 48, 3)))
    with pytest.raises(InputError, match="dtype"):
        load_image(np.zeros((8, 8), np.int64))
    with pytest.warns(UserWarning, match="alpha"):
        assert load_image(np.zeros((8, 8, 4), np.uint8)).shape == (1, 3, 8, 8)


def test_tensors():
    t = torch.rand(3, 40, 48)
    x = load_image(t)
    assert x.shape == (1, 3, 40, 48) and torch.equal(x[0], t)
    x.zero_()
    assert t.abs().sum() > 0  # the user's tensor is not aliased
    assert load_image(torch.rand(40, 48)).shape == (1, 1, 40, 48)
    assert torch.equal(load_image(torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)),
                       torch.ones(1, 3, 4, 4))
    with pytest.raises(InputError, match="batch"):
        load_image(torch.rand(2, 3, 8, 8))
    with pytest.raises(InputError, match="channels"):
        load_image(torch.rand(1, 5, 8, 8))
    with pytest.raises(InputError, match="NaN"):
        load_image(torch.full((3, 8, 8), float("nan")))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        load_image(torch.full((3, 8, 8), -0.5))
    with pytest.raises(InputError, match="unsupported image type"):
        load_image([[0.0]])


# ---------------------------------------------------------------- size

def test_padding_reaches_multiples_and_crops_back():
    x = torch.rand(1, 3, 90, 100)
    pad = plan_padding(90, 100)
    assert (pad.top, pad.bottom, pad.left, pad.right) == (3, 3, 14, 14)
    padded = pad.pad(x)
    assert padded.shape == (1, 3, 96, 128)
    # reflection: the row above the image mirrors the image's second row
    assert torch.equal(padded[..., 2, 14:114], x[..., 1, :])
    assert torch.equal(pad.crop(padded), x)
    assert pad.box == (3, 14, 90, 100)
    same = plan_padding(64, 96)
    assert not same.any and same.crop(x) is x


def test_padding_scales_for_super_resolution():
    pad = plan_padding(30, 21, multiple=8, min_side=16, factor=4)
    assert (pad.top, pad.bottom, pad.left, pad.right) == (1, 1, 1, 2)
    out = torch.rand(1, 3, 32 * 4, 24 * 4)
    assert pad.crop(out).shape == (1, 3, 120, 84)
    assert pad.box == (4, 4, 120, 84)
    assert pad.pad(torch.rand(1, 3, 120, 84), scale=4).shape == (1, 3, 128, 96)


def test_padding_too_small():
    with pytest.raises(InputError, match="mask is 100x63"):
        plan_padding(63, 100, what="mask")


# ---------------------------------------------------------------- saving

def test_save_into_missing_folder(tmp_path):
    target = tmp_path / "missing" / "a.png"
    with pytest.raises(InputError, match="output folder does not exist"):
        save_image(torch.rand(1, 3, 8, 8), target)
    assert not (tmp_path / "missing").exists()
    assert os.listdir(tmp_path) == []


def test_save_refuses_bad_input_and_writes_nothing(tmp_path):
    with pytest.raises(InputError, match="NaN"):
        save_image(torch.full((3, 8, 8), float("nan")), tmp_path / "n.png")
    with pytest.raises(InputError, match="unknown image file type"):
        save_image(torch.rand(3, 8, 8), tmp_path / "a.xyz")
    with pytest.raises(InputError, match="C = 1 or 3"):
        save_image(torch.rand(2, 8, 8), tmp_path / "a.png")
    assert os.listdir(tmp_path) == []


def test_save_jpeg_and_clipping(tmp_path):
    x = torch.rand(1, 3, 16, 16) * 1.4 - 0.2  # out of range values are clipped
    save_image(x, tmp_path / "a.jpg")
    with Image.open(tmp_path / "a.jpg") as img:
        assert img.format == "JPEG"
    save_image(x, tmp_path / "b.png")
    back = load_image(tmp_path / "b.png")
    assert torch.allclose(back, x.clamp(0, 1), atol=0.5 / 255 + 1e-6)


def test_atomic_write_leaves_no_temp_file(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_text(p, '{"a": 1}')
    atomic_write_text(p, '{"a": 2}')
    assert p.read_text() == '{"a": 2}'
    assert os.listdir(tmp_path) == ["r.json"]
    mode = p.stat().st_mode & 0o777
    assert mode == FILE_MODE


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "r.bin"
    atomic_write_bytes(p, b"old")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(InputError, match="No space left"):
        atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["r.bin"]


def test_atomic_write_missing_folder(tmp_path):
    with pytest.raises(InputError, match="output folder does not exist"):
        atomic_write_text(tmp_path / "x" / "r.json", "{}")


# ---------------------------------------------------------------- to_like

def test_to_like():
    x = load_image(_rgb())
    pil = to_like(x, Image.new("RGB", (4, 4)))
    assert isinstance(pil, Image.Image) and pil.mode == "RGB" and pil.size == (48, 40)
    assert np.array_equal(np.asarray(pil), _rgb())
    u8 = to_like(x, np.zeros((2, 2, 3), np.uint8))
    assert u8.dtype == np.uint8 and np.array_equal(u8, _rgb())
    f32 = to_like(x, np.zeros((2, 2, 3)))
    assert f32.dtype == np.float32 and f32.shape == (40, 48, 3)
    grey = load_image(_rgb()[:, :, 0])
    assert to_like(grey, np.zeros((2, 2))).shape == (40, 48)
    assert to_like(grey, Image.new("L", (2, 2))).mode == "L"
    chw = to_like(x, torch.zeros(3, 2, 2))
    assert chw.shape == (3, 40, 48) and chw.dtype == torch.float32 and torch.equal(chw, x[0])
    t8 = to_like(x, torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    assert t8.dtype == torch.uint8 and t8.shape == (1, 3, 40, 48)
    assert torch.equal(t8[0].permute(1, 2, 0), torch.from_numpy(_rgb()))
    assert to_like(x, "in.png").shape == (1, 3, 40, 48)
