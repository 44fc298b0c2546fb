"""Loading, size preparation, atomic saving and returning the user's kind (isnas_fast.imageio)."""
from __future__ import annotations

import os
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from isnas_fast.io import images as imageio
from isnas_fast.io import files
from isnas_fast.io.files import FILE_MODE
from isnas_fast.errors import InputError
from isnas_fast.io import (
    atomic_write_bytes,
    atomic_write_text,
    load_image,
    prepare_size,
    save_image,
    to_like,
)


def _rgb(h=40, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png16_rgb(path, h=8, w=8):
    """A 16-bit-per-channel RGB PNG, written by hand (PIL cannot write one)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(range(6 * w)) for _ in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


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


def test_sixteen_bit_refused(tmp_path):
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode == "I;16"
    with pytest.raises(InputError, match="16-bit images are not supported; convert to 8-bit"):
        load_image(tmp_path / "g16.png")
    _png16_rgb(tmp_path / "rgb16.png")
    with pytest.raises(InputError, match="16-bit"):
        load_image(tmp_path / "rgb16.png")
    with pytest.raises(InputError, match="16-bit"):
        load_image(np.zeros((8, 8), np.uint16))
    for mode in ("I", "F"):
        with pytest.raises(InputError, match=f"mode '{mode}'"):
            load_image(Image.new(mode, (8, 8)))


def test_palette_refused(tmp_path):
    Image.fromarray(_rgb()).convert("P").save(tmp_path / "p.png")
    with pytest.raises(InputError, match="palette"):
        load_image(tmp_path / "p.png")


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

def test_prepare_size_crops_centre_with_notice():
    x = torch.arange(90 * 100, dtype=torch.float32).reshape(1, 1, 90, 100) / 9000
    out, notices = prepare_size(x)
    assert out.shape == (1, 1, 64, 96)
    assert torch.equal(out, x[..., 13:77, 2:98])
    assert notices == ["cropped image 100x90 to 96x64 (sizes must be multiples of 32)"]
    same, none = prepare_size(x[..., :64, :96])
    assert none == [] and same.shape == (1, 1, 64, 96)


def test_prepare_size_too_small():
    with pytest.raises(InputError, match="mask is 100x63"):
        prepare_size(torch.zeros(1, 3, 63, 100), what="mask")


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
