"""Installed layout (DESIGN §2): kernels/ and export/ live only inside the isnas_fast namespace."""
from __future__ import annotations

import subprocess
import sys


def test_no_top_level_kernels_or_export_module(tmp_path):
    code = (
        "import importlib.util as u, isnas_fast.kernels as k, isnas_fast.export as e;"
        "print(u.find_spec('kernels') is None, u.find_spec('export') is None, k.__name__, e.__name__)"
    )
    # Run outside the checkout so the source folders are not on sys.path.
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "isnas_fast.kernels", "isnas_fast.export"]


def test_package_data_is_shipped():
    from importlib import resources

    data = resources.files("isnas_fast").joinpath("data")
    assert data.joinpath("sample.png").is_file()
    assert len(data.joinpath("isnas_dip_522_models.csv").read_text().split()) == 522
