"""How the DIP step is compiled (DESIGN §7): ``torch.compile`` settings per device.

On CUDA the step runs with CUDA graphs (``mode="reduce-overhead"``).  On the
CPU, Inductor's C++ code generation has two weak spots that made the compiled
DIP step *slower* than eager on the 2-core AVX2 machine this package is
developed on (measured: 1.07-1.2x eager at width 64):

1. **Boolean masks.**  The autograd partitioner saves the masks of ReLU /
   LeakyReLU (``x > 0``, one byte per element) for the backward pass because
   they are 4x smaller than the float activation.  Inductor's vectorised
   bool store on this CPU runs at ~10 ns per element: ``x > 0`` on a
   (1, 64, 64, 64) tensor took 2.8 ms compiled vs 0.2 ms eager (a float
   result: 0.13 ms compiled).  :class:`RecomputeBoolMasks` marks every
   boolean pointwise node of the joint graph "must recompute", so the forward
   saves float tensors it materialises anyway and the backward recomputes the
   comparison inside its fused kernels.  Same arithmetic, same results.
2. **Scatter-add backward of nearest upsampling.**  ``upsample_nearest2d``'s
   backward lowers to an atomic ``index_put`` accumulation.  The networks use
   :func:`isnas_fast.network.nearest_upsample_2x` instead, which in compiled
   graphs is a broadcast (``expand`` + ``reshape``): forward bit-identical,
   backward a plain sum over the 2x2 copies.

Both only change how the compiled program computes the same function; the
eager reference path is untouched.  Two Inductor options complete the CPU
settings (width 64, 64x64, 2 cores; 60 interleaved steps, median ratio
compiled/eager): Inductor's layout optimisation (``layout_optimization``)
converts every conv weight to channels-last in each forward and the weight
gradients back for ``AccumulateGrad``, for no faster oneDNN convolutions
here -- off: 0.855 -> 0.808; the C++ wrapper (``cpp_wrapper``) drops the
Python wrapper's per-call overhead (~7 ms a step over ~100 extern calls):
0.808 -> 0.772, for 13-22% more compile time (cold, this machine: 136 ->
155 s for NAS-DIP at width 64; 196 -> 239 s for a 522-list genotype at
width 16), which the ~4 ms it saves per step at width 64 repays in ~10^4
steps: about the run length from which :func:`isnas_fast.dip.should_compile`
compiles on a CPU at all.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

__all__ = ["RecomputeBoolMasks", "compile_step", "inductor_options"]


def _bool_pointwise(node: torch.fx.Node) -> bool:
    if node.op != "call_function":
        return False
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor) or val.dtype != torch.bool:
        return False
    tags = getattr(node.target, "tags", ())
    return torch.Tag.pointwise in tags


class RecomputeBoolMasks:
    """Joint-graph pass: boolean pointwise results (activation masks) are
    recomputed in the backward pass instead of being saved by the forward.

    Sets ``node.meta["recompute"] = CheckpointPolicy.MUST_RECOMPUTE`` (the tag
    selective activation checkpointing uses) on every pointwise node with a
    ``torch.bool`` result; returns the number of nodes it marked.  Registered
    as an Inductor ``CustomGraphPass`` (its ``uuid`` keys the FX graph cache)
    when :func:`inductor_options` first runs: importing Inductor here would
    import Triton with the package, before a test session can set
    ``TRITON_INTERPRET``.
    """

    def __call__(self, graph: torch.fx.Graph) -> int:
        from torch.utils.checkpoint import CheckpointPolicy

        marked = 0
        for node in graph.nodes:
            if _bool_pointwise(node):
                node.meta["recompute"] = CheckpointPolicy.MUST_RECOMPUTE
                marked += 1
        return marked

    def uuid(self) -> str:
        return "isnas-fast-recompute-bool-masks-v1"


def inductor_options(device: torch.device) -> Optional[dict[str, Any]]:
    """Inductor options for compiling a training step on ``device`` (None: defaults)."""
    if device.type == "cpu":
        try:
            from torch._inductor.custom_graph_pass import CustomGraphPass
        except ImportError:  # older torch: a plain callable pass still runs (the FX graph cache is bypassed)
            pass
        else:
            CustomGraphPass.register(RecomputeBoolMasks)  # an ABC: a virtual subclass, idempotent
        options: dict[str, Any] = {"joint_custom_post_pass": RecomputeBoolMasks(), "layout_optimization": False}
        if torch.__version__ >= "2.13":  # the C++ wrapper of a training graph: measured from 2.13 on
            options["cpp_wrapper"] = True
        return options
    return None


def compile_step(fn, device: torch.device):
    """``torch.compile(fn)`` with this package's settings for ``device``:
    CUDA graphs on CUDA, :func:`inductor_options` on the CPU."""
    if device.type == "cuda":
        return torch.compile(fn, mode="reduce-overhead")
    return torch.compile(fn, options=inductor_options(device))
