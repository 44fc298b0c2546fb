"""Size policy: what sizes the networks accept (multiples of 32, at least 64 px), apart
from decoding.  Images are padded by reflection to the next multiple and the
output is cropped back, so every task returns exactly the input's size
(super-resolution: factor x the input's)."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError

__all__ = ["Padding", "plan_padding", "check_min_size"]


@dataclass(frozen=True)
class Padding:
    """Pixels added on each side of an input (input pixels) and the output's scale.

    ``top``/``bottom``/``left``/``right``: rows and columns added to the
    corrupted image; ``factor``: output pixels per input pixel (the SR
    factor, else 1).  ``height``/``width``: the input's own size.
    """

    top: int
    bottom: int
    left: int
    right: int
    height: int
    width: int
    factor: int = 1

    @property
    def any(self) -> bool:
        """Whether anything is added."""
        return bool(self.top or self.bottom or self.left or self.right)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of the input's own pixels in the padded output (output px)."""
        f = self.factor
        return self.top * f, self.left * f, self.height * f, self.width * f

    def pad(self, x: Tensor, mode: str = "reflect", *, scale: int = 1) -> Tensor:
        """Pad (B, C, H, W) ``x`` (at ``scale`` x the input's size) by this padding.

        ``mode``: ``"reflect"`` (mirror without repeating the edge pixel),
        ``"replicate"`` or ``"zeros"``.
        """
        if not self.any:
            return x
        pads = (self.left * scale, self.right * scale, self.top * scale, self.bottom * scale)
        if mode == "zeros":
            return F.pad(x, pads)
        return F.pad(x, pads, mode=mode)

    def crop(self, out: Tensor) -> Tensor:
        """The input's own region of a padded output (B, C, H*f, W*f) -> (B, C, height*f, width*f)."""
        if not self.any:
            return out
        top, left, h, w = self.box
        return out[..., top:top + h, left:left + w]

    def as_dict(self) -> dict:
        """JSON-able form (reports, bundle manifests): padding in input px, the crop box in output px."""
        top, left, h, w = self.box
        return {"pad": {"top": self.top, "bottom": self.bottom, "left": self.left, "right": self.right},
                "mode": "reflect", "crop": {"top": top, "left": left, "height": h, "width": w}}


def check_min_size(h: int, w: int, *, min_side: int, what: str = "image", factor: int = 1) -> None:
    """Raise :class:`InputError` when a side of an (h, w) input is under ``min_side`` px."""
    if h < min_side or w < min_side:
        raise InputError(f"{what} is {w}x{h} px; both sides must be at least {min_side} px"
                         + (f" (the x{factor} output must be at least {min_side * factor} px)" if factor > 1 else ""))


def plan_padding(h: int, w: int, *, multiple: int = 32, min_side: int = 64, factor: int = 1,
                 what: str = "image") -> Padding:
    """The padding that brings an (h, w) input to multiples of ``multiple`` (input px).

    The extra rows and columns are split between both sides (the larger half
    at the bottom / right).  Sides shorter than ``min_side`` raise
    :class:`InputError`.
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise InputError(f"multiple must be a positive integer, got {multiple!r}")
    check_min_size(h, w, min_side=max(int(min_side), 1), what=what, factor=factor)
    ph, pw = -h % multiple, -w % multiple
    return Padding(ph // 2, ph - ph // 2, pw // 2, pw - pw // 2, int(h), int(w), int(factor))
