"""Benchmark suites: methods compared over a set of images (``isnas-fast suite``).

Rooms, each importing only from those above it:

* :mod:`~isnas_fast.suite.references` -- the tasks' reference methods
  (``bm3d``, ``bicubic``, ``biharmonic``): classical, no training;
* :mod:`~isnas_fast.suite.jobs` -- the job list (image, method, seed), the
  settings record and the re-run command of a row;
* :mod:`~isnas_fast.suite.images` -- finding the images, writing the
  corrupted inputs;
* :mod:`~isnas_fast.suite.methods` -- one job as a picklable function, and
  training several jobs' runs together;
* :mod:`~isnas_fast.suite.executors` -- where jobs run (this process,
  local processes, Ray);
* :mod:`~isnas_fast.suite.store` -- ``suite.json`` and the append-only
  ``results.jsonl``;
* :mod:`~isnas_fast.suite.summary`, :mod:`~isnas_fast.suite.plots` -- the
  tables and figures;
* :mod:`~isnas_fast.suite.runner` -- :func:`run_suite`, the driver.
"""
from __future__ import annotations

from .executors import Executor, LocalExecutor, RayExecutor
from .jobs import DEFAULT_METHODS, METHOD_LABELS, METHODS, ORACLE_LABEL, REFERENCE_LABEL, Job, default_methods
from .references import REFERENCES
from .runner import SuiteResults, run_suite

__all__ = ["run_suite", "SuiteResults", "Executor", "LocalExecutor", "RayExecutor", "Job", "METHODS",
           "DEFAULT_METHODS", "METHOD_LABELS", "ORACLE_LABEL", "REFERENCES", "REFERENCE_LABEL", "default_methods"]
