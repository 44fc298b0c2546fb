"""What padding to multiples of 32 costs: a crop whose sides are not multiples of 32,
restored whole (padded by reflection, cropped back), against its centre 64x64 region
restored alone (no padding), PSNR over the same 64x64 pixels.

Held-out 80x88 crops of scikit-image's sample images and the paper's images
(``pip install scikit-image``), sigma 25, NAS-DIP's denoising architecture at
width 16 (no search: only the size differs), the default early stop, seed 0.
Writes bench/results/padding-cost-cpu.json.

    .venv/bin/python bench/padding_cost.py
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from noise_estimation import crop  # noqa: E402

import isnas_fast  # noqa: E402
from isnas_fast.quality import psnr  # noqa: E402
from isnas_fast.stats import mean_ci  # noqa: E402
from isnas_fast.tasks import Denoise  # noqa: E402

#: (source, crop top fraction, crop left fraction): never used for tuning.
IMAGES = [("cat", 0.4, 0.4), ("hubble_deep_field", 0.5, 0.3), ("paper:f16_512_rgb", 0.3, 0.6),
          ("paper:woman_rgb", 0.6, 0.5), ("coffee", 0.5, 0.7), ("retina", 0.45, 0.45),
          ("immunohistochemistry", 0.7, 0.2), ("astronaut", 0.25, 0.55)]


def main() -> int:
    torch.set_num_threads(2)
    rows = []
    for name, t, l in IMAGES:
        big = crop(name, t, l, size=88)[..., 4:84, :]  # 80 x 88: padded to 96 x 96
        noisy = Denoise(25).corrupt(big, seed=1).y
        noisy = (noisy * 255).round() / 255
        box = (slice(8, 72), slice(12, 76))  # the centre 64 x 64
        t0 = time.perf_counter()
        whole = isnas_fast.restore(noisy, "denoise", sigma=25, arch="nasdip-denoise", width=16, quiet=True)
        t1 = time.perf_counter()
        alone = isnas_fast.restore(noisy[..., box[0], box[1]].contiguous(), "denoise", sigma=25,
                                   arch="nasdip-denoise", width=16, quiet=True)
        t2 = time.perf_counter()
        clean = big[..., box[0], box[1]]
        p_whole = float(psnr(whole.tensor[..., box[0], box[1]], clean)[0])
        p_alone = float(psnr(alone.tensor, clean)[0])
        rows.append({"image": name, "padded_whole": round(p_whole, 4), "centre_alone": round(p_alone, 4),
                     "difference": round(p_whole - p_alone, 4), "seconds": [round(t1 - t0, 1), round(t2 - t1, 1)]})
        print(json.dumps(rows[-1]), flush=True)
    d = np.array([r["difference"] for r in rows])
    mean, half = mean_ci(d.tolist())
    summary = {"mean_difference_db": round(mean, 4), "ci95": [round(mean - half, 4), round(mean + half, 4)],
               "n": len(d)}
    print(summary)
    path = Path(__file__).resolve().parent / "results" / "padding-cost-cpu.json"
    path.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
