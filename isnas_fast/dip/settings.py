"""What a DIP run is asked to do (docs/design.md §6): hyper-parameters, early stopping, precision,
and :class:`RunOptions`, all of it in one object."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from ..errors import InputError

__all__ = ["DIPSettings", "EarlyStopping", "RunOptions", "ES_METHODS", "PRECISIONS", "resolve_precision",
           "precision_context"]

PRECISIONS = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class DIPSettings:
    """Hyper-parameters of one DIP run (defaults are the paper's).

    ``iterations``: Adam steps; ``lr``: Adam's learning rate;
    ``reg_noise_std``: standard deviation of the noise added to the input
    code at every step; ``ema``: weight of the old value in the output's
    exponential moving average; ``input_scale``: the code is ``U(0, input_scale)``.
    """

    iterations: int
    lr: float = 0.01
    reg_noise_std: float = 1.0 / 30.0
    ema: float = 0.99
    input_scale: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise InputError(f"iterations must be a positive integer, got {self.iterations!r}")
        if not (self.lr > 0):
            raise InputError(f"learning rate must be > 0, got {self.lr}")
        if not 0 <= self.ema < 1:
            raise InputError(f"EMA factor must be in [0, 1), got {self.ema}")


#: Early-stopping detectors (see :mod:`isnas_fast.dip.early_stopping`).
ES_METHODS = ("discrepancy", "wmv", "emv", "shift", "heldout", "at")


@dataclass(frozen=True)
class EarlyStopping:
    """Early stopping without ground truth (:mod:`isnas_fast.dip.early_stopping`).

    ``method``: ``"discrepancy"`` (denoising: the mean of the last raw
    outputs -- the run's second half, at most ``window`` of them -- returned
    once its residual against the noisy image reaches ``kappa`` times the
    clipped noise's variance, checked from step ``window // 2`` on; other
    tasks run to the end), ``"wmv"`` (ES-WMV: the variance of the last ``window`` raw
    outputs; returns the most stable window's mean), ``"emv"`` (its
    exponential form, weight ``alpha``, after ``window`` warm-up steps) or
    ``"shift"`` (a pseudo-validation loss from the corrupted image, checked
    from step ``window`` on; returns the smoothed output at its minimum),
    ``"heldout"`` (no noise level read: a twin run fits the image with a
    fifth of its pixels held out, the step of its window mean's least error
    on them is found, and the run on every pixel returns its window mean at
    that step; denoising and inpainting) or ``"at"`` (the window mean at step
    ``start``: what the held-out stop's run on every pixel returns).
    Training ends ``patience`` iterations after the detector's last new
    minimum, or, with ``rise`` > 0, as soon as the signal climbs to
    ``1 + rise`` times that minimum (the first valley of the signal, however
    long the run).  ``start``: no stop before this step (``discrepancy``; 0:
    from step ``window // 2``), e.g. where a validated search saw the pick's
    best output on the cohort problem.  ``start_met_by``: with ``start``, the
    start holds only when the residual first reaches the noise level by this
    step (a flat image fitted fast); reached later, the run stops there as
    without a start (0: the start always holds).
    """

    window: int = 100
    patience: int = 1000
    method: str = "discrepancy"
    alpha: float = 0.1
    rise: float = 0.0
    kappa: float = 1.0
    start: int = 0
    start_met_by: int = 0

    def __post_init__(self) -> None:
        if self.window < 2 or self.patience < 1:
            raise InputError(f"early stopping needs window >= 2 and patience >= 1, got {self.window}, {self.patience}")
        if self.method not in ES_METHODS:
            raise InputError(f"early stopping method must be one of {', '.join(ES_METHODS)}, got {self.method!r}")
        if not 0 < self.alpha < 1:
            raise InputError(f"early stopping alpha must be in (0, 1), got {self.alpha}")
        if not self.rise >= 0:
            raise InputError(f"early stopping rise must be >= 0, got {self.rise}")
        if not self.kappa > 0:
            raise InputError(f"early stopping kappa must be > 0, got {self.kappa}")
        if isinstance(self.start, bool) or not isinstance(self.start, int) or self.start < 0:
            raise InputError(f"early stopping start must be a step count >= 0, got {self.start!r}")
        if isinstance(self.start_met_by, bool) or not isinstance(self.start_met_by, int) or self.start_met_by < 0:
            raise InputError(f"early stopping start_met_by must be a step count >= 0, got {self.start_met_by!r}")
        if self.method == "at" and self.start < 1:
            raise InputError("early stopping 'at' needs the step to stop at (start >= 1)")

    def parameters(self) -> dict[str, float]:
        """The parameters this detector reads, in order (``rise`` only where it applies)."""
        own = {"discrepancy": ("window", "kappa"), "wmv": ("window", "patience", "rise"),
               "emv": ("window", "patience", "alpha", "rise"), "shift": ("window", "patience", "rise"),
               "heldout": ("window", "patience", "rise"), "at": ("window", "start")}
        keys = own[self.method]
        if self.method == "discrepancy" and self.start:
            keys += ("start", "start_met_by") if self.start_met_by else ("start",)
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class RunOptions:
    """Everything a group of DIP runs is asked besides its networks and images: the
    one object that goes from the search's settings
    (:meth:`~isnas_fast.search.SearchSettings.cohort_run`, ``final_run``) to the loop.

    ``dip``: the hyper-parameters (steps, learning rate, ...).
    ``early_stopping``: the detector that stops each member (None: every step).
    ``compile``, ``cuda_graph``, ``workers``: None = automatic; ``precision``:
    None = the device's default (see :func:`~isnas_fast.dip.plan.plan_step`).
    ``served``: each result's network is the run's averaged network (False:
    members only ranked, never served, keep the raw output average).
    ``probes``: detectors that only watch; ``snapshots``: iterations whose
    smoothed output each result keeps.  ``together``: the members train as
    one program (False: one after another, each as a group of one).
    ``member_threads``: 1 runs every member of an eager CPU group on one
    intra-op thread -- each shard of members on its own thread, also a group
    of one or a shard left alone -- so a member computes what a one-thread
    run alone computes; None leaves the threads to the plan.
    ``clip_readout``: a served denoising run with a noise level reads its
    output through the clipped-noise readout (:mod:`~isnas_fast.dip.readout`).
    """

    dip: DIPSettings
    early_stopping: Optional[EarlyStopping] = None
    compile: Optional[bool] = None
    cuda_graph: Optional[bool] = None
    precision: Optional[str] = None
    workers: Optional[int] = None
    served: bool = True
    probes: tuple[EarlyStopping, ...] = ()
    snapshots: tuple[int, ...] = ()
    together: bool = True
    member_threads: Optional[int] = None
    clip_readout: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.dip, DIPSettings):
            raise InputError(f"RunOptions.dip must be a DIPSettings, got {type(self.dip).__name__}")
        if self.member_threads not in (None, 1):
            raise InputError(f"member_threads must be None or 1, got {self.member_threads!r}")
        object.__setattr__(self, "probes", tuple(self.probes))
        object.__setattr__(self, "snapshots", tuple(int(s) for s in self.snapshots))

    @property
    def iterations(self) -> int:
        """Adam steps of each run."""
        return self.dip.iterations


def resolve_precision(precision: Optional[str], device: torch.device | str) -> str:
    """The precision a run uses: ``precision`` checked, or the default for
    ``device`` when None (``"tf32"`` on CUDA, as PyTorch's cuDNN default
    already is; ``"fp32"`` elsewhere)."""
    if precision is None:
        return "tf32" if torch.device(device).type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """On CUDA, TF32 on for ``"tf32"`` and off for ``"fp32"`` during the run.

    The switches are process-wide: they are set for the run and restored
    after it (also after an error).  ``"bf16"`` (autocast, entered per step)
    and other devices leave them alone.
    """
    if precision == "bf16" or device.type != "cuda":
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
