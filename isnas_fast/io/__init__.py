"""Files and images at the package's edge (docs/design.md §2: "convert once").

* :mod:`~isnas_fast.io.images` -- decoding what users have (paths, PIL
  images, NumPy arrays, tensors) to ``(1, C, H, W)`` float32 in [0, 1], and
  encoding results back (8-bit, or 16-bit PNG/TIFF).
* :mod:`~isnas_fast.io.sizing` -- the size policy (reflection padding to multiples of 32, cropped back).
* :mod:`~isnas_fast.io.files` -- atomic writes and the one output-path check.
"""
from __future__ import annotations

from .files import (atomic_path, atomic_write_bytes, atomic_write_folder, atomic_write_text, check_output_folder,
                    check_output_path)
from .images import (DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, default_max_pixels, load_image, read_image, save_image,
                     set_max_pixels, to_like)
from .sizing import Padding, check_min_size, plan_padding

__all__ = [
    "load_image", "read_image", "save_image", "to_like", "IMAGE_SUFFIXES", "Padding", "plan_padding", "check_min_size",
    "atomic_write_bytes", "atomic_write_text", "atomic_write_folder", "atomic_path", "check_output_path",
    "check_output_folder", "DEFAULT_MAX_PIXELS", "default_max_pixels", "set_max_pixels",
]
