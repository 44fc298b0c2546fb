"""How well the noise level is estimated from the noisy image alone (isnas_fast.noise).

Two sets of 64 px crops of scikit-image's sample images (``pip install
scikit-image PyWavelets``) and the paper's images shipped with the package:

* ``tuning``: the crops the estimator's clipping correction was developed on;
* ``held_out``: images and crop positions chosen before that and never
  looked at while tuning.

For sigma in {5, 10, 15, 25, 35, 50, 75} each crop is corrupted (seeded,
8-bit quantised like a file) and sigma is estimated by the package's PCA
estimator (the default), the same with 8 x 8 patches on every image
(``pca_8``: 8 x 8 x 3 on colour crops), its plain form (the default's
patches, every one of them, clipping ignored) and scikit-image's wavelet
``estimate_sigma``.  Prints median and worst
relative error per sigma and writes bench/results/noise-estimation-cpu.json.

    .venv/bin/python bench/noise_estimation.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from isnas_fast.io import load_image
from isnas_fast.noise import pca_sigma
from isnas_fast.tasks import Denoise

SIGMAS = (5, 10, 15, 25, 35, 50, 75)
TUNING = ["astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "brick", "grass", "gravel", "retina",
          "moon", "page", "text", "horse", "clock", "immunohistochemistry"]
#: (source, crop top fraction, crop left fraction): chosen before tuning, never tuned on.
HELD_OUT = [("cat", 0.1, 0.5), ("cell", 0.5, 0.5), ("microaneurysms", 0.2, 0.2), ("shepp_logan_phantom", 0.4, 0.3),
            ("binary_blobs", 0.3, 0.6), ("hubble_deep_field", 0.2, 0.7), ("colorwheel", 0.6, 0.2),
            ("logo", 0.3, 0.3), ("astronaut", 0.7, 0.1), ("coffee", 0.1, 0.1), ("paper:f16_512_rgb", 0.5, 0.5),
            ("paper:monar_256", 0.3, 0.4), ("paper:woman_rgb", 0.2, 0.3), ("brick", 0.8, 0.8)]


def noisy_copy(clean: torch.Tensor, sigma: float) -> torch.Tensor:
    """``clean`` (1, C, H, W) in [0, 1] with Gaussian noise of ``sigma`` (0..255) drawn with the seed
    ``sigma``, clipped and quantised to 8 bits as a file would hold it."""
    y = Denoise(sigma).corrupt(clean, seed=int(sigma)).y
    return (y * 255).round() / 255


def _unit_range(a: np.ndarray) -> np.ndarray:
    """``a`` scaled to [0, 1] by its own range (elevation maps, float sample arrays)."""
    return (a - a.min()) / max(float(a.max() - a.min()), 1e-12)


def _matplotlib(name: str) -> torch.Tensor:
    """One of matplotlib's sample data as (1, C, H, W) in [0, 1]: a picture (RGB), the
    16-bit MRI slice ``s1045.ima.gz`` or an elevation map (``*.npz``, scaled to its range)."""
    import matplotlib.cbook as cbook
    if name.endswith(".npz"):
        z = cbook.get_sample_data(name)
        a = _unit_range(np.asarray(z["elevation"], dtype=np.float64))
    elif name.endswith(".ima.gz"):
        with cbook.get_sample_data(name) as f:
            a = np.frombuffer(f.read(), np.uint16).reshape(256, 256).astype(np.float64)
        a = a / float(a.max())
    else:
        from PIL import Image
        with Image.open(cbook.get_sample_data(name, asfileobj=False)) as im:
            a = np.asarray(im.convert("RGB")).astype(np.float64) / 255.0
    if a.ndim == 2:
        a = a[..., None]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))[None]


def crop(name: str, top: float, left: float, size: int = 64) -> torch.Tensor:
    if name.startswith("paper:"):
        root = Path(__file__).resolve().parents[1] / "isnas_fast" / "data" / "paper"
        x = load_image(next(root.glob(name[6:] + ".*")))
    elif name.startswith("mpl:"):
        x = _matplotlib(name[4:])
    elif name.startswith("pywt:"):
        import pywt.data
        a = _unit_range(np.asarray(getattr(pywt.data, name[5:])(), dtype=np.float64))
        x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    else:
        import skimage.data
        a = skimage.data.binary_blobs(rng=0) if name == "binary_blobs" else getattr(skimage.data, name)()
        a = np.asarray(a[0] if isinstance(a, tuple) else a)  # stereo_motorcycle: its left view
        a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else max(1.0, float(a.max())))
        if a.ndim == 2:
            a = a[..., None]
        x = torch.from_numpy(np.ascontiguousarray(a[..., :3].transpose(2, 0, 1)))[None]
    h, w = x.shape[-2:]
    t, l = int((h - size) * top), int((w - size) * left)
    return x[..., t:t + size, l:l + size].contiguous()


def main() -> int:
    from skimage.restoration import estimate_sigma

    sets = {"tuning": [(n, crop(n, 1 / 3, 1 / 3)) for n in TUNING],
            "held_out": [(n, crop(n, t, l)) for n, t, l in HELD_OUT]}
    out: dict = {"sigmas": list(SIGMAS), "sets": {}}
    for set_name, crops in sets.items():
        rows = []
        for name, x in crops:
            for s in SIGMAS:
                y = noisy_copy(x, s)
                pca = pca_sigma(y).sigma
                plain = pca_sigma(y, max_iterations=0).sigma
                large = pca_sigma(y, patch=8).sigma
                wav = float(estimate_sigma(y[0].numpy().transpose(1, 2, 0).astype(np.float64), channel_axis=-1,
                                           average_sigmas=True)) * 255
                rows.append({"image": name, "sigma": s, "pca": round(pca, 3), "pca_plain": round(plain, 3), "pca_8": round(large, 3),
                             "wavelet_mad": round(wav, 3)})
        summary = {}
        print(f"\n{set_name} ({len(crops)} crops): relative error |estimate / sigma - 1|, median / worst")
        print("sigma   " + "".join(f"{m:>22s}" for m in ("pca", "pca_8", "pca_plain", "wavelet_mad")))
        for s in SIGMAS:
            sel = [r for r in rows if r["sigma"] == s]
            line, summary[s] = f"{s:5d}   ", {}
            for m in ("pca", "pca_8", "pca_plain", "wavelet_mad"):
                e = np.abs(np.array([r[m] for r in sel]) / s - 1) * 100
                summary[s][m] = {"median_pct": round(float(np.median(e)), 1), "worst_pct": round(float(e.max()), 1)}
                line += f"{np.median(e):10.1f}% /{e.max():7.1f}%"
            print(line)
        out["sets"][set_name] = {"images": [n for n, _ in crops], "rows": rows, "summary": summary}
    path = Path(__file__).resolve().parent / "results" / "noise-estimation-cpu.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
