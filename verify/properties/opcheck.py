"""Every `torch.library` custom op a variant calls passes `torch.library.opcheck` on the arguments
it was really called with: schema (declared mutation and aliasing), fake/meta kernel, autograd
registration, and AOT dispatch. Variants that call no custom op are skipped."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from verify import runner
from verify.properties.checks import fail
from verify.strategies.configs import cases

NAME = "opcheck"
EXAMPLE_SHARE = 1.0
APPLIES_TO = "variants that call a torch.library custom op"
# opcheck runs the op a dozen times under fake tensors and autograd: small cases only.
SIZE_TIERS = ("small",)
WELL_CONDITIONED = ("normal", "integers")
BUILTIN_NAMESPACES = frozenset({"aten", "prim", "prims", "profiler", "_c10d_functional"})


class _CustomOpCalls(TorchDispatchMode):
    """Record (op, arguments) of every non-builtin op, with arguments copied before the call
    (an op may mutate them)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace not in BUILTIN_NAMESPACES:

            def copy(a):
                if isinstance(a, torch.Tensor):
                    return a.detach().clone().requires_grad_(a.requires_grad)
                return a

            self.calls.append((func, tree_map(copy, args), tree_map(copy, kwargs)))
        return func(*args, **kwargs)


def custom_op_calls(variant, case):
    tensors = runner.make_inputs(case, case.arrays(), requires_grad=True)
    with _CustomOpCalls() as recorder:
        runner.call_variant(variant, case, tensors)
    return recorder.calls


def strategy(variant, tier: str = "small"):
    # Whether the variant calls a custom op is only known by calling it, which must not happen
    # at collection (a crashing kernel would take the run down before isolation can help):
    # `check` skips the test on its first example instead.
    # opcheck compares eager and AOT-dispatched gradients with its own fixed tolerance, so its
    # cases are well conditioned (a large offset makes legitimate rounding differences exceed it):
    # it checks how the op is registered, the numbers are the other properties' business.
    return cases(
        variant.supports, variant.form, dtypes=("float32", "float64"), values=WELL_CONDITIONED
    )


def check(variant, case) -> float:
    calls = custom_op_calls(variant, case)
    if not calls:
        import pytest

        pytest.skip(f"property {NAME!r} applies to {APPLIES_TO}; {variant.name!r} calls none")
    for op, args, kwargs in calls:
        try:
            torch.library.opcheck(op, args, kwargs)
        except Exception as error:  # noqa: BLE001 - opcheck reports through several types
            fail(
                variant,
                NAME,
                case,
                [
                    f"torch.library.opcheck({op}) failed: "
                    f"{type(error).__name__}: {str(error)[:1500]}"
                ],
            )
    return 0.0
