"""A variant that declares "compile" gives the oracle's results under
`torch.compile(fn, fullgraph=True)` as it does in eager mode: the forward without autograd (the
inference graph), then the output, every requested gradient and the running statistics of a
training or eval call with backward (the joint graph AOTAutograd partitions), within the same
bounds as the `forward` and `gradients` properties, whose cases and calling contexts it draws.
A variant whose numbers change when it is compiled (a `torch.compiler.is_compiling()` branch, a
mutation the compiler drops, a different formula in the traced path) fails here and nowhere else.
A graph break is a failure too: fullgraph=True raises it, and the report says where.

Cost, measured on a 2-core CPU (docs/performance.md, "The compile property"): the variant's function
is compiled afresh for every example (`torch._dynamo.reset()` first, so no state carries over
between examples and dynamo's recompile limit, past which it silently falls back to eager, is
never reached). Inductor generates and builds C++ for each graph, seconds per example; the
`aot_eager` backend runs the same dynamo capture, functionalization, AOTAutograd joint graph and
partition, with eager kernels, in a fraction of that. Everything this property can catch short of
an inductor codegen bug is in the part both share, so the ci-sized run uses `aot_eager` on a few
examples of the small tier, and the fuzz profile (max_examples >= FUZZ_FROM) uses inductor.
CONVBN_COMPILE_BACKEND=inductor|aot_eager|... picks the backend explicitly.
"""

from __future__ import annotations

import dataclasses
import os

import torch
from hypothesis import settings

from verify.properties import gradients
from verify.properties.checks import check_against_oracle, training_step_results

NAME = "compile"
APPLIES_TO = "variants that declare 'compile'"
# Every compile is a new graph however small the case: the small tier, few examples.
SIZE_TIERS = ("small",)
EXAMPLE_SHARE = 0.2  # of the profile's examples (ci: 5 of 25; fuzz: 400 of 2000)
FUZZ_FROM = 500  # max_examples from which the default backend is inductor
BACKEND_ENV = "CONVBN_COMPILE_BACKEND"


def backend() -> str:
    """The torch.compile backend this run uses (see the module docstring)."""
    chosen = os.environ.get(BACKEND_ENV, "").strip()
    if chosen:
        return chosen
    profile = settings.default
    assert profile is not None  # Hypothesis always has a current profile
    return "inductor" if profile.max_examples >= FUZZ_FROM else "aot_eager"


def compiled(variant):
    """`variant` with its function under torch.compile(fullgraph=True), dynamo state cleared."""
    torch._dynamo.reset()
    fn = torch.compile(variant.fn, fullgraph=True, backend=backend(), dynamic=False)
    return dataclasses.replace(variant, fn=fn)


def strategy(variant, tier: str = "small"):
    if "compile" not in variant.supports:
        return None
    return gradients.strategy(variant, tier)


def check(variant, case) -> float:
    inference = check_against_oracle(
        compiled(variant), NAME, case, ("out", "running_mean", "running_var"), gradients=False
    )
    training = check_against_oracle(
        compiled(variant), NAME, case, training_step_results(case), gradients=True
    )
    return max(inference, training)
