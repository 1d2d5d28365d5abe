"""verify.error_bounds.bounds: tight enough to catch a kernel computing in lower precision, wide
enough for correct kernels, on well- and ill-conditioned cases, both forms, train and eval.

Observed on these cases (torch 2.13 CPU), as a fraction of the bound (SAFETY included):
correct float32/float64 kernels <= 0.04; float32 maths rounded to float16 at every stage
>= 15 on `out` (well-conditioned); bfloat16 >= 80 on `out`; a float32 kernel on float64 cases
>= 1e4.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given

from fused.variant import FORMS
from tests.helpers import ratios
from tests.meta.helpers import correct, derandomised, lower_precision, single_precision
from verify import error_bounds, oracle
from verify.case import Case
from verify.strategies.configs import cases

BASE = Case(
    batch=2,
    in_channels=3,
    out_channels=4,
    height=6,
    width=6,
    kernel=(3, 3),
    dtype="float32",
    seed=1,
)
CASES = {
    "normal": BASE,
    "affine_bias_geometry": BASE.replace(
        affine=True,
        bias=True,
        in_channels=4,
        groups=2,
        stride=(2, 1),
        padding=(1, 1),
        dilation=(1, 2),
    ),
    "positive": BASE.replace(values="positive"),
    "integers": BASE.replace(values="integers", bias=True),
    "offset": BASE.replace(values="offset"),
    "tiny": BASE.replace(values="tiny"),
    "huge": BASE.replace(values="huge"),
    "constant": BASE.replace(values="constant", affine=True),
    "train_stats": BASE.replace(running_stats=True, momentum=0.3, eps=1e-5),
    "eval": BASE.replace(training=False, running_stats=True, affine=True),
}
# Where a kernel in half precision must be caught on every result family of the forward.
WELL_CONDITIONED = ("normal", "affine_bias_geometry", "positive", "integers", "train_stats", "eval")


# (a) correct kernels pass, with a wide margin
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_correct_kernels_within_bounds(name, form, dtype):
    r = ratios(correct(form), CASES[name].replace(form=form, dtype=dtype))
    assert max(r.values()) < 0.5, r  # observed <= 0.04


@given(
    case=cases(
        correct("tutorial").supports,
        "tutorial",
        values=("normal", "positive", "offset", "tiny", "huge", "integers", "constant"),
    )
)
@derandomised(25)
def test_correct_tutorial_kernel_within_bounds_on_drawn_cases(case):
    assert max(ratios(correct("tutorial"), case).values()) <= 1.0


# (b) the same maths in half precision is caught against float32 bounds
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", WELL_CONDITIONED)
def test_float16_arithmetic_fails_float32_bounds(name, form):
    r = ratios(lower_precision(torch.float16, form), CASES[name].replace(form=form))
    assert r["out"] > 4, r  # observed >= 15
    assert max(r.values()) > 4, r


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", ["normal", "positive", "train_stats"])
def test_float16_gradients_fail_float32_bounds(name, form):
    r = ratios(lower_precision(torch.float16, form), CASES[name].replace(form=form))
    assert max(r["grad_x"], r["grad_weight"]) > 1.5, r  # observed >= 2.9


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", WELL_CONDITIONED + ("offset", "tiny", "huge", "constant"))
def test_bfloat16_arithmetic_fails_float32_bounds(name, form):
    r = ratios(
        lower_precision(torch.bfloat16, form), CASES[name].replace(form=form), gradients=False
    )
    assert r["out"] > 10, r  # observed >= 11 (offset), >= 80 (the others)


# (c) a float32 kernel fails the float64 bounds
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_kernel_fails_float64_bounds(name, form):
    r = ratios(single_precision(form), CASES[name].replace(form=form, dtype="float64"))
    assert r["out"] > 1e3, r  # observed >= 1e4


# (d) the bounds scale with the unit roundoff
def _bounds(case, arrays):
    exact = oracle.expected(case, arrays)
    return exact, error_bounds.bounds(case, arrays, exact)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_bounds_scale_with_unit_roundoff(name, form, monkeypatch):
    # The relative part of the model scales with u; the underflow floor (tested below) does not.
    monkeypatch.setattr(error_bounds, "underflow_unit", lambda dtype: 0.0)
    case32 = CASES[name].replace(form=form)
    arrays = case32.arrays()  # float32 values: exact in every wider dtype
    _, b32 = _bounds(case32, arrays)
    _, b64 = _bounds(case32.replace(dtype="float64"), arrays)
    _, b16 = _bounds(case32.replace(dtype="bfloat16"), arrays)
    degenerate = name == "constant" and form == "tutorial"  # sqrt(var) at var=0: ~sqrt(u)
    for result, bound32 in b32.items():
        bound64, bound16 = getattr(b64, result), getattr(b16, result)
        nonzero = bound32 > 0
        np.testing.assert_array_equal(bound64 > 0, nonzero)
        if degenerate and result.startswith("grad"):
            assert np.all(bound64[nonzero] < bound32[nonzero] * 2.0**-14), result
            continue
        # First order in u, plus the variance's second-order term e^2 (relative size ~u, and all
        # there is on a zero-variance channel, where the ratio is then u64^2 / u32^2).
        scale64 = bound64[nonzero] / bound32[nonzero]
        assert np.all(scale64 <= 2.0**-29 * (1 + 1e-4)), result
        assert np.all(scale64 >= 2.0**-58 * (1 - 1e-6)), result
        # bfloat16's variance error can reach the variance itself, where sqrt's 1/2-Hoelder
        # branch takes over: between sqrt(2^16) and 2^16 times the float32 bound.
        scale16 = bound16[nonzero] / bound32[nonzero]
        assert np.all(scale16 <= 2.0**32), result  # at most second order: (u16 / u32)^2
        assert np.all(scale16 >= 2.0**8 * (1 - 1e-6)), result
        if name in WELL_CONDITIONED:
            np.testing.assert_allclose(scale64, 2.0**-29, rtol=1e-4, err_msg=result)
            # Second-order terms (u16^2) add up to 30% on a channel whose mean dwarfs its spread.
            np.testing.assert_allclose(scale16, 2.0**16, rtol=0.3, err_msg=result)


def test_bounds_carry_the_safety_margin(monkeypatch):
    case = CASES["normal"]
    arrays = case.arrays()
    exact, base = _bounds(case, arrays)
    monkeypatch.setattr(error_bounds, "SAFETY", error_bounds.SAFETY * 2)
    _, doubled = _bounds(case, arrays)
    for result, bound in base.items():
        np.testing.assert_allclose(getattr(doubled, result), 2 * bound, err_msg=result)
    assert 1 <= error_bounds.SAFETY <= 64  # far below 2^13, the float32/float16 roundoff ratio


# (e) finite, positive bounds wherever the answer is finite and non-zero
def _assert_sane(case):
    arrays = case.arrays()
    exact, bounds = _bounds(case, arrays)
    for result, value in exact.items():
        bound = getattr(bounds, result)
        assert bound.shape == value.shape, result
        assert not np.any(np.isnan(bound)), (result, case)
        if result.startswith("running") and not case.training:
            assert np.all(bound == 0), "eval mode must return the running stats untouched"
            continue
        where = np.isfinite(value) & (value != 0)
        assert np.all(np.isfinite(bound[where])) and np.all(bound[where] > 0), (result, case)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_bounds_finite_and_positive(name, form, dtype):
    _assert_sane(CASES[name].replace(form=form, dtype=dtype))


@given(case=cases(correct("standard").supports, "standard"))
@derandomised(30)
def test_bounds_finite_and_positive_on_drawn_cases(case):
    _assert_sane(case)


def test_gradients_false_gives_no_gradient_bounds():
    case = CASES["train_stats"]
    arrays = case.arrays()
    exact = oracle.expected(case, arrays, gradients=False)
    bounds = error_bounds.bounds(case, arrays, exact, gradients=False)
    assert {name for name, _ in bounds.items()} == {"out", "running_mean", "running_var"}


def test_bounds_cover_the_underflow_spacing():
    """Below float16's normal range the spacing is 2^-24 whatever the value: a conv output there
    rounds by up to that much, and 1/(std+eps) amplifies it (found by the fuzz profile)."""
    from fused.registry import builtin_variant
    from verify.case import Case
    from verify.runner import run

    case = Case(
        batch=1,
        in_channels=1,
        out_channels=1,
        height=1,
        width=1,
        kernel=(1, 1),
        padding=(0, 1),
        form="tutorial",
        dtype="float16",
        values="tiny",
        seed=28,
    )
    arrays = case.arrays(1)
    exact, bounds = _bounds(case, arrays)
    assert np.all(bounds.out >= 2.0**-24)
    actual, _ = run(builtin_variant("fused_tutorial"), case, arrays, gradients=False)
    assert np.all(np.abs(actual.out - exact.out) <= bounds.out)


# (f) the shared part of a per-channel sum errs linearly in its length
def test_welford_mean_of_a_constant_channel_errs_linearly():
    """The measurement behind error_bounds.SHARED_SUM: torch's Welford statistics of a channel of R
    identical values err by about 0.24 R u |mean| (a random walk would give sqrt(R) u)."""
    rng = np.random.default_rng(0)
    u = 2.0**-53
    for r in (4096, 24577):
        worst = 0.0
        for _ in range(20):
            value = float(rng.standard_normal() * 10 ** rng.uniform(-3, 3))
            mean, _ = torch.batch_norm_update_stats(
                torch.full((1, 1, 1, r), value, dtype=torch.float64), None, None, 0.0
            )
            worst = max(worst, abs(mean.item() - value) / abs(value) / (r * u))
        assert 0.05 < worst <= 2 * error_bounds.SHARED_SUM, (r, worst)  # measured 0.22-0.24


def test_the_large_tier_false_alarm_stays_fixed(monkeypatch):
    """A correct kernel on a constant channel of 6,143 values: within the bounds with the linear
    charge for the shared part of the mean, 1.09x over them without it (what the large tier
    found)."""
    from fused.registry import builtin_variant
    from verify.properties import shift_invariance
    from verify.report import PropertyFailure

    case = Case(
        batch=1,
        in_channels=1,
        out_channels=1,
        height=1,
        width=6143,
        kernel=(1, 1),
        bias=True,
        values="constant",
        form="tutorial",
        dtype="float64",
    )
    variant = builtin_variant("fused_tutorial")
    assert shift_invariance.check(variant, case) < 0.1
    monkeypatch.setattr(error_bounds, "SHARED_SUM", 0.0)
    with pytest.raises(PropertyFailure, match="out: worst element"):
        shift_invariance.check(variant, case)


def test_the_padded_rows_false_alarm_stays_fixed(monkeypatch):
    """PyTorch's own float64 batch norm on a 5,460-wide image padded by a row above and below:
    two thirds of each channel's values are the bias alone, identical squared deviations in two
    long runs, and the variance's sum errs linearly in their count (0.1 k u var). Within the
    bounds with the charge for repeated values; 1.52x over them without it (what a random draw
    of the running_stats property found)."""
    from fused.registry import builtin_variant
    from verify.properties import running_stats
    from verify.report import PropertyFailure

    case = Case(
        batch=1,
        in_channels=4,
        out_channels=2,
        height=1,
        width=5460,
        kernel=(1, 2),
        padding=(1, 1),
        groups=2,
        affine=True,
        running_stats=True,
        eps=1e-3,
        form="tutorial",
        dtype="float64",
        values="huge",
        seed=10312,
        steps=2,
    )
    variant = builtin_variant("fused_tutorial")
    assert running_stats.check(variant, case) < 0.3
    monkeypatch.setattr(error_bounds, "SHARED_SUM", 0.0)
    with pytest.raises(PropertyFailure, match="running_var: worst element"):
        running_stats.check(variant, case)


def test_the_repeated_integers_false_alarm_stays_fixed(monkeypatch):
    """The tutorial's own Function (torch.var: Welford, one thread) on a conv output of small
    integers, 65,536 values of which 43 are distinct: its float64 variance errs by 0.24 R u var.
    Within the bounds with the charge for repeated values; 1.85x over them without it (what a
    fuzz run of the long tier found)."""
    from fused.registry import builtin_variant
    from verify.properties import forward
    from verify.report import PropertyFailure

    case = Case(
        batch=1,
        in_channels=1,
        out_channels=1,
        height=257,
        width=257,
        kernel=(2, 2),
        form="tutorial",
        dtype="float64",
        values="integers",
        seed=0,
    )
    assert int(error_bounds.repeats(oracle.conv_output(case, case.arrays()))[0]) == 65536 - 43
    variant = builtin_variant("tutorial_function")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one Welford pass over the channel, as in a one-thread worker
    try:
        assert forward.check(variant, case) < 0.3
        monkeypatch.setattr(error_bounds, "SHARED_SUM", 0.0)
        with pytest.raises(PropertyFailure, match="out: worst element"):
            forward.check(variant, case)
    finally:
        torch.set_num_threads(threads)


LONG = Case(batch=2, in_channels=1, out_channels=1, height=1024, width=1024, kernel=(1, 1), seed=3)
LONG_FAMILIES = ["normal", "offset", "positive", "constant"]


def _long_case(values):
    return LONG.replace(values=values, dtype="float32", form="standard", affine=True, bias=True)


@pytest.mark.parametrize("values", LONG_FAMILIES)
def test_correct_kernel_within_bounds_at_two_to_the_21_values_per_channel(values):
    """The long tier's 2^21 values per channel: no false alarm on a correct float32 kernel."""
    from fused.registry import builtin_variant

    assert max(ratios(builtin_variant("eager"), _long_case(values), gradients=False).values()) < 0.5


@pytest.mark.xfail(
    strict=True,
    reason="known gap: at 2^21 values per channel the linear charge on the shared part of the "
    "mean (SHARED_SUM R u |mean|, x SAFETY) lets a float32 mean err by 25% of |mean|, so "
    "statistics rounded to bfloat16 pass (0.004-0.011x the bound); see docs/error-bounds.md",
)
@pytest.mark.parametrize("values", ["normal", "offset", "positive"])
def test_bfloat16_statistics_fail_at_two_to_the_21_values_per_channel(values):
    from fused.variant import Variant
    from tests.gallery._correct import ALL_FEATURES
    from tests.gallery.bugs import LowPrecisionStatistics

    kernel = LowPrecisionStatistics("standard", torch.bfloat16)
    half = Variant("bf16_stats", kernel, form="standard", supports=ALL_FEATURES)
    assert ratios(half, _long_case(values), gradients=False)["out"] > 10
