"""isnas-fast: image-specific neural architecture search for Deep Image Prior.

Quick use::

    import isnas_fast
    result = isnas_fast.restore("noisy.png", "denoise", sigma=25)
    result.image, result.genotype, result.report()
"""
from __future__ import annotations

from importlib.util import find_spec
from typing import Optional, Sequence

import torch
from torch import Tensor

from .versions import __version__

# kernels/ and export/ sit at the top of the repository; pyproject's package-dir maps them into
# this package, so they import only through an install (editable or not).
if find_spec(f"{__name__}.kernels") is None:  # pragma: no cover - a checkout that was never installed
    raise ImportError(f"{__name__}.kernels is not installed: {__path__[0]} is the source folder of a checkout "
                      "that is not installed in this Python; run 'make install' or 'pip install -e .' there")

from .api import restore, score  # noqa: E402
from .bundle import LoadedRun, export_report, load_run, save_run  # noqa: E402
from .dip import DIPResult, DIPSettings, EarlyStopping, fit_dip, fit_dip_group  # noqa: E402
from .errors import InputError  # noqa: E402
from .genotype import BASELINES, Genotype, builtin_genotypes, random_genotypes, read_genotypes  # noqa: E402
from .io import load_image, read_image, save_image  # noqa: E402
from .network import build_network, count_parameters  # noqa: E402
from .quality import psnr, ssim  # noqa: E402
from .result import RestoreResult  # noqa: E402
from .search import PRESETS, SearchSettings, run_search  # noqa: E402
from .tasks import Denoise, Inpaint, SuperResolve, Task, make_task  # noqa: E402
from .trained import TrainedRun  # noqa: E402


def spectral_scores(corrupted: Tensor, outputs: Tensor, metrics: Sequence[str],
                    backend: Optional[str] = None, *, generator: Optional[torch.Generator] = None) -> Tensor:
    """Spectral metric scores (docs/design.md §4) of candidate outputs; lower is better.

    ``corrupted``: (C, H, W); ``outputs``: (B, C, H, W); returns a float64
    ``(B, len(metrics))`` tensor.  ``backend``: None (automatic),
    ``"reference"`` or ``"triton"`` (see :func:`isnas_fast.kernels.backend`).
    """
    from .kernels import spectral_scores as dispatch

    return dispatch(corrupted, outputs, metrics, backend=backend, generator=generator)


__all__ = [
    "__version__", "restore", "score", "RestoreResult", "spectral_scores", "build_network", "count_parameters",
    "Genotype", "BASELINES", "builtin_genotypes", "random_genotypes", "read_genotypes", "Task", "Denoise",
    "Inpaint", "SuperResolve", "make_task", "psnr", "ssim", "load_image", "read_image", "save_image", "fit_dip",
    "DIPSettings", "EarlyStopping", "DIPResult", "SearchSettings", "PRESETS", "run_search", "InputError",
    "fit_dip_group", "save_run", "load_run", "LoadedRun", "TrainedRun", "export_report",
]
