"""A variant that claims to save activation memory (`Variant.memory_saving`) really does, by two
figures of one training call, each compared with eager Conv2d+BatchNorm2d on the same call:

* saved for backward (`verify.memory.saved_tensors`: saved_tensors_hooks, each storage once):
  fewer bytes than eager, and at most one activation-sized buffer (its input) plus per-channel
  vectors. Exact and machine independent, but blind to memory kept by other means.
* kept (`verify.memory.kept_memory`: the CPU allocator's events): the bytes allocated during the
  forward that are still alive once it returned, besides the output, `ctx` attributes, closures
  and module-level caches included. Fewer than eager, and at most a copy of the input plus
  per-channel vectors. After backward, with the output dropped, at most per-channel vectors may
  be left: anything more outlives the training step.

A kernel may also keep a few KiB of bookkeeping whatever the size of the call
(torch.utils.checkpoint keeps the CPU generator's state, 5,056 bytes, to replay it in backward).
On the small cases drawn here that can exceed eager's conv output, so a kept or leaked figure over
its bound is judged again by how it grows with the batch: the call is measured once more with
twice the batch; what grows is activation memory and is held to the bounds above, what does not
is bookkeeping and may be up to BOOKKEEPING_BYTES. Only a figure still over its bound is measured
a third time after full garbage collections (memory held by reference cycles is not kept), so a
correct kernel pays neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from fused.baselines import eager_conv_bn
from verify import runner
from verify.memory import KeptMemory, kept_memory, saved_tensors
from verify.properties.checks import fail
from verify.strategies.configs import cases

NAME = "saved_memory"
EXAMPLE_SHARE = 1.0
APPLIES_TO = "variants with memory_saving=True"
# What a kernel saves is decided per call, not per element; block-sized cases are enough.
SIZE_TIERS = ("small", "tile")
# Enough values per channel that the conv output (the buffer a fused kernel must not keep) dwarfs
# the handful of per-channel vectors (mean, invstd, ...) any batch-norm backward needs.
MIN_VALUES_PER_CHANNEL = 64
PER_CHANNEL_VECTORS = 8
# Kept whatever the size of the call (see the module docstring).
BOOKKEEPING_BYTES = 8 * 1024
# The statistics of a half-precision kernel are float32.
MIN_STAT_ITEMSIZE = 4
PARAMETERS = ("weight", "bias", "bn_weight", "bn_bias")


@st.composite
def _sizeable_case(draw, variant, tier):
    case = draw(cases(variant.supports, variant.form, tier=tier, training=True))
    per_sample = case.values_per_channel // case.batch
    batch = max(case.batch, -(-MIN_VALUES_PER_CHANNEL // per_sample))
    return case.replace(batch=batch)


def strategy(variant, tier: str = "small"):
    return _sizeable_case(variant, tier) if variant.memory_saving else None


@dataclass
class _Call:
    """The memory figures of one call."""

    input_bytes: int
    saved_bytes: int  # activation bytes saved for backward (parameters excluded)
    memory: KeptMemory

    @property
    def kept(self) -> int:
        return self.memory.kept_bytes

    @property
    def leaked(self) -> int:
        return self.memory.leaked_bytes or 0


def _measure(fn, case, *, backward: bool, full_collection: bool = False) -> _Call:
    tensors = runner.make_inputs(case, case.arrays(), requires_grad=True)
    parameters = [tensors[n] for n in PARAMETERS if tensors[n] is not None]
    saved = []

    def forward():
        report = saved_tensors(
            lambda: runner.call_variant(fn, case, tensors), params=parameters, keep_result=True
        )
        out, report.result = report.result, None
        saved.append(report.activation_bytes)
        if not isinstance(out, torch.Tensor):
            raise runner.ContractViolation(f"returned {type(out).__name__}, expected a Tensor")
        return out

    def run_backward(out):
        runner.backward(out, tensors["grad_out"])
        return [tensors[n].grad for n in runner.differentiable(tensors)]

    memory = kept_memory(
        forward, run_backward if backward else None, full_collection=full_collection
    )
    return _Call(tensors["x"].untyped_storage().nbytes(), saved[0], memory)


def _storages(sizes: tuple, shown: int = 4) -> str:
    listed = ", ".join(str(s) for s in sizes[:shown])
    more = f" and {len(sizes) - shown} more" if len(sizes) > shown else ""
    return f"storages of {listed}{more} bytes" if sizes else "no storage"


class _Judge:
    """The kept and leaked bounds of one case, strict (one call) and with bookkeeping (the growth
    from a call with twice the batch)."""

    def __init__(self, variant, case):
        self.variant = variant
        itemsize = runner.TORCH_DTYPES[case.dtype].itemsize
        self.per_channel = (
            PER_CHANNEL_VECTORS * case.out_channels * max(MIN_STAT_ITEMSIZE, itemsize)
        )
        self.double = case.replace(batch=2 * case.batch)

    def strict(self, fused: _Call, eager: _Call) -> list:
        """What is over its bound on this call, with no bookkeeping allowed."""
        over = []
        kept_limit = fused.input_bytes + self.per_channel
        if fused.kept >= eager.kept or fused.kept > kept_limit:
            over.append(
                f"keeps {fused.kept} bytes alive for backward after the forward returned "
                f"({_storages(fused.memory.kept_storages)}) besides its output; eager "
                f"Conv2d+BatchNorm2d keeps {eager.kept}; a memory-saving kernel may keep a copy "
                f"of its input ({fused.input_bytes} bytes) and {PER_CHANNEL_VECTORS} per-channel "
                f"vectors ({kept_limit} bytes in all)"
            )
        if fused.leaked > self.per_channel:
            over.append(
                f"still holds {fused.leaked} bytes allocated during the call "
                f"({_storages(fused.memory.leaked_storages)}) after backward ran and the output "
                f"was dropped: memory that outlives the training step (a cache, a global); at "
                f"most {PER_CHANNEL_VECTORS} per-channel vectors ({self.per_channel} bytes) may "
                f"stay"
            )
        return over

    def growing(self, fused: _Call, eager: _Call, fused2: _Call, eager2: _Call) -> list:
        """What is over its bound once what does not grow with the batch, up to
        BOOKKEEPING_BYTES, is allowed as bookkeeping; `fused2`/`eager2`: twice the batch."""
        over = []
        growth, eager_growth = fused2.kept - fused.kept, eager2.kept - eager.kept
        input_growth = fused2.input_bytes - fused.input_bytes
        fixed = fused.kept - growth
        allowed = self.per_channel + BOOKKEEPING_BYTES
        if growth >= eager_growth or growth > input_growth or fixed > allowed:
            over.append(
                f"with twice the batch (N={self.double.batch}) it keeps {fused2.kept} bytes "
                f"(eager {eager2.kept}): {growth} bytes grow with the batch (eager's "
                f"{eager_growth}, the input's {input_growth}) and {fixed} do not (at most "
                f"{allowed}: per-channel vectors and {BOOKKEEPING_BYTES} bytes of bookkeeping)"
            )
        leak_growth = fused2.leaked - fused.leaked
        leak_fixed = fused.leaked - leak_growth
        if leak_growth > 0 or leak_fixed > allowed:
            over.append(
                f"with twice the batch (N={self.double.batch}) {fused2.leaked} bytes outlive the "
                f"step: {leak_growth} bytes grow with the batch (none may) and {leak_fixed} do "
                f"not (at most {allowed})"
            )
        return over

    def judge(self, fused: _Call, eager: _Call, *, full_collection: bool = False) -> tuple:
        """(what is over its bound, the kept figure as a fraction of eager's): on this call, or
        where that is over, on what grows with the batch."""
        over = self.strict(fused, eager)
        if not over:
            return over, fused.kept / eager.kept
        fused2 = _measure(self.variant, self.double, backward=True, full_collection=full_collection)
        eager2 = _measure(eager_conv_bn, self.double, backward=False)
        growing = self.growing(fused, eager, fused2, eager2)
        return (over + growing if growing else []), (fused2.kept - fused.kept) / (
            eager2.kept - eager.kept
        )


def _figures(fused: _Call, eager: _Call) -> str:
    return (
        f"saved for backward: {fused.saved_bytes} activation bytes (eager {eager.saved_bytes}); "
        f"kept after the forward: {fused.kept} bytes (eager {eager.kept}); the output: "
        f"{fused.memory.output_bytes} bytes"
    )


def check(variant, case) -> float:
    eager = _measure(eager_conv_bn, case, backward=False)
    fused = _measure(variant, case, backward=True)
    judge = _Judge(variant, case)
    saved_limit = fused.input_bytes + judge.per_channel
    if fused.saved_bytes >= eager.saved_bytes or fused.saved_bytes > saved_limit:
        fail(
            variant,
            NAME,
            case,
            [
                f"saves {fused.saved_bytes} activation bytes for backward; eager "
                f"Conv2d+BatchNorm2d saves {eager.saved_bytes}; a memory-saving kernel may keep "
                f"its input ({fused.input_bytes} bytes) and at most {PER_CHANNEL_VECTORS} "
                f"per-channel vectors ({saved_limit} bytes in all)",
                _figures(fused, eager),
            ],
        )
    over, kept_ratio = judge.judge(fused, eager)
    if over:
        # Memory held by reference cycles is not kept: confirm after full collections.
        fused = _measure(variant, case, backward=True, full_collection=True)
        over, kept_ratio = judge.judge(fused, eager, full_collection=True)
        if over:
            fail(variant, NAME, case, [*over, _figures(fused, eager)])
    # The larger figure as a fraction of eager's (of what grows with the batch, where fixed
    # bookkeeping was allowed).
    return max(fused.saved_bytes / eager.saved_bytes, kept_ratio)
