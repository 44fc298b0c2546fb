"""How the DIP step is compiled (docs/design.md §7): ``torch.compile`` settings per device.

On CUDA the step runs with CUDA graphs (``mode="reduce-overhead"``).  On the
CPU, Inductor's C++ code generation has two weak spots that make a compiled
DIP step slower than eager unless they are worked around (measurements in
bench/README.md):

1. **Boolean masks.**  The autograd partitioner saves the masks of ReLU /
   LeakyReLU (``x > 0``, one byte per element) for the backward pass because
   they are smaller than the float activation, but Inductor's vectorised
   bool store is slow on the CPU.  :class:`RecomputeBoolMasks` marks every
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
settings: no layout optimisation (``layout_optimization``, which would copy
every conv weight and weight gradient between layouts each step for no
faster oneDNN convolution) and the C++ wrapper (``cpp_wrapper``, which drops
the Python wrapper's per-call overhead for some more compile time).
:func:`isnas_fast.dip.should_compile` compiles on a CPU only for runs long
enough to repay the compile.
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
        if torch.__version__ >= "2.13":  # the C++ wrapper compiles training graphs from 2.13 on
            options["cpp_wrapper"] = True
        return options
    return None


def compile_step(fn, device: torch.device):
    """``torch.compile(fn)`` with this package's settings for ``device``:
    CUDA graphs on CUDA, :func:`inductor_options` on the CPU."""
    if device.type == "cuda":
        return torch.compile(fn, mode="reduce-overhead")
    return torch.compile(fn, options=inductor_options(device))
