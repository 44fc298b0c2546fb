"""Size policy: what sizes the networks accept (multiples of 32, at least 64 px),
apart from decoding.  Images are centre-cropped, never resized."""
from __future__ import annotations

from torch import Tensor

from ..errors import InputError

__all__ = ["prepare_size", "crop_offsets"]


def crop_offsets(h: int, w: int, multiple: int) -> tuple[int, int, int, int]:
    """``(top, left, new_h, new_w)`` of the centre crop of an (h, w) image to multiples of ``multiple``."""
    nh, nw = h - h % multiple, w - w % multiple
    return (h - nh) // 2, (w - nw) // 2, nh, nw


def prepare_size(x: Tensor, *, multiple: int = 32, min_side: int = 64,
                 what: str = "image") -> tuple[Tensor, list[str]]:
    """Centre-crop (B, C, H, W) ``x`` to multiples of ``multiple``; returns (x, notices).

    Sides shorter than ``min_side`` raise :class:`InputError`. A crop adds a
    notice such as ``"cropped image 100x90 to 96x64 (sizes must be multiples
    of 32)"`` (sizes are width x height); no crop, no notice.
    """
    if not isinstance(x, Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"{what} must be a (B, C, H, W) tensor, got {shape}")
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise InputError(f"multiple must be a positive integer, got {multiple!r}")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    floor = max(int(min_side), multiple)
    if h < floor or w < floor:
        raise InputError(f"{what} is {w}x{h} px; both sides must be at least {floor} px")
    new_h, new_w = h - h % multiple, w - w % multiple
    if (new_h, new_w) == (h, w):
        return x, []
    top, left = (h - new_h) // 2, (w - new_w) // 2
    cropped = x[..., top:top + new_h, left:left + new_w]
    notice = (f"cropped {what} {w}x{h} to {new_w}x{new_h} "
              f"(sizes must be multiples of {multiple})")
    return cropped, [notice]


