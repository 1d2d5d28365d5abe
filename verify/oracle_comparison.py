"""Compare a kernel's answer with the oracle's under per-element bounds; find the worst element."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Comparison:
    name: str
    ok: bool
    ratio: float  # worst |actual - expected| / bound; inf for NaN/Inf or shape errors
    index: tuple | None = None
    expected: float | None = None
    actual: float | None = None
    bound: float | None = None
    problem: str = ""

    def describe(self) -> str:
        if self.problem:
            return f"{self.name}: {self.problem}"
        if self.ok:
            return f"{self.name}: ok, worst error {self.ratio:.3g}x the bound at {self.index}"
        assert self.actual is not None and self.expected is not None and self.bound is not None
        text = (
            f"{self.name}: worst element {self.index}: expected {self.expected!r}, "
            f"actual {self.actual!r}, |diff| {abs(self.actual - self.expected):.3e} "
            f"> bound {self.bound:.3e} ({self.ratio:.3g}x the bound)"
        )
        if np.isnan(self.actual) and np.isfinite(self.expected):
            text += (
                " [NaN where the oracle is finite; the suite fills uninitialised memory with "
                "NaN, so a kernel that reads memory it never wrote shows here]"
            )
        return text


def compare(name: str, actual, expected, bounds, *, largest: float = np.inf) -> Comparison:
    """`actual` must match `expected` elementwise within `bounds`; NaN/Inf where the oracle is
    finite always fails, and so does a missing result or a wrong shape. Where the exact value
    exceeds `largest` (the dtype's largest finite value) it cannot be represented: overflow to
    infinity of the right sign is then the correctly rounded answer."""
    if expected is None:
        if actual is not None and np.any(np.asarray(actual) != 0):
            return Comparison(
                name, False, np.inf, problem="got a non-zero result where none exists"
            )
        return Comparison(name, True, 0.0)
    if actual is None:
        return Comparison(name, False, np.inf, problem="missing (None) but the oracle has one")
    actual = np.asarray(actual, dtype=np.float64)
    if actual.shape != expected.shape:
        return Comparison(
            name, False, np.inf, problem=f"shape {actual.shape}, expected {expected.shape}"
        )
    if actual.size == 0:
        return Comparison(name, True, 0.0)
    with np.errstate(all="ignore"):
        diff = np.abs(actual - expected)
        # A NaN or infinite bound or difference never passes an error: ratio inf unless equal.
        ratio = np.where(diff == 0, 0.0, np.nan_to_num(diff / bounds, nan=np.inf, posinf=np.inf))
    finite_expected = np.isfinite(expected)
    overflowed = (
        finite_expected
        & (np.abs(expected) > largest)
        & np.isinf(actual)
        & (np.sign(actual) == np.sign(expected))
    )
    same_nonfinite = ~finite_expected & (
        (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    )
    ratio = np.where(overflowed | same_nonfinite, 0.0, ratio)
    flat = int(np.argmax(ratio))
    index = tuple(int(i) for i in np.unravel_index(flat, ratio.shape))
    worst = float(ratio[index])
    return Comparison(
        name,
        worst <= 1.0,
        worst,
        index=index,
        expected=float(expected[index]),
        actual=float(actual[index]),
        bound=float(bounds[index]),
    )
