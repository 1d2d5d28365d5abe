"""No input is modified except the running statistics, and a repeated shape with new values gives
new results (a kernel that caches answers by shape, or reuses stale buffers, fails)."""

from __future__ import annotations

import torch

from verify import runner
from verify.properties.checks import check_output, fail
from verify.strategies import sizes
from verify.strategies.configs import cases

NAME = "no_mutation"
APPLIES_TO = "every variant"
SIZE_TIERS = sizes.SIZE_TIERS
EXAMPLE_SHARE = 1.0
UNTOUCHABLE = ("x", "weight", "bias", "bn_weight", "bn_bias", "grad_out")


def strategy(variant, tier: str = "small"):
    return cases(variant.supports, variant.form, tier=tier)


def check(variant, case) -> float:
    worst = 0.0
    for step in range(2):
        arrays = case.arrays(step)
        tensors = runner.make_inputs(case, arrays, requires_grad=True)
        # Snapshot through the strided view's base too: writing into the NaN gaps is a mutation.
        snapshots = {n: _storage_copy(tensors[n]) for n in UNTOUCHABLE if tensors[n] is not None}
        if not case.training:
            snapshots.update(
                {n: _storage_copy(tensors[n]) for n in ("running_mean", "running_var")}
            )
        out = runner.call_variant(variant, case, tensors)
        runner.backward(out, tensors["grad_out"])
        modified = [
            n for n, snap in snapshots.items() if not _same(snap, _storage_copy(tensors[n]))
        ]
        if modified:
            fail(variant, NAME, case, [f"call {step + 1} modified its input(s) {modified}"])
        context = f"call {step + 1} of 2 with the same shapes and new values"
        worst = max(worst, check_output(variant, NAME, case, arrays, out, context=context))
    return worst


def _storage_copy(tensor):
    """The raw bytes of the tensor's whole storage, gaps of strided views included."""
    raw = torch.empty(0, dtype=torch.uint8, device=tensor.device).set_(tensor.untyped_storage())
    return raw.clone()


def _same(a, b) -> bool:
    return a.shape == b.shape and bool(torch.equal(a, b))
