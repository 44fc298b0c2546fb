"""From what the user gives to the :class:`~isnas_fast.tasks.Observation` DIP fits.

The task (a name with parameters, or a :class:`~isnas_fast.tasks.Task`), the
corrupted image, the inpainting mask and the optional ground truth are
loaded once, sized by the size policy (:mod:`isnas_fast.io.sizing`) and
checked against each other.
"""
from __future__ import annotations

from typing import Any, Optional, Union

from torch import Tensor

from .errors import InputError
from .io import check_min_size, load_image, plan_padding
from .noise import NoiseEstimate, estimate_noise
from .tasks import TASK_PARAMETERS, Observation, SuperResolve, Task, make_task

__all__ = ["resolve_task", "resolve_task_for_image", "load_mask", "prepare_problem", "TASK_KEYWORDS"]

#: The smallest noise level an estimate is taken as (0..255 units).
MIN_ESTIMATED_SIGMA = 0.5

#: The task parameters the API takes as keywords (``sigma``, ``p``, ``factor``): every task's
#: (:data:`~isnas_fast.tasks.TASK_PARAMETERS`) but ``mask``, which is an argument of its own.
TASK_KEYWORDS = tuple(dict.fromkeys(p for params in TASK_PARAMETERS.values() for p in params if p != "mask"))


def load_mask(mask: Any) -> Tensor:
    """An inpainting mask (path, PIL image, array or tensor; 1 / white = known) as (1, 1, H, W).

    Colour masks are averaged over channels; :class:`~isnas_fast.tasks.Inpaint`
    thresholds at 0.5.
    """
    if isinstance(mask, Tensor) and mask.ndim in (2, 4) and (mask.ndim == 2 or mask.shape[:2] == (1, 1)):
        return mask if mask.ndim == 4 else mask[None, None]
    m = load_image(mask)
    if m.shape[1] != 1:
        m = m.mean(dim=1, keepdim=True)
    return m


def resolve_task(task: Union[str, Task], mask: Any = None, task_params: Optional[dict] = None) -> Task:
    """A :class:`~isnas_fast.tasks.Task` from a name and parameters (``sigma``,
    ``p``, ``factor``; ``mask`` for inpainting), or the Task given."""
    task_params = dict(task_params or {})
    if isinstance(task, Task):
        if task_params or mask is not None:
            given = ", ".join(sorted(task_params) + (["mask"] if mask is not None else []))
            raise InputError(f"pass task parameters ({given}) either in the Task object or as arguments, not both")
        return task
    if task is None:
        raise InputError("a task is required: denoise, inpaint or sr")
    name = str(task).strip().lower()
    if name in ("inpaint", "inpainting") and mask is not None:
        return make_task(name, mask=load_mask(mask), **{k: v for k, v in task_params.items() if k != "p"})
    return make_task(name, **task_params)


def resolve_task_for_image(image: Any, task: Union[str, Task], mask: Any = None,
                           task_params: Optional[dict] = None) -> tuple[Task, Optional[NoiseEstimate], Any]:
    """The task for ``image``; denoising without ``sigma`` (or ``sigma=None`` / ``"auto"``)
    gets the noise level estimated from the image (:func:`~isnas_fast.noise.estimate_noise`).

    Returns ``(task, the estimate or None, the image)``; the image comes back
    decoded to (1, C, H, W) when it was read for the estimate.
    """
    params = dict(task_params or {})
    name = task.strip().lower() if isinstance(task, str) else None
    if name in ("denoise", "denoising") and params.get("sigma") in (None, "auto"):
        params.pop("sigma", None)
        x = load_image(image)
        check_min_size(int(x.shape[-2]), int(x.shape[-1]), min_side=64)
        noise = estimate_noise(x)
        sigma = max(noise.sigma, MIN_ESTIMATED_SIGMA)  # a noise-free image still gets a defined stop
        return resolve_task(task, mask, {**params, "sigma": sigma}), noise, x
    return resolve_task(task, mask, params), None, image


def prepare_problem(
    image: Any,
    task: Task,
    *,
    ground_truth: Any = None,
) -> tuple[Observation, Optional[Tensor], list[str]]:
    """Load and size-check the corrupted image (and ground truth), then wrap it.

    The networks need sides that are multiples of 32 (for SR: the
    high-resolution output, so the low-resolution input multiples of 32/f)
    and at least 64 px (output).  The corrupted image is padded by reflection
    to those sizes (an inpainting mask with unknown pixels, so the padding
    never enters the loss) and the observation records the padding
    (:attr:`~isnas_fast.tasks.Observation.padding`), so that
    :meth:`~isnas_fast.tasks.Observation.crop_output` gives back exactly the
    input's size (SR: f x).  The ground truth is returned padded the same way
    (its own pixels are exactly ``obs.crop_output(gt)``).  Returns
    ``(observation, ground_truth or None, notices)``.
    """
    x = load_image(image)
    f = task.factor if isinstance(task, SuperResolve) else 1
    what = "low-resolution image" if f > 1 else "image"
    h0, w0 = (int(v) for v in x.shape[-2:])
    padding = plan_padding(h0, w0, multiple=32 // f, min_side=-(-64 // f), factor=f, what=what)
    mask = getattr(task, "mask", None)
    if mask is not None:
        mh, mw = mask.shape[-2:]
        if (mh, mw) != (h0, w0):
            raise InputError(f"mask size {mw}x{mh} does not match the image size {w0}x{h0}")
        mask = padding.pad(mask, "zeros")
    gt = None
    if ground_truth is not None:
        gt = load_image(ground_truth)
        gh, gw = gt.shape[-2:]
        if (gh, gw) != (h0 * f, w0 * f):
            raise InputError(
                f"ground truth is {gw}x{gh} px but must be {w0 * f}x{h0 * f} px"
                + (f" ({f}x the input)" if f > 1 else " (the input's size)")
            )
        if gt.shape[1] != x.shape[1]:
            raise InputError(f"ground truth has {gt.shape[1]} channel(s) but the input has {x.shape[1]}")
        gt = padding.pad(gt, "reflect", scale=f)
    obs = task.observe(padding.pad(x, "reflect"), mask=mask)
    obs.padding = padding if padding.any else None
    return obs, gt, []
