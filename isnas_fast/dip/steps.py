"""How one DIP step runs: the strategies a :class:`~isnas_fast.dip.plan.StepPlan` names.

Every strategy is one call, ``step(active, inputs) -> (outputs, losses)``:
``active`` are the indices of the members still training, ``inputs`` their
noisy input codes (same order); it runs each active member's forward pass and
task loss, backpropagates, updates the parameters with Adam and returns each
member's raw output and loss tensor.

Members are independent: a group step minimises the *sum* of their losses,
and since each member's gradient is that of its own loss and Adam is
element-wise, every member follows the trajectory it would follow alone.

* :class:`EagerStep` -- the plain reference (also the compiled strategy,
  with the forward and loss compiled by :func:`~isnas_fast.dip.compiling.compile_step`).
* :class:`ShardedStep` -- members dealt round-robin to shards, each shard an
  :class:`EagerStep` on a worker thread with one intra-op thread.
* :class:`CudaGraphStep` -- the whole step (each member on a CUDA stream of
  its own, then one fused Adam) captured once as a CUDA graph and replayed.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .compiling import compile_step
from .plan import StepPlan

__all__ = ["Objective", "EagerStep", "ShardedStep", "CudaGraphStep", "build_step"]

#: A member's task loss: raw network output (1, C, H, W) -> scalar loss.
Objective = Callable[[Tensor], Tensor]
Outputs = tuple[list[Tensor], list[Tensor]]


class _Forward:
    """Each member's forward pass and task loss, in the plan's precision."""

    def __init__(self, objectives: Sequence[Objective], plan: StepPlan):
        self.objectives = list(objectives)
        self.bf16 = plan.precision == "bf16"
        self.device_type = plan.device.type
        # autocast's weight cache must be off inside a CUDA graph capture
        self.cache = not plan.cuda_graph

    def one(self, k: int, net: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        # autocast is thread-local: entered here, in whichever thread runs the member
        with (torch.autocast(self.device_type, dtype=torch.bfloat16, cache_enabled=self.cache)
              if self.bf16 else contextlib.nullcontext()):
            out = net(x)
        out = out.float()
        return out, self.objectives[k](out)

    def __call__(self, ks: list[int], nets: list[nn.Module], inputs: list[Tensor]) -> Outputs:
        pairs = [self.one(k, net, x) for k, net, x in zip(ks, nets, inputs)]
        return [o for o, _ in pairs], [l for _, l in pairs]


def _adam(params: list[nn.Parameter], lr: float, plan: StepPlan) -> torch.optim.Adam:
    # The eager CPU reference keeps PyTorch's multi-tensor (foreach) Adam; CUDA and
    # compiled steps use the one-kernel fused Adam: the same element-wise update.
    return torch.optim.Adam(params, lr=lr, fused=True if plan.fused_adam else None,
                            foreach=None if plan.fused_adam else True, capturable=plan.capturable_adam)


class EagerStep:
    """Forward every active member, sum the losses, one backward, one Adam step."""

    def __init__(self, nets: Sequence[nn.Module], members: Sequence[int], forward: _Forward, lr: float,
                 plan: StepPlan):
        self.nets = {k: nets[k] for k in members}
        self.opt = _adam([p for k in members for p in nets[k].parameters()], lr, plan)
        self.mark_cuda_graph_step = plan.compiled and plan.device.type == "cuda"
        self.forward: Callable[..., Outputs] = compile_step(forward.__call__, plan.device) if plan.compiled else forward

    def __call__(self, active: list[int], inputs: list[Tensor]) -> Outputs:
        if self.mark_cuda_graph_step:
            torch.compiler.cudagraph_mark_step_begin()  # a new training iteration of the CUDA graph trees
        outs, losses = self.forward(active, [self.nets[k] for k in active], inputs)
        total = losses[0] if len(losses) == 1 else torch.stack(losses).sum()
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        return outs, losses

    def close(self) -> None:
        pass


class ShardedStep:
    """Shards of members stepping side by side on worker threads (eager CPU runs).

    Member ``k`` belongs to shard ``k % shards``; each shard is an
    :class:`EagerStep` with its own Adam.  The workers run with one intra-op
    thread each; the caller's thread count is restored by :meth:`close`.
    """

    def __init__(self, nets: Sequence[nn.Module], forward: _Forward, lr: float, plan: StepPlan):
        self.shards = plan.shards
        self.steps = [EagerStep(nets, range(i, len(nets), self.shards), forward, lr, plan)
                      for i in range(self.shards)]
        self.threads = torch.get_num_threads()
        self.pool = ThreadPoolExecutor(self.shards, initializer=torch.set_num_threads, initargs=(1,))

    def __call__(self, active: list[int], inputs: list[Tensor]) -> Outputs:
        jobs = []
        for i, step in enumerate(self.steps):
            mine = [(k, x) for k, x in zip(active, inputs) if k % self.shards == i]
            if mine:
                jobs.append((step, [k for k, _ in mine], [x for _, x in mine]))
        if len(jobs) == 1:
            results = [jobs[0][0](jobs[0][1], jobs[0][2])]
        else:
            results = list(self.pool.map(lambda job: job[0](job[1], job[2]), jobs))
        by_member = {k: (o, l) for (_, ks, _), (outs, losses) in zip(jobs, results)
                     for k, o, l in zip(ks, outs, losses)}
        return [by_member[k][0] for k in active], [by_member[k][1] for k in active]

    def close(self) -> None:
        self.pool.shutdown()
        # torch.set_num_threads in the workers also set the process-wide default
        torch.set_num_threads(self.threads)


class CudaGraphStep:
    """The whole step of the active members as one replayed CUDA graph.

    The first ``warmup`` steps of a set of active members run eagerly on a
    side stream (as capture requires: lazy initialisation, Adam state); the
    next one is captured together with ``opt.step()`` (a capturable fused
    Adam), and every later step copies its inputs into the graph's static
    inputs and replays it.  When the set of active members changes (early
    stopping), the step is captured again.  The returned tensors are the
    graph's static outputs: valid until the next call.
    """

    def __init__(self, nets: Sequence[nn.Module], forward: _Forward, lr: float, plan: StepPlan,
                 warmup: int = 3):
        self.nets = list(nets)
        self.forward = forward
        self.device = plan.device
        self.opt = _adam([p for n in nets for p in n.parameters()], lr, plan)
        self.warmup = warmup
        self.side = torch.cuda.Stream(self.device)
        self.streams = [torch.cuda.Stream(self.device) for _ in nets]
        self.key: Optional[tuple[int, ...]] = None
        self.eager_steps = 0
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.static_in: list[Tensor] = []
        self.static_out: Outputs = ([], [])

    def _body(self, active: list[int], inputs: list[Tensor]) -> Outputs:
        # every member's forward + backward on a stream of its own, joined before Adam
        here = torch.cuda.current_stream(self.device)
        outs, losses = [], []
        for k, x in zip(active, inputs):
            s = self.streams[k]
            s.wait_stream(here)
            with torch.cuda.stream(s):
                out, loss = self.forward.one(k, self.nets[k], x)
                loss.backward()
            outs.append(out)
            losses.append(loss)
        for k in active:
            here.wait_stream(self.streams[k])
        return outs, losses

    def __call__(self, active: list[int], inputs: list[Tensor]) -> Outputs:
        key = tuple(active)
        if key != self.key:
            self.key, self.eager_steps, self.graph = key, 0, None
        main = torch.cuda.current_stream(self.device)
        if self.eager_steps < self.warmup:
            self.eager_steps += 1
            self.side.wait_stream(main)
            with torch.cuda.stream(self.side):
                self.opt.zero_grad(set_to_none=True)
                outs, losses = self._body(active, inputs)
                self.opt.step()
            main.wait_stream(self.side)
            return outs, losses
        if self.graph is None:
            self.static_in = [x.clone() for x in inputs]
            self.opt.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outs, losses = self._body(active, self.static_in)
                self.opt.step()
            self.graph, self.static_out = graph, (outs, losses)
        else:
            for s, x in zip(self.static_in, inputs):
                s.copy_(x)
        self.graph.replay()
        return self.static_out

    def close(self) -> None:
        pass


def build_step(plan: StepPlan, nets: Sequence[nn.Module], objectives: Sequence[Objective], lr: float):
    """The step strategy ``plan`` names, for ``nets`` (member k minimises ``objectives[k]``)."""
    forward = _Forward(objectives, plan)
    if plan.cuda_graph:
        return CudaGraphStep(nets, forward, lr, plan)
    if plan.strategy == "sharded":
        return ShardedStep(nets, forward, lr, plan)
    return EagerStep(nets, range(len(nets)), forward, lr, plan)
