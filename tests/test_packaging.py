"""Installed layout (docs/design.md §2): kernels/ and export/ live only inside the isnas_fast namespace."""
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


# How the package imports: an install (editable or not) maps the top-level kernels/ and export/
# folders into the package (pyproject's package-dir); nothing in the package adds an import hook.
# Each check runs in a fresh interpreter; the editable install of this test environment is hidden
# from it where it would otherwise answer the import.
_HIDE_EDITABLE = (
    "import sys;"
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')];"
    "sys.path_hooks[:] = [h for h in sys.path_hooks if 'editable' not in getattr(h, '__module__', '')];"
    "sys.path_importer_cache.clear();"
)
_IMPORT = (
    "import sys; hooks = len(sys.meta_path);"
    "import isnas_fast, isnas_fast.kernels, isnas_fast.export;"
    "from isnas_fast.kernels import spectral_reference;"
    "from isnas_fast.export import to_onnx;"
    "assert len(sys.meta_path) == hooks, sys.meta_path;"
    "print(isnas_fast.__file__); print(isnas_fast.kernels.__file__)"
)
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _source_copy(dest):
    """The tracked files of the checkout (what a clone has), copied to ``dest``."""
    import shutil

    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if not (ROOT / rel).is_file():  # deleted in the working tree, not yet committed
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    return dest


def _run(code, cwd, env_extra=None):
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)


def test_imports_from_the_repository_root_with_the_editable_install():
    """Python started in the checkout's root (as ``make test`` runs): the source folder
    ``isnas_fast/`` answers first and the editable install maps kernels/ and export/ into it."""
    done = _run(_IMPORT, ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    pkg, kernels = done.stdout.split()
    assert pkg == str(ROOT / "isnas_fast" / "__init__.py") and kernels == str(ROOT / "kernels" / "__init__.py")


def test_python_m_isnas_fast_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "isnas_fast", "--version"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    from isnas_fast.versions import __version__

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["isnas-fast", __version__]


def test_a_checkout_that_is_not_installed_says_how_to_install_it(tmp_path):
    src = _source_copy(tmp_path / "src")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _run(_HIDE_EDITABLE + _IMPORT, elsewhere, {"PYTHONPATH": str(src)})
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: isnas_fast.kernels is not installed") and "pip install -e ." in last, last


def test_a_plain_install_holds_kernels_export_and_the_type_marker(tmp_path):
    """A plain (non-editable) install, used away from the checkout: kernels/ and export/ sit
    inside the installed package, with ``py.typed`` and the version the package states."""
    src = _source_copy(tmp_path / "src")
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                          "--disable-pip-version-check", "--target", str(target), str(src)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    from isnas_fast.versions import __version__

    pkg = target / "isnas_fast"
    assert (pkg / "kernels" / "__init__.py").is_file() and (pkg / "export" / "cpp" / "runner.cpp").is_file()
    assert (pkg / "py.typed").is_file()
    assert (target / f"isnas_fast-{__version__}.dist-info").is_dir()
    assert not (target / "kernels").exists() and not (target / "export").exists()
    away = _run(_HIDE_EDITABLE + _IMPORT, tmp_path, {"PYTHONPATH": str(target)})
    assert away.returncode == 0, away.stderr[-2000:]
    assert away.stdout.split() == [str(pkg / "__init__.py"), str(pkg / "kernels" / "__init__.py")]


def test_every_subpackage_is_installed():
    """Every folder with an __init__.py is in pyproject's package list (a plain install ships only those)."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.relative_to(ROOT).parts[:-1]) for p in (ROOT / "isnas_fast").rglob("__init__.py")}
    found |= {"isnas_fast.kernels", "isnas_fast.export"}
    assert found == listed
