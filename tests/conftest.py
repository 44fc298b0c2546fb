"""Shared fixtures: small images cut from the bundled sample (no downloads)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest
import torch

from isnas_fast.io import load_image
from isnas_fast.search import settings as search_settings


@pytest.fixture(scope="session", autouse=True)
def quick_preset_without_blend():
    """The quick preset without its blend and its anchor, in this process, for every test.

    The blend trains a width-128 DIP-skip beside every small denoise, which would
    triple the suite's time on a 2-core CPU, and the anchor a second start of every
    super-resolution; tests that are not about them run the pick alone.  Their own
    tests (``test_blend.py``, ``test_anchor.py``) ask for them by name, through the
    same code path, and check in a fresh interpreter that the shipped preset has them.
    Subprocesses (the CLI run as a program, Ray's workers) see the preset as shipped."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(search_settings.PRESETS, "quick",
                   replace(search_settings.PRESETS["quick"], blend="none", anchor="none"))
        yield


@pytest.fixture(scope="session")
def sample() -> torch.Tensor:
    """The bundled 128x128 RGB sample, (1, 3, 128, 128) in [0, 1]."""
    with resources.as_file(resources.files("isnas_fast").joinpath("data/sample.png")) as p:
        return load_image(p)


@pytest.fixture(scope="session")
def small(sample: torch.Tensor) -> torch.Tensor:
    """A 64x64 crop of the sample, (1, 3, 64, 64)."""
    return sample[..., 32:96, 32:96].clone()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (on shared 2-core machines, two threads per
    process oversubscribe the cores: 6x slower measured); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def reseal_weights():
    """``reseal(folder, state=None)``: write ``state`` (a state_dict) as the bundle's weights.pt
    when given, then record that file's sha256 and size in its manifest, so that a crafted
    bundle passes the checksum check and is refused (or not) for what it holds; returns the
    manifest."""
    def reseal(folder: Path, state: dict | None = None) -> dict:
        if state is not None:
            torch.save(state, folder / "weights.pt")
        m = json.loads((folder / "manifest.json").read_text())
        m["files"]["weights.pt"]["sha256"] = hashlib.sha256((folder / "weights.pt").read_bytes()).hexdigest()
        m["files"]["weights.pt"]["bytes"] = (folder / "weights.pt").stat().st_size
        (folder / "manifest.json").write_text(json.dumps(m))
        return m
    return reseal
