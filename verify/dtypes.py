"""The floating-point dtypes the suite tests, by name: which ones a variant must declare, and the
facts the error bounds and comparisons need of each (unit roundoff, underflow spacing, range).

The one table of dtypes on the suite's side: cases, strategies, legality, the runner and the bounds
read it. Which dtypes are optional comes from the `Variant` contract (`fused.variant.FEATURES`):
a dtype that is a feature name is drawn only for variants that declare it."""

from __future__ import annotations

from dataclasses import dataclass

from fused.variant import FEATURES


@dataclass(frozen=True)
class DtypeInfo:
    mantissa_bits: int  # significand precision p: the unit roundoff is 2^-p
    subnormal_exponent: int  # the smallest positive subnormal is 2^-subnormal_exponent
    largest: float  # the largest finite value


DTYPES = {
    "float32": DtypeInfo(24, 149, 3.4028234663852886e38),
    "float64": DtypeInfo(53, 1074, 1.7976931348623157e308),
    "float16": DtypeInfo(11, 24, 65504.0),
    "bfloat16": DtypeInfo(8, 133, 3.3895313892515355e38),
}
# Always tested (float32/float64, as the contract says); the others only where declared.
BASE_DTYPES = tuple(d for d in DTYPES if d not in FEATURES)
HALF_DTYPES = tuple(d for d in DTYPES if d in FEATURES)


def unit_roundoff(dtype: str) -> float:
    """Half the machine epsilon: the relative error of one correctly rounded operation."""
    return float(2.0 ** -DTYPES[dtype].mantissa_bits)


def underflow_unit(dtype: str) -> float:
    """The smallest positive subnormal: the absolute rounding error floor of the dtype (relative
    error u only holds above the normal range; below it, spacing is this constant)."""
    return float(2.0 ** -DTYPES[dtype].subnormal_exponent)


def largest_finite(dtype: str) -> float:
    """The largest finite value of the dtype: results beyond it cannot be represented."""
    return DTYPES[dtype].largest
