"""One vocabulary across the commands and the API: sizes as W x H, comma lists, the options
every command takes, one --json convention, knob help that states each preset's value."""
from __future__ import annotations

import pytest

from isnas_fast.errors import InputError


def test_size_messages_name_width_first():
    from isnas_fast.kernels.spectral_reference import checked_strip_mask

    with pytest.raises(InputError, match=r"image 6x2 px is too small"):
        checked_strip_mask(2, 6)  # (H, W) = (2, 6)
