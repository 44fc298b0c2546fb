"""Deep Image Prior (docs/design.md §6, §7): fit networks to a corrupted image.

Rooms, each with one job:

* :mod:`~isnas_fast.dip.settings` -- what a run is asked to do
  (:class:`DIPSettings`, :class:`EarlyStopping`, precision; all of it in
  one :class:`RunOptions`).
* :mod:`~isnas_fast.dip.plan` -- how the step runs, decided and checked once.
* :mod:`~isnas_fast.dip.steps` -- the step strategies (eager, sharded over
  cores, compiled, CUDA graph) behind one call.
* :mod:`~isnas_fast.dip.monitor` and :mod:`~isnas_fast.dip.early_stopping`
  -- what is recorded per member (EMA output, curves, ES-WMV).
* :mod:`~isnas_fast.dip.loop` -- the loop: :func:`fit_group` (a group with
  its :class:`RunOptions`), :func:`fit_dip_group` (the same with keywords)
  and its one-network wrapper :func:`fit_dip`.
* :mod:`~isnas_fast.dip.compiling` -- ``torch.compile`` settings per device.
* :mod:`~isnas_fast.dip.restarts` -- several random starts of one
  architecture merged into one served network.
* :mod:`~isnas_fast.dip.blend` -- runs of different architectures served
  as the mean of their images.
* :mod:`~isnas_fast.dip.anchor` -- starts of one architecture shrunk toward a
  classical image (bicubic upsampling) by how much they agree.
"""
from __future__ import annotations

from .loop import fit_dip, fit_dip_group, fit_group, make_input_code
from .monitor import DIPResult
from .restarts import MAX_RESTARTS, merge_restarts
from .blend import BlendedNetwork, blend_results
from .plan import StepPlan, check_step_options, graph_group_step, plan_step, should_compile
from .settings import (ES_METHODS, PRECISIONS, DIPSettings, EarlyStopping, RunOptions, precision_context,
                       resolve_precision)

__all__ = [
    "MAX_RESTARTS",
    "merge_restarts",
    "BlendedNetwork",
    "blend_results",
    "DIPSettings",
    "EarlyStopping",
    "RunOptions",
    "DIPResult",
    "fit_dip",
    "fit_dip_group",
    "fit_group",
    "make_input_code",
    "should_compile",
    "graph_group_step",
    "check_step_options",
    "plan_step",
    "StepPlan",
    "PRECISIONS",
    "ES_METHODS",
    "resolve_precision",
    "precision_context",
]
