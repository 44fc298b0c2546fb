"""The NAS-dataset study of one image: how well the spectral metrics predict
DIP quality, where the search's pick lands, and how early stopping does.

:func:`run_study` trains every genotype of a list (:mod:`~isnas_fast.study.runner`);
:mod:`~isnas_fast.study.analysis` computes the statistics from the rows
alone; :mod:`~isnas_fast.study.report` writes JSON, Markdown and plots.
"""
from __future__ import annotations

from .runner import DEFAULT_PROBES, STUDY_METRICS, StudyResult, run_study

__all__ = ["run_study", "StudyResult", "STUDY_METRICS", "DEFAULT_PROBES"]
