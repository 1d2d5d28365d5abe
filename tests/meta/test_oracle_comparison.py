"""verify.oracle_comparison.compare: pass/fail decisions and the worst element it reports."""

from __future__ import annotations

import numpy as np
import pytest

from verify.oracle_comparison import compare

EXPECTED = np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -4.0]])
BOUNDS = np.array([[1e-3, 1e-3, 2e-3], [1e-4, 1e-6, 1e-2]])


def test_exact_equal_passes_with_ratio_zero():
    c = compare("out", EXPECTED.copy(), EXPECTED, BOUNDS)
    assert c.ok and c.ratio == 0.0 and c.problem == ""
    assert "ok" in c.describe()


def test_within_bound_passes_with_ratio_below_one():
    actual = EXPECTED + 0.5 * BOUNDS
    c = compare("out", actual, EXPECTED, BOUNDS)
    assert c.ok and c.ratio == pytest.approx(0.5)
    exactly = compare("out", EXPECTED + BOUNDS * (1 - 1e-9), EXPECTED, BOUNDS)
    assert exactly.ok


@pytest.mark.parametrize("index", [(0, 0), (1, 1), (1, 2)])
def test_element_just_above_bound_fails_and_is_the_worst(index):
    actual = EXPECTED + 0.9 * BOUNDS * np.array([[1, -1, 1], [-1, 1, -1]])
    actual[index] = EXPECTED[index] + 1.01 * BOUNDS[index]
    c = compare("grad_x", actual, EXPECTED, BOUNDS)
    assert not c.ok
    assert c.index == index
    assert c.expected == EXPECTED[index] and c.actual == actual[index]
    assert c.bound == BOUNDS[index]
    assert c.ratio == pytest.approx(1.01)
    text = c.describe()
    assert "grad_x" in text and str(index) in text and "1.01x" in text
    assert repr(float(EXPECTED[index])) in text and repr(float(actual[index])) in text


def test_worst_is_largest_relative_not_absolute_error():
    actual = EXPECTED.copy()
    actual[1, 2] += 5e-3  # large absolute error, half its (large) bound
    actual[0, 1] += 2e-3  # small absolute error, twice its (small) bound
    c = compare("out", actual, EXPECTED, BOUNDS)
    assert not c.ok and c.index == (0, 1) and c.ratio == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_actual_fails_even_with_infinite_bounds(bad):
    actual = EXPECTED.copy()
    actual[1, 0] = bad
    c = compare("out", actual, EXPECTED, np.full_like(EXPECTED, np.inf))
    assert not c.ok and c.ratio == np.inf and c.index == (1, 0)


def test_nonfinite_expected_must_be_matched_exactly():
    expected = EXPECTED.copy()
    expected[0, 0], expected[0, 1] = np.inf, np.nan
    assert compare("out", expected.copy(), expected, BOUNDS).ok
    for wrong in (1.0, -np.inf, np.nan):
        actual = expected.copy()
        actual[0, 0] = wrong
        assert not compare("out", actual, expected, BOUNDS).ok, wrong
    actual = expected.copy()
    actual[0, 1] = 0.0
    assert not compare("out", actual, expected, BOUNDS).ok


def test_shape_mismatch_fails():
    c = compare("out", EXPECTED.T.copy(), EXPECTED, BOUNDS)
    assert not c.ok and c.ratio == np.inf and "shape" in c.problem
    assert not compare("out", EXPECTED.ravel(), EXPECTED, BOUNDS).ok
    assert "shape" in c.describe()


def test_missing_result_fails():
    c = compare("grad_bias", None, EXPECTED, BOUNDS)
    assert not c.ok and c.ratio == np.inf and "missing" in c.describe()


def test_result_where_none_exists():
    assert compare("grad_bias", None, None, None).ok
    assert compare("grad_bias", np.zeros(3), None, None).ok  # zeros for an absent input are fine
    c = compare("grad_bias", np.array([0.0, 1e-30]), None, None)
    assert not c.ok and "non-zero" in c.problem


def test_zero_bound():
    zero = np.zeros_like(EXPECTED)
    assert compare("running_mean", EXPECTED.copy(), EXPECTED, zero).ok
    actual = EXPECTED.copy()
    actual[0, 2] = np.nextafter(actual[0, 2], np.inf)  # one ulp off a zero bound
    c = compare("running_mean", actual, EXPECTED, zero)
    assert not c.ok and c.index == (0, 2)


def test_empty_arrays_pass():
    empty = np.zeros((0, 3))
    assert compare("out", empty, empty, empty).ok


def test_accepts_other_float_dtypes():
    c = compare("out", EXPECTED.astype(np.float32), EXPECTED, np.full_like(EXPECTED, 1e-7))
    assert c.ok  # these values are exact in float32


def test_nan_bound_does_not_pass_a_wrong_value():
    bounds = BOUNDS.copy()
    bounds[0, 0] = np.nan
    actual = EXPECTED.copy()
    actual[0, 0] += 100.0
    assert not compare("out", actual, EXPECTED, bounds).ok


def test_error_against_zero_bound_has_infinite_ratio():
    actual = EXPECTED + 1.0
    assert compare("out", actual, EXPECTED, np.zeros_like(EXPECTED)).ratio == np.inf
