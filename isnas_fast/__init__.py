"""isnas-fast: image-specific neural architecture search for Deep Image Prior.

Quick use::

    import isnas_fast
    result = isnas_fast.restore("noisy.png", "denoise", sigma=25)
    result.image, result.genotype, result.report()
"""
from __future__ import annotations

__version__ = "0.1.0"

from typing import Optional, Sequence

import torch
from torch import Tensor

from .api import RestoreResult, restore, score
from .bundle import LoadedRun, export_report, load_run, save_run
from .dip import DIPSettings, EarlyStopping, fit_dip, fit_dip_group
from .errors import InputError
from .genotype import BASELINES, Genotype, builtin_genotypes, random_genotypes, read_genotypes
from .imageio import load_image, save_image
from .network import build_network, count_parameters
from .quality import psnr, ssim
from .search import PRESETS, SearchSettings, run_search
from .tasks import Denoise, Inpaint, SuperResolve, Task, make_task


def spectral_scores(corrupted: Tensor, outputs: Tensor, metrics: Sequence[str],
                    backend: Optional[str] = None, *, generator: Optional[torch.Generator] = None) -> Tensor:
    """Spectral metric scores (DESIGN §4) of candidate outputs; lower is better.

    ``corrupted``: (C, H, W); ``outputs``: (B, C, H, W); returns a float64
    ``(B, len(metrics))`` tensor.  ``backend``: None (automatic),
    ``"reference"`` or ``"triton"`` (see :func:`isnas_fast.kernels.backend`).
    """
    from .kernels import spectral_scores as dispatch

    return dispatch(corrupted, outputs, metrics, backend_name=backend, generator=generator)


__all__ = [
    "__version__", "restore", "score", "RestoreResult", "spectral_scores", "build_network", "count_parameters",
    "Genotype", "BASELINES", "builtin_genotypes", "random_genotypes", "read_genotypes", "Task", "Denoise",
    "Inpaint", "SuperResolve", "make_task", "psnr", "ssim", "load_image", "save_image", "fit_dip",
    "DIPSettings", "EarlyStopping", "SearchSettings", "PRESETS", "run_search", "InputError", "fit_dip_group",
    "save_run", "load_run", "LoadedRun", "export_report",
]
