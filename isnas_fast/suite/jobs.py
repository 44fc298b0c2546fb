"""The job list of a suite: one job per (image, method, seed), and the
settings that make the rows of two runs comparable.

A job is identified by its image name, method and seed alone; everything
else that decides its numbers (task, task parameters, preset, every search
knob) is the suite's *settings record*, stored once in ``suite.json`` and
compared when the same output folder is used again.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import zlib
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass
from typing import Any, Mapping, Optional, Sequence, Union

from ..dip import EarlyStopping
from ..errors import InputError
from ..search import KNOBS, PRESETS, SearchSettings
from ..tasks import Task
from .references import REFERENCE_LABEL, REFERENCES, available, reference_for

__all__ = [
    "METHODS", "DEFAULT_METHODS", "ORACLE_LABEL", "REFERENCE_LABEL", "METHOD_LABELS", "Job", "default_methods",
    "parse_methods", "parse_seeds",
    "job_list", "corruption_seed", "settings_record", "settings_hash", "record_differences", "knob_flags",
    "flagless_settings", "rerun_command",
]

#: Every method a suite can run, in table order; the last three are the tasks'
#: references (:mod:`~isnas_fast.suite.references`): classical methods, no training.
METHODS = ("isnas", "nasdip", "dip-skip", "random", "cohort-best", *REFERENCES)
#: The DIP methods a suite runs by default (:func:`default_methods` adds the task's reference).
DEFAULT_METHODS = ("isnas", "nasdip", "dip-skip", "random")
#: How the one method that reads the ground truth is labelled wherever it appears.
ORACLE_LABEL = "oracle (uses ground truth)"
METHOD_LABELS = {
    "isnas": "ISNAS-DIP (architecture searched per image)",
    "nasdip": "NAS-DIP genotype of the task",
    "dip-skip": "DIP skip network (width 128)",
    "random": "random genotype from the scored pool",
    "cohort-best": f"best cohort member by PSNR: {ORACLE_LABEL}",
    "bm3d": f"BM3D told the task's sigma ({REFERENCE_LABEL})",
    "bicubic": f"bicubic upsampling ({REFERENCE_LABEL})",
    "biharmonic": f"biharmonic inpainting ({REFERENCE_LABEL})",
}


def default_methods(task: str) -> tuple[str, ...]:
    """The methods a suite of ``task`` runs when none are named: :data:`DEFAULT_METHODS`
    and the task's reference when its package is installed."""
    reference = reference_for(task)
    return DEFAULT_METHODS + ((reference,) if available(reference) else ())


@dataclass(frozen=True, order=True)
class Job:
    """One row of the results: ``method`` run on ``image`` with ``seed``."""

    image: str
    method: str
    seed: int

    @property
    def key(self) -> str:
        """The job's identifier in ``results.jsonl`` (``image:method:seed``)."""
        return f"{self.image}:{self.method}:{self.seed}"

    @property
    def oracle(self) -> bool:
        """Whether the method reads the ground truth (analysis only)."""
        return self.method == "cohort-best"

    @property
    def reference(self) -> bool:
        """Whether the method is a classical reference (no training, no architecture)."""
        return self.method in REFERENCES


def parse_methods(methods: Union[str, Sequence[str]]) -> tuple[str, ...]:
    """Method names from ``"isnas,nasdip"`` or a sequence; unknown names raise InputError."""
    names = [m.strip().lower() for m in (methods.split(",") if isinstance(methods, str) else methods)]
    names = [m for m in names if m]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}: choose from {', '.join(METHODS)}")
    if not names:
        raise InputError(f"no method given: choose from {', '.join(METHODS)}")
    return tuple(dict.fromkeys(names))


def parse_seeds(seeds: Union[int, str, Sequence[int]], first: int = 0) -> tuple[int, ...]:
    """Seeds from a count N (``first .. first + N - 1``), a list, or ``"0,3,7"`` text.

    A single number is a count; a comma-separated text (``"5,"`` included) is a list.
    """
    if isinstance(seeds, str):
        text = seeds.strip()
        try:
            parsed: Union[int, list[int]] = (int(text) if "," not in text
                                             else [int(s) for s in text.split(",") if s.strip()])
        except ValueError:
            raise InputError(f"seeds must be a count N or a list like 0,1,2, got {seeds!r}") from None
        return parse_seeds(parsed, first)
    if isinstance(seeds, bool):
        raise InputError(f"seeds must be a count or a list of integers, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise InputError(f"the number of seeds must be >= 1, got {seeds}")
        return tuple(range(first, first + seeds))
    values = list(seeds)
    if not values or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in values):
        raise InputError(f"seeds must be non-negative integers, got {values!r}")
    return tuple(dict.fromkeys(values))


def job_list(images: Sequence[str], methods: Sequence[str], seeds: Sequence[int]) -> list[Job]:
    """Every job, seed by seed (a run cut short has whole seeds of every image first)."""
    return [Job(image, method, seed) for seed in seeds for image in images for method in methods]


def corruption_seed(image: str, seed: int) -> int:
    """The seed of an image's corruption for suite seed ``seed`` (noise, mask):
    different for every (image, seed) pair, the same on every machine."""
    return (int(seed) * 1_000_003 + zlib.crc32(image.encode())) % (2**31 - 1)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def settings_record(task: Task, preset: str, settings: SearchSettings) -> dict:
    """Everything besides (image, method, seed) that decides a row's numbers, JSON-able."""
    return {
        "task": task.name,
        "task_params": task.params(),
        "preset": preset,
        "search": {f.name: _plain(getattr(settings, f.name)) for f in fields(settings)},
    }


def settings_hash(record: Mapping[str, Any]) -> str:
    """A short fingerprint of a settings record (stored in every row)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def record_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"name: old -> new"`` for every setting that differs between two records
    (a search knob named by its command-line option).  A knob the old record
    lacks (written before the knob existed) is taken at its field's default,
    the value that does what the code did before it, so such a suite resumes."""
    a, b = _flat(old), _flat(new)
    if isinstance(old.get("search"), Mapping):
        a.update({f"search.{f.name}": _plain(f.default) for f in fields(SearchSettings)
                  if f.default is not MISSING and f"search.{f.name}" not in a})
        for k in KNOBS:  # a detector's parameter added since, likewise
            if k.kind == "early_stopping" and isinstance(old["search"].get(k.name), Mapping):
                a.update({f"search.{k.name}.{f.name}": f.default for f in fields(EarlyStopping)
                          if f.default is not MISSING and f"search.{k.name}.{f.name}" not in a})
    flags = {f"search.{k.name}": k.flag for k in KNOBS}
    return [f"{flags.get(k, k.split('.')[-1])}: {a.get(k)} -> {b.get(k)}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def knob_flags(settings: SearchSettings, preset: str) -> list[str]:
    """The ``isnas-fast restore`` options that turn ``preset`` into ``settings``.

    An early-stopping detector other than the preset's (an API-only value)
    has no option: ``--early-stopping`` stands for the preset's detector.
    """
    base = PRESETS[preset].validate()
    flags: list[str] = []
    for k in KNOBS:
        value, default = getattr(settings, k.name), getattr(base, k.name)
        if value == default:
            continue
        if k.kind in ("switch", "early_stopping"):
            if value is not None:
                flags.append(k.flag if value else "--no-" + k.flag[2:])
        else:
            flags += [k.flag, str(value)]
    return flags


def flagless_settings(settings: SearchSettings, preset: str) -> list[str]:
    """The settings no ``restore`` option can give (an API-only early-stopping detector)."""
    base = PRESETS[preset]
    return [f"{k.api}={getattr(settings, k.name)}" for k in KNOBS if k.kind == "early_stopping"
            and getattr(settings, k.name) not in (None, getattr(base, k.name) or EarlyStopping())]


def rerun_command(*, observed: str, clean: str, mask: Optional[str], task: Task, preset: str,
                  settings: SearchSettings, seed: int, architecture: Optional[str], device: str, threads: int,
                  output: str) -> str:
    """The ``isnas-fast restore`` command that reproduces one row, run from the suite folder.

    ``OMP_NUM_THREADS`` fixes torch's thread count: on a CPU the last bits of
    a convolution depend on it, and DIP amplifies them.
    """
    args: list[str] = ["isnas-fast", "restore", observed, "--task", task.name]
    params = task.params()
    for name in ("sigma", "factor"):
        if params.get(name) is not None:
            args += [f"--{name}", f"{params[name]:g}"]
    if mask is not None:
        args += ["--mask", mask]
    args += ["--ground-truth", clean, "--preset", preset, "--seed", str(seed)]
    if architecture is not None:
        args += ["--arch", architecture]
    args += knob_flags(settings, preset) + ["--device", device, "-o", output]
    return f"OMP_NUM_THREADS={threads} " + " ".join(shlex.quote(a) for a in args)

