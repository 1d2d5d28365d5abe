"""Compile peers: a benchmark network under `torch.compile(fullgraph=True)`, at the partitioner's
default or with an activation memory budget.

`torch._functorch.config.activation_memory_budget` (1.0 = the partitioner's runtime-optimal
choice, 0.0 = recompute everything recomputable) is read when AOTAutograd partitions the joint
graph, i.e. while the first call compiles. It cannot simply be patched around that first call:
dynamo caches compiled graphs on the code object of `forward`, and a second network of the same
class (another budget, same variant) matches the first one's guards and silently reuses its graph
(measured: the budget-0.5 network then saved exactly the default's bytes). So each budget gets
its own backend callable, which patches the budget around inductor's `compile_fx`; dynamo guards
on the backend, so each budget compiles its own graph.

The compile time is the first call (capture, partition, inductor's C++ builds, one step) and is
reported apart from the step time; inductor's on-disk caches make a second run's first call
faster than a cold one.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Optional

import torch

from verify.benchmarks.models import Workload

__all__ = [
    "BUDGETS",
    "budget_label",
    "budget_id",
    "compile_backend",
    "compiled_workload",
    "per_channel_allowance",
]

# The budgets the compile peers run at: None is the partitioner's default (1.0); 0.5 is the knob
# a user turns for memory.
BUDGETS = (None, 0.5)
# Every compiled network is a new entry in dynamo's cache for its class's forward; the headline
# compiles more of them than dynamo's default limit (8) allows before falling back.
RECOMPILE_LIMIT = 64


# "No hungrier than compiled eager" is about activations: the partitioner may keep a few C-sized
# vectors more or less per conv-BN pair (a mask, a reciprocal) depending on how the batch norm is
# written; as many as the saved_memory property allows a fused kernel beside its input.
PER_CHANNEL_VECTORS = 8


def per_channel_allowance(workload: Workload) -> int:
    """Bytes of PER_CHANNEL_VECTORS C_out-sized vectors per conv-BN pair of the network."""
    from verify.benchmarks.models import ConvBN

    return sum(
        PER_CHANNEL_VECTORS * m.weight.shape[0] * m.weight.element_size()
        for m in workload.model.modules()
        if isinstance(m, ConvBN)
    )


def budget_label(budget: Optional[float]) -> str:
    return "default" if budget is None else f"budget {budget:g}"


def budget_id(budget: Optional[float]) -> str:
    """`budget_label` as one word, for test IDs and backend names."""
    return budget_label(budget).replace(" ", "_")


def compile_backend(budget: Optional[float]):
    """An inductor backend that partitions with `budget` (None: the config as it is)."""

    def backend(gm, example_inputs):
        from torch._inductor.compile_fx import compile_fx

        if budget is None:
            return compile_fx(gm, example_inputs)
        with torch._functorch.config.patch(activation_memory_budget=budget):
            return compile_fx(gm, example_inputs)

    backend.__name__ = f"inductor_{budget_id(budget)}"
    return backend


def compiled_workload(workload: Workload, budget: Optional[float] = None) -> tuple[Workload, float]:
    """`workload` with its model under torch.compile(fullgraph=True) at `budget`, compiled by one
    training step; returns it and the seconds that first step took (compile included)."""
    model = torch.compile(workload.model, fullgraph=True, backend=compile_backend(budget))
    compiled = replace(workload, model=model)
    with torch._dynamo.config.patch(
        recompile_limit=RECOMPILE_LIMIT, accumulated_recompile_limit=RECOMPILE_LIMIT
    ):
        start = time.perf_counter()
        compiled.step()
        seconds = time.perf_counter() - start
    compiled.zero_grad()
    return compiled, seconds
