"""The 24 clean images of the search study: 64 px crops of images that packages ship.

Sixteen are for tuning the default search; eight (a third) were chosen with
them, before any tuning, and are kept aside as the held-out set, reported
separately.  Sources: scikit-image's ``skimage.data`` (photographs, textures,
text, medical and astronomical images, drawings) and matplotlib's sample data
(``grace_hopper.jpg``), plus ``flat:`` crops: the 64 px window of lowest
gradient energy in an image (sky, background), so that flat and smooth
content is represented, not left to chance.

    .venv/bin/python bench/search_images.py OUT_DIR    # writes OUT_DIR/{tuning,held_out}/*.png

Each entry is ``(name, source, top, left)``: the crop's top-left corner as a
fraction of the free room ((H - 64) * top, (W - 64) * left); ``flat:`` sources
ignore the fractions.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SIZE = 64

TUNING = [
    ("astronaut-face", "astronaut", 0.20, 0.45),   # photograph of a person
    ("camera-sky", "flat:camera", 0, 0),           # flat sky
    ("coffee", "coffee", 0.30, 0.40),              # photograph
    ("chelsea-fur", "chelsea", 0.50, 0.30),        # fur texture
    ("brick", "brick", 0.50, 0.50),                # texture
    ("grass", "grass", 0.50, 0.50),                # texture
    ("gravel", "gravel", 0.50, 0.50),              # texture
    ("text", "text", 0.50, 0.30),                  # printed text
    ("page", "page", 0.40, 0.60),                  # scanned document
    ("moon", "moon", 0.40, 0.40),                  # smooth, lunar surface
    ("hubble", "hubble_deep_field", 0.40, 0.40),   # astronomical
    ("retina", "retina", 0.50, 0.40),              # medical (fundus)
    ("logo", "logo", 0.40, 0.40),                  # drawing
    ("colorwheel", "colorwheel", 0.30, 0.30),      # smooth colour gradient
    ("phantom", "shepp_logan_phantom", 0.50, 0.50),  # medical drawing, flat regions
    ("rocket-sky", "flat:rocket", 0, 0),           # smooth sky gradient
]
HELD_OUT = [
    ("cell", "cell", 0.50, 0.50),                  # microscopy
    ("coins", "coins", 0.50, 0.50),                # photograph
    ("horse", "horse", 0.50, 0.50),                # binary silhouette drawing
    ("ihc", "immunohistochemistry", 0.60, 0.30),   # medical (stained tissue)
    ("microaneurysms", "microaneurysms", 0.50, 0.50),  # medical, smooth
    ("grace-hopper", "mpl:grace_hopper.jpg", 0.30, 0.50),  # photograph of a person
    ("clock-wall", "flat:clock", 0, 0),            # flat wall
    ("coffee-table", "flat:coffee", 0, 0),         # smooth background
]


def _source(name: str) -> np.ndarray:
    """The source image as float32 (H, W, C) in [0, 1]."""
    if name.startswith("mpl:"):
        import matplotlib.cbook as cbook
        from PIL import Image
        with Image.open(cbook.get_sample_data(name[4:], asfileobj=False)) as im:
            a = np.asarray(im.convert("RGB"))
    else:
        import skimage.data
        a = np.asarray(getattr(skimage.data, name)())
    a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else max(1.0, float(a.max())))
    if a.ndim == 2:
        a = a[..., None]
    return a[..., :3]


def _flattest(a: np.ndarray) -> tuple[int, int]:
    """Top-left of the SIZE x SIZE window with the least gradient energy (stride 8)."""
    g = a.mean(axis=2)
    e = np.zeros_like(g)
    e[:-1] += np.diff(g, axis=0) ** 2
    e[:, :-1] += np.diff(g, axis=1) ** 2
    c = np.pad(e.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best = None
    for t in range(0, a.shape[0] - SIZE + 1, 8):
        for l in range(0, a.shape[1] - SIZE + 1, 8):
            s = c[t + SIZE, l + SIZE] - c[t, l + SIZE] - c[t + SIZE, l] + c[t, l]
            if best is None or s < best[0]:
                best = (s, t, l)
    return best[1], best[2]


def crop(source: str, top: float, left: float) -> np.ndarray:
    """One crop, uint8 (SIZE, SIZE, C)."""
    flat = source.startswith("flat:")
    a = _source(source[5:] if flat else source)
    h, w = a.shape[:2]
    t, l = _flattest(a) if flat else (int((h - SIZE) * top), int((w - SIZE) * left))
    return (a[t:t + SIZE, l:l + SIZE] * 255).round().astype(np.uint8)


def main(out: str) -> int:
    from PIL import Image
    for folder, entries in (("tuning", TUNING), ("held_out", HELD_OUT)):
        d = Path(out) / folder
        d.mkdir(parents=True, exist_ok=True)
        for name, source, top, left in entries:
            a = crop(source, top, left)
            Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).save(d / f"{name}.png")
    print(f"wrote {len(TUNING)} tuning and {len(HELD_OUT)} held-out images under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/search-images"))
