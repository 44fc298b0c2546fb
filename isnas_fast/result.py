"""What ``restore`` returns, and its JSON report (docs/design.md §1).

:class:`RestoreResult` wraps the :class:`~isnas_fast.trained.TrainedRun` the
search (or a fixed architecture) produced, the restored image in the kind
the user gave, the search's cohort tables and the timings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
from torch import Tensor

from .dip import DIPResult
from .genotype import Genotype
from .search import CohortMember, SearchResult, SearchSettings
from .tasks import Observation, Task
from .trained import TrainedRun
from .versions import versions

__all__ = ["RestoreResult"]


@dataclass
class RestoreResult:
    """The outcome of :func:`isnas_fast.restore`.

    ``image``: the restored image as the kind the user gave (tensor, array,
    PIL image; a path gives a tensor).  ``tensor``: (1, C, H, W) float32 in
    [0, 1].  ``genotype``: the architecture used (a Genotype or ``"dip-skip"``).
    ``run``: the trained network, its code and DIP result (for bundles and
    export).  ``cohort``: the first metric's cohort table (empty when
    ``arch`` skipped the search); ``search``: the whole search (every
    metric's cohort and pick).  ``timings_s``: seconds per stage.
    ``psnr``/``ssim``: only with ground truth.  ``noise``: the estimated
    noise level (sigma, method) when denoising was not told sigma.
    """

    image: Any
    tensor: Tensor
    genotype: Union[Genotype, str]
    cohort: list[CohortMember]
    timings_s: dict[str, float]
    task: Task
    observation: Observation
    run: TrainedRun
    settings: SearchSettings
    device: str
    seed: int
    psnr: Optional[float] = None
    ssim: Optional[float] = None
    notices: list[str] = field(default_factory=list)
    search_info: dict = field(default_factory=dict)
    search: Optional[SearchResult] = field(default=None, repr=False)
    ground_truth: Optional[Tensor] = field(default=None, repr=False)  # the input's region, for reports/export
    noise: Optional[dict] = None

    def __repr__(self) -> str:
        """One line: the task, the restored size (W x H px), the architecture, the PSNR when
        known, the final run's steps and the total seconds (``report()`` has the rest)."""
        h, w = int(self.tensor.shape[-2]), int(self.tensor.shape[-1])
        parts = [f"task={self.task!r}", f"size={w}x{h}", f"architecture={str(self.genotype)!r}"]
        if self.psnr is not None:
            on_y = self.task.psnr_on_y(int(self.tensor.shape[1]))
            parts.append(f"psnr={self.psnr:.2f} dB" + (" (Y channel)" if on_y else ""))
        if self.run.dip is not None:
            parts.append(f"steps={self.run.dip.iterations_run}")
        seconds = self.timings_s.get("total")
        if seconds is not None:
            parts.append(f"seconds={seconds:.1f}")
        return f"RestoreResult({', '.join(parts)})"

    @property
    def dip(self) -> DIPResult:
        """The final DIP run's result."""
        assert self.run.dip is not None
        return self.run.dip

    @property
    def in_channels(self) -> int:
        """Channels of the final network's input code."""
        return self.run.in_channels

    def _metric_entry(self, metric: str) -> dict:
        """One metric's cohort table and pick, and its full-size run when it was restored."""
        assert self.search is not None
        pick = str(self.search.picks[metric])
        entry: dict[str, Any] = {"pick": pick, "cohort": [c.as_dict() for c in self.search.cohorts[metric]]}
        run = self.search.finals.get(pick)
        if run is not None and run.dip is not None:
            entry["final"] = {"iterations_run": run.dip.iterations_run, "stopped_at": run.dip.stopped_at}
            if self.ground_truth is not None:
                out = self.observation.crop_output(run.dip.output.float().cpu())
                entry["final"]["psnr"] = round(float(self.task.psnr(out, self.ground_truth)[0]), 4)
        return entry

    def _early_stopping_entry(self) -> Optional[dict]:
        """The report's ``early_stopping`` block: the final run's detector and what it found
        (``detected_iteration`` None when it never found a candidate: the run returned its
        last average); None when the run had no detector."""
        e, d = self.settings.early_stopping, self.dip
        if e is None:
            return None
        es: dict[str, Any] = {
            "method": e.method,
            **{k: v for k, v in e.parameters().items() if k != "rise" or v > 0},
            "detected_iteration": d.stopped_at,
            "stopped_early": d.early_stopped,
        }
        if d.psnr_curve:
            # The best the run passed through, smoothed or raw, vs what the detector returned.
            best_s, best_r = max(d.psnr_curve), max(d.psnr_raw_curve)
            if d.stopped_at is not None and d.psnr_at_stop is not None:
                es["psnr_at_detected"] = round(d.psnr_at_stop, 4)
            es["best_psnr"] = round(max(best_s, best_r), 4)
            curve = d.psnr_curve if best_s >= best_r else d.psnr_raw_curve
            es["best_iteration"] = int(np.argmax(curve)) + 1
        return es

    def report(self) -> dict:
        """A JSON-able report of the run."""
        d = self.dip
        rep: dict[str, Any] = {
            "task": self.task.name,
            "params": self.task.params(),
            "genotype": str(self.genotype),
            "width": self.run.width,
            "in_channels": self.run.in_channels,
            "cohort": [m.as_dict() for m in self.cohort],
            "metric": self.settings.metrics[0],
            "search": self.search_info,
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
            "iterations": {"requested": self.settings.final_run(self.task.name).iterations,
                           "run": d.iterations_run},
            "compiled": d.compiled,
            "compile_seconds": round(d.compile_seconds, 3),
            "precision": d.precision,
            "cuda_graph": d.cuda_graph,
            "early_stopping": None,
            "size": {"height": int(self.tensor.shape[2]), "width": int(self.tensor.shape[3])},
            "seed": self.seed,
            "device": self.device,
            "versions": versions(),
            "notices": list(self.notices),
        }
        # What a bundle or an exported model of this run computes (the run's averaged network).
        members = getattr(self.run.network, "members", None)
        parts = getattr(self.run.network, "parts", None)
        if parts is not None:
            sizes = [len(getattr(p, "members", [p])) for p in parts]
            served = f"the weighted mean of {len(parts)} averaged networks of {' and '.join(map(str, sizes))} member(s)"
        else:
            served = f"averaged network of {len(members)} member(s)" if members is not None else "one network"
        rep["served"] = {
            "network": served,
            "averaged_over": d.averaged_over or None,
            "is_the_returned_image": self.search is None or self.search.ensemble is None,
        }
        if d.restarts:
            rep["restarts"] = [dict(r) for r in d.restarts]
        if d.blended:
            rep["blended"] = [dict(r) for r in d.blended]
        if d.anchored:
            rep["anchored"] = dict(d.anchored)
        if self.task.name == "denoise":
            rep["noise"] = ({"estimated": True, **self.noise} if self.noise is not None
                            else {"estimated": False, "sigma": self.task.params()["sigma"], "method": "given"})
        padding = self.observation.padding
        if padding is not None:
            rep["padding"] = padding.as_dict()
        if self.search is not None:
            rep["metrics"] = {m: self._metric_entry(m) for m in self.search.metrics}
            if self.search.ensemble is not None:
                ens = self.search.ensemble
                rep["ensemble"] = {"genotypes": [str(g) for g in ens.genotypes],
                                   "weights": [round(w, 6) for w in ens.weights],
                                   "exported_network": str(self.genotype)}
                if self.ground_truth is not None:
                    outputs = [self.observation.crop_output(self.search.finals[str(g)].dip.output.float().cpu())
                               for g in ens.genotypes]
                    rep["ensemble"]["member_psnr"] = [round(float(self.task.psnr(o, self.ground_truth)[0]), 4)
                                                      for o in outputs]
        rep["early_stopping"] = self._early_stopping_entry()
        if self.psnr is not None:
            rep["psnr"] = round(self.psnr, 4)
            rep["ssim"] = round(self.ssim, 5) if self.ssim is not None else None
            rep["psnr_y_channel"] = self.task.psnr_on_y(int(self.tensor.shape[1]))
        return rep
