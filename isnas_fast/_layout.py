"""Import ``isnas_fast.kernels`` and ``isnas_fast.export`` from a source checkout.

The repository keeps ``kernels/`` and ``export/`` at its top level; an
install (plain or editable) maps them into the ``isnas_fast`` namespace.
Python run from the repository root, or with the checkout on ``PYTHONPATH``,
finds the source folder ``isnas_fast/`` first, which holds neither.  This
finder, consulted only after the normal import machinery found nothing,
loads them from the sibling folders of that checkout.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

__all__ = ["install_source_finder", "SIBLING_PACKAGES"]

#: Subpackages kept beside the package folder in the repository.
SIBLING_PACKAGES = ("kernels", "export")


class _SiblingFinder(importlib.abc.MetaPathFinder):
    """Finds ``<package>.<name>`` in ``<root>/<name>/`` for the sibling packages."""

    def __init__(self, package: str, root: Path):
        self.package, self.root = package, root

    def find_spec(self, fullname, path=None, target=None):
        head, _, name = fullname.rpartition(".")
        if head != self.package or name not in SIBLING_PACKAGES:
            return None
        init = self.root / name / "__init__.py"
        if not init.is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, init,
                                                      submodule_search_locations=[str(init.parent)])


def install_source_finder(package: str, init_file: str) -> None:
    """Register the finder when ``package`` is imported from a source checkout.

    A checkout is recognised by the package folder lacking the sibling
    packages while its parent holds them next to a ``pyproject.toml``.  An
    installed package holds them itself and registers nothing.
    """
    here = Path(init_file).resolve().parent
    root = here.parent
    if all((here / n).is_dir() for n in SIBLING_PACKAGES):
        return
    if not (root / "pyproject.toml").is_file() or not all((root / n / "__init__.py").is_file()
                                                           for n in SIBLING_PACKAGES):
        return
    if any(isinstance(f, _SiblingFinder) and f.package == package for f in sys.meta_path):
        return
    sys.meta_path.append(_SiblingFinder(package, root))
