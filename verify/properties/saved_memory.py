"""A variant that claims to save activation memory (`Variant.memory_saving`) saves fewer bytes for
backward than eager Conv2d+BatchNorm2d on the same call, and at most one activation-sized buffer
(its input) plus per-channel vectors. Bytes are counted with saved_tensors_hooks, each storage
once: exact and machine independent."""

from __future__ import annotations

from hypothesis import strategies as st

from fused.baselines import eager_conv_bn
from verify import runner
from verify.memory import saved_tensors
from verify.properties.checks import fail
from verify.strategies.configs import cases

NAME = "saved_memory"
APPLIES_TO = "variants with memory_saving=True"
# What a kernel saves is decided per call, not per element; block-sized cases are enough.
SIZE_TIERS = ("small", "tile")
# Enough values per channel that the conv output (the buffer a fused kernel must not keep) dwarfs
# the handful of per-channel vectors (mean, invstd, ...) any batch-norm backward needs.
MIN_VALUES_PER_CHANNEL = 64
PER_CHANNEL_VECTORS = 8


@st.composite
def _sizeable_case(draw, variant, tier):
    case = draw(
        cases(
            variant.supports,
            variant.form,
            tier=tier,
            training=True,
            dtypes=("float32",),
            layouts=("contiguous",),
        )
    )
    per_sample = case.values_per_channel // case.batch
    batch = max(case.batch, -(-MIN_VALUES_PER_CHANNEL // per_sample))
    return case.replace(batch=batch)


def strategy(variant, tier: str = "small"):
    return _sizeable_case(variant, tier) if variant.memory_saving else None


def _activation_bytes(fn, case, arrays):
    tensors = runner.make_inputs(case, arrays, requires_grad=True)
    parameters = [
        tensors[n] for n in ("weight", "bias", "bn_weight", "bn_bias") if tensors[n] is not None
    ]
    saved = saved_tensors(lambda: runner.call_variant(fn, case, tensors), params=parameters)
    return saved.activation_bytes, tensors["x"].untyped_storage().nbytes()


def check(variant, case) -> float:
    arrays = case.arrays()
    fused_bytes, input_bytes = _activation_bytes(variant, case, arrays)
    eager_bytes, _ = _activation_bytes(eager_conv_bn, case, arrays)
    itemsize = 4
    allowance = input_bytes + PER_CHANNEL_VECTORS * case.out_channels * itemsize
    if fused_bytes >= eager_bytes or fused_bytes > allowance:
        fail(
            variant,
            NAME,
            case,
            [
                f"saves {fused_bytes} activation bytes for backward; eager Conv2d+BatchNorm2d "
                f"saves {eager_bytes}; a memory-saving kernel may keep its input "
                f"({input_bytes} bytes) and "
                f"at most {PER_CHANNEL_VECTORS} per-channel vectors ({allowance} bytes in all)"
            ],
        )
    return fused_bytes / eager_bytes
