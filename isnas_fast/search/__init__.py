"""The image-specific architecture search (docs/design.md §1, §4, §5).

Rooms: :mod:`~isnas_fast.search.settings` (every knob, declared once; presets),
:mod:`~isnas_fast.search.candidates` (the lists scored),
:mod:`~isnas_fast.search.scoring` (one forward pass per candidate),
:mod:`~isnas_fast.search.cohort` (the K best per metric, trained small),
:mod:`~isnas_fast.search.selection` (the pick, no ground truth),
:mod:`~isnas_fast.search.training` (every group of DIP runs: built, seeded,
fitted) and :mod:`~isnas_fast.search.pipeline` (the whole method, and the final run).
"""
from __future__ import annotations

from .candidates import NAMED_LISTS, candidate_list, candidate_pool, genotype_seed
from .cohort import CohortMember, rank_cohort, select_in_cohort, train_cohort
from .pipeline import (Ensemble, SearchResult, complete_search, ensemble_average,
                       restored_genotypes, run_search, search_picks, train_final, train_finals)
from .scoring import score_candidates, search_input_channels
from .selection import select_member, selection_weights
from .settings import (DEFAULT_METRIC, DIP_SKIP_WIDTH, FAST_FIT_STEPS, KNOBS, LARGE_DENOISE, PRESETS,
                       TASK_ITERATIONS, Knob, SearchSettings, add_knob_arguments, knob_options, preset,
                       settings_from_options)
from .training import GroupMember, TrainedMember, train_group

__all__ = [
    "TASK_ITERATIONS", "LARGE_DENOISE", "DEFAULT_METRIC", "SearchSettings", "Knob", "KNOBS", "PRESETS", "preset",
    "settings_from_options", "add_knob_arguments", "knob_options", "NAMED_LISTS", "candidate_list",
    "candidate_pool", "genotype_seed", "score_candidates", "search_input_channels", "selection_weights",
    "select_member", "CohortMember", "rank_cohort", "train_cohort", "select_in_cohort", "SearchResult",
    "run_search", "search_picks", "restored_genotypes", "complete_search", "train_final", "train_finals",
    "ensemble_average", "Ensemble", "DIP_SKIP_WIDTH", "FAST_FIT_STEPS", "GroupMember", "TrainedMember",
    "train_group",
]
