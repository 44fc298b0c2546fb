"""The NAS-dataset study of one image (the paper's evidence, docs/design.md §1, §4, §5).

Every genotype of a list is trained on the corrupted image for the task's
steps; its spectral metrics at initialisation, its PSNR curve, best and final
PSNR, and what each early-stopping detector would have returned are recorded
(one row per genotype in ``rows.jsonl``, append-only: a rerun after a kill
skips finished genotypes; one run at a time writes into a folder, a second
is refused at once).  The search's own pick among the same genotypes
(its cohort stage, per metric) and the task's NAS-DIP genotype at the same
budget are placed in the PSNR distribution.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..device import resolve_device
from ..dip import EarlyStopping
from ..dip.monitor import probe_name
from ..errors import InputError
from ..genotype import BASELINES, Genotype
from ..io import check_output_folder
from ..io.files import make_folder
from ..io.records import RecordLog, first_of_each, guard_settings, writer_lock
from ..kernels.spectral_reference import canonical_metric
from ..problem import prepare_problem, resolve_task_for_image
from ..search import (SearchSettings, candidate_list, genotype_seed, rank_cohort, score_candidates,
                      select_in_cohort, train_cohort, GroupMember, train_group)
from ..tasks import Observation, Task
from .analysis import correlations, early_stopping_summary, placement, top_k_hits

__all__ = ["StudyResult", "run_study", "STUDY_METRICS", "DEFAULT_PROBES", "ROWS", "SETTINGS"]

#: Metrics every study records at initialisation (the search's own are added).
STUDY_METRICS = ("psd_db_strip_mse", "psd_strip_hist_emd", "psd_db_mse", "random")
#: Early-stopping detectors every study watches (the settings' own is added first).
DEFAULT_PROBES = (
    EarlyStopping(method="discrepancy"),
    EarlyStopping(method="discrepancy", kappa=0.95),
    EarlyStopping(method="wmv", window=100, patience=1000),
    EarlyStopping(method="wmv", window=100, patience=300),
    EarlyStopping(method="wmv", window=100, patience=1000, rise=0.2),
    EarlyStopping(method="emv", window=100, patience=300, alpha=0.1),
)
ROWS, SETTINGS, LOCK_FILE = "rows.jsonl", "study-settings.json", ".study.lock"
_CURVE_POINTS = 300  # PSNR curve stored at about this many points


@dataclass
class StudyResult:
    """A finished study: its rows (one per trained genotype, NAS-DIP's included,
    marked ``role``), the search's picks and the analysis written to ``study.json``."""

    out: Path
    rows: list[dict]
    picks: dict[str, dict]
    analysis: dict
    settings: dict = field(default_factory=dict)


def _unique_rows(rows: list[dict], source: Path, warn: bool = True) -> list[dict]:
    """The first row of each genotype and of each metric's pick (a row written
    twice, e.g. by two runs at once, is counted once; one warning if ``warn``)."""
    return first_of_each(rows, lambda r: (r.get("kind"), r.get("metric") if r.get("kind") == "pick"
                                          else r.get("genotype")), source=source, warn=warn)


def _curve_every(iterations: int) -> int:
    return max(1, math.ceil(iterations / _CURVE_POINTS))


def _row(genotype: str, role: str, in_channels: int, res: Any, scores: dict, every: int, seconds: float) -> dict:
    curve, raw = res.psnr_curve, res.psnr_raw_curve
    best_i = max(range(len(curve)), key=curve.__getitem__)
    passed = max(max(curve), max(raw))
    probes = {}
    for name, p in res.probes.items():
        probes[name] = dict(p, gap=None if p["psnr"] is None else passed - p["psnr"])
    return {
        "kind": "genotype", "genotype": genotype, "role": role, "in_channels": in_channels, **scores,
        "best_psnr": curve[best_i], "best_iteration": best_i + 1, "best_raw_psnr": max(raw),
        "best_passed_psnr": passed, "final_psnr": curve[-1], "final_raw_psnr": raw[-1],
        "iterations": res.iterations_run, "curve_every": every, "psnr_curve": curve[every - 1::every],
        "probes": probes, "seconds": round(seconds, 3),
    }


def _problem_key(obs: Observation, gt: Tensor) -> dict:
    import hashlib

    h = hashlib.sha256()
    for t in (obs.y, gt) + ((obs.mask,) if obs.mask is not None else ()):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return {"sha256": h.hexdigest(), "size": list(obs.y.shape)}


def run_study(
    corrupted: Any,
    task: Union[str, Task],
    *,
    ground_truth: Any,
    out: Union[str, Path],
    preset: str = "quick",
    mask: Any = None,
    seed: int = 0,
    inits: int = 1,
    group: int = 8,
    probes: Sequence[EarlyStopping] = DEFAULT_PROBES,
    device: Union[str, torch.device, None] = "auto",
    quiet: bool = False,
    log: Optional[Callable[[str], None]] = None,
    settings: Optional[SearchSettings] = None,
    **options: Any,
) -> StudyResult:
    """Study how well the spectral metrics predict DIP quality on one image.

    ``corrupted``, ``task``, ``mask`` and task parameters as for
    :func:`isnas_fast.restore`; ``ground_truth`` (the clean image) is
    required: the study measures PSNR.  Search knobs (``models``,
    ``candidates``, ``width``, ``iterations``, ``metric``,
    ``cohort_size``, ``cohort_iterations``, ``early_stopping``, ...) as for
    ``restore``, the preset's values otherwise; or ``settings`` built
    already, as for ``restore``.  ``inits``: the metrics at
    initialisation are also averaged over this many random initialisations
    and input codes (the first is the search's own).  ``group``: genotypes
    trained together.  ``probes``: early-stopping detectors watched on every
    run (the settings' own detector first).  Writes ``rows.jsonl``,
    ``study.json``, ``study.md`` (and plots with matplotlib) under ``out``,
    which is created if missing (its parent must exist).
    """
    from ..api import run_settings, split_options

    say = log or (lambda m: None)
    if ground_truth is None:
        raise InputError("a study needs the ground truth (--ground-truth): it measures PSNR")
    if isinstance(inits, bool) or not isinstance(inits, int) or inits < 1:
        raise InputError(f"inits must be a positive integer, got {inits!r}")
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise InputError(f"group must be a positive integer, got {group!r}")
    knobs, task_params = split_options(options)
    settings = run_settings(preset, settings, knobs)
    if settings.restarts != 1:
        raise InputError("a study trains each genotype once: restarts must be 1")
    if settings.final_width is not None:
        raise InputError("a study trains every network at the search's width: give width, not final_width")
    tk, noise, corrupted = resolve_task_for_image(corrupted, task, mask, task_params)
    if noise is not None:
        say(f"noise level not given: estimated sigma {noise.sigma:.2f} (0..255) by {noise.method}")
    out = check_output_folder(out, "study folder")
    dev = resolve_device(device)
    obs, gt, notices = prepare_problem(corrupted, tk, ground_truth=ground_truth)
    for n in notices:
        say(n)
    genotypes, skipped = candidate_list(settings.candidates, settings.num_candidates, seed)
    if skipped:
        say(f"skipped {skipped} genotype(s) with an invalid upsampling index")
    es = settings.early_stopping or EarlyStopping()
    study = _Study(obs.to(dev), gt.to(dev), settings, genotypes, seed=seed, device=dev, quiet=quiet, say=say,
                   watch=list(dict.fromkeys([es, *probes])))
    key = study.key(inits)
    make_folder(out, "study folder")
    with writer_lock(out, what="study", name=LOCK_FILE):
        guard_settings(out, key, name=SETTINGS, what="study")
        records = RecordLog(out / ROWS)
        found = _unique_rows(records.read(), records.path)
        study.score(inits)
        study.record_picks(records, have={r["metric"] for r in found if r.get("kind") == "pick"})
        study.train_all(records, done={r["genotype"] for r in found if r.get("kind") == "genotype"}, group=group)
        rows = _unique_rows(records.read(), records.path, warn=False)  # duplicates were reported above
        return _finish(out, rows, key, study.metrics, list(settings.metrics), probe_name(es))


@dataclass
class _Study:
    """One study's problem, settings and genotypes, and the metrics at initialisation once
    scored (:meth:`score`): what its stages -- the search's picks, every genotype trained --
    share.  ``watch``: the detectors watching every run (the settings' own first)."""

    obs: Observation
    gt: Tensor
    settings: SearchSettings
    genotypes: list[Genotype]
    seed: int
    device: torch.device
    quiet: bool
    say: Callable[[str], None]
    watch: list[EarlyStopping]
    stacked: Optional[Tensor] = None  # (inits, genotypes, metrics)

    @property
    def task(self) -> Task:
        return self.obs.task

    @property
    def iterations(self) -> int:
        return self.settings.final_run(self.task.name).iterations

    @property
    def metrics(self) -> list[str]:
        """The search's metrics, then the study's own (:data:`STUDY_METRICS`)."""
        return list(dict.fromkeys(list(self.settings.metrics) + [canonical_metric(m) for m in STUDY_METRICS]))

    def key(self, inits: int) -> dict:
        """What the study's rows depend on (a folder holds the rows of one key)."""
        s, tk = self.settings, self.task
        return {
            "problem": _problem_key(self.obs, self.gt), "task": tk.name, "params": tk.params(), "seed": self.seed,
            "inits": inits, "models": str(s.candidates), "genotypes": [str(g) for g in self.genotypes],
            "width": s.width, "iterations": self.iterations, "metrics": self.metrics,
            "search_metrics": list(s.metrics), "cohort_size": s.cohort_size,
            "cohort_iterations": s.cohort_iterations, "small_side": s.small_side,
            "probes": [probe_name(p) for p in self.watch], "device": self.device.type, "precision": s.precision,
        }

    def score(self, inits: int) -> None:
        """The metrics at initialisation over ``inits`` initialisations (the first is the search's own)."""
        t = time.perf_counter()
        metrics = self.metrics
        per_init = [score_candidates(self.obs, self.genotypes, metrics, width=self.settings.width,
                                     seed=self.seed + r, batch=self.settings.score_batch, device=self.device,
                                     quiet=self.quiet) for r in range(inits)]
        self.stacked = torch.stack(per_init)  # (R, N, M)
        self.say(f"scored {len(self.genotypes)} genotype(s) with {len(metrics)} metric(s) in "
                 f"{time.perf_counter() - t:.1f} s")

    def scores_of(self, i: int) -> dict:
        """Genotype ``i``'s metrics: the first initialisation's, their mean (and each, with several)."""
        assert self.stacked is not None
        stacked, metrics = self.stacked, self.metrics
        d: dict[str, Any] = {"metrics": {m: float(stacked[0, i, j]) for j, m in enumerate(metrics)},
                             "metrics_mean": {m: float(stacked[:, i, j].mean()) for j, m in enumerate(metrics)}}
        if stacked.shape[0] > 1:
            d["metrics_inits"] = {m: stacked[:, i, j].tolist() for j, m in enumerate(metrics)}
        return d

    def record_picks(self, records: RecordLog, *, have: set) -> None:
        """The search's pick among these genotypes, per metric not in ``have``: its cohort stage."""
        settings, metrics = self.settings, self.metrics
        if not set(settings.metrics) - have:
            return
        assert self.stacked is not None
        k = min(settings.cohort_size, len(self.genotypes))
        cohorts = {m: rank_cohort(self.genotypes, self.stacked[0, :, metrics.index(m)], k) for m in settings.metrics}
        union = list(dict.fromkeys(c.genotype for members in cohorts.values() for c in members))
        small = self.obs.cohort_problem(settings.small_side)
        self.say(f"cohort stage: {len(union)} genotype(s) at {small.output_size[1]}x{small.output_size[0]}")
        trained = train_cohort(union, small, settings, seed=self.seed, device=self.device,
                               quiet=self.quiet) if k > 1 else {}
        for m in settings.metrics:
            if m in have:
                continue
            members = cohorts[m]
            idx = select_in_cohort(members, trained, y_channel=self.task.psnr_on_y(self.obs.channels))
            records.append({"kind": "pick", "metric": m, "pick": str(members[idx].genotype),
                            "cohort": [c.as_dict() for c in members]})

    def train_all(self, records: RecordLog, *, done: set, group: int) -> None:
        """Every genotype not in ``done`` (and the task's NAS-DIP genotype as the baseline),
        trained ``group`` at a time; a row each."""
        c, settings = self.obs.channels, self.settings
        baseline = BASELINES[f"nasdip-{self.task.name}"]
        todo: list[tuple[Genotype, str, int, Optional[int]]] = [
            (g, "candidate", c, i) for i, g in enumerate(self.genotypes) if str(g) not in done]
        if f"nasdip:{baseline}" not in done:
            todo.append((baseline, "nasdip", 32, None))
        every = _curve_every(self.iterations)
        # Every run goes the full length, watched by every detector; the study reads curves and
        # probes and serves nothing.
        options = replace(settings.final_run(self.task.name), early_stopping=None, probes=tuple(self.watch),
                          served=False)
        bar = tqdm(total=len(todo), desc="study", disable=True if self.quiet else None, unit="net")
        for start in range(0, len(todo), group):
            chunk = todo[start:start + group]
            members = [GroupMember(g, genotype_seed(self.seed, g), cin, settings.width) for g, _, cin, _ in chunk]
            t = time.perf_counter()
            trained = train_group(members, self.obs, options, device=self.device, ground_truth=self.gt,
                                  quiet=self.quiet, desc=f"study {start + 1}-{start + len(chunk)}/{len(todo)}")
            seconds = (time.perf_counter() - t) / len(chunk)
            for (g, role, cin, i), m in zip(chunk, trained):
                name = str(g) if role == "candidate" else f"nasdip:{g}"
                scores = self.scores_of(i) if i is not None else {}
                records.append(_row(name, role, cin, m.result, scores, every, seconds))
            bar.update(len(chunk))
        bar.close()


def _finish(out: Path, rows: list[dict], key: dict, metrics: list[str], search_metrics: list[str],
            es_name: str) -> StudyResult:
    from .report import write_outputs

    cands = [r for r in rows if r.get("kind") == "genotype" and r["role"] == "candidate"]
    base = next((r for r in rows if r.get("kind") == "genotype" and r["role"] == "nasdip"), None)
    picks = {r["metric"]: r for r in rows if r.get("kind") == "pick"}
    by_name = {r["genotype"]: r for r in cands}
    analysis: dict[str, Any] = {"n": len(cands), "metrics": {}, "picks": {}, "early_stopping": {},
                                "stopping_detector": es_name}
    returned = [r["probes"].get(es_name, {}).get("psnr") for r in cands]
    targets = {"best_psnr": [r["best_psnr"] for r in cands], "final_psnr": [r["final_psnr"] for r in cands]}
    if cands and all(v is not None for v in returned):
        targets["returned_psnr"] = returned  # what restore returns: the stopping detector's output
    for target, psnrs in targets.items():
        for m in metrics:
            entry = analysis["metrics"].setdefault(m, {})
            values = [r["metrics_mean"][m] for r in cands]
            entry[target] = {**correlations(values, psnrs), **top_k_hits(values, psnrs)}
    best = [r["best_psnr"] for r in cands]
    for m in search_metrics:
        if m not in picks:
            continue
        row = by_name[picks[m]["pick"]]
        es = row["probes"].get(es_name, {})
        analysis["picks"][m] = {
            "genotype": row["genotype"],
            "best": placement(row["best_psnr"], best),
            "final": placement(row["final_psnr"], [r["final_psnr"] for r in cands]),
            "early_stopped": None if es.get("psnr") is None else placement(es["psnr"], best),
        }
    if base is not None:
        es = base["probes"].get(es_name, {})
        analysis["nasdip"] = {"genotype": base["genotype"], "best": placement(base["best_psnr"], best),
                              "early_stopped": None if es.get("psnr") is None else placement(es["psnr"], best)}
    trained = cands + ([base] if base is not None else [])
    for name in trained[0]["probes"] if trained else []:
        returned = [r["probes"][name]["psnr"] for r in trained]
        analysis["early_stopping"][name] = early_stopping_summary(returned, [r["best_passed_psnr"] for r in trained])
    result = StudyResult(out=out, rows=rows, picks=picks, analysis=analysis, settings=key)
    write_outputs(result)
    return result
