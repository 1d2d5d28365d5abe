"""verify.strategies.configs: every drawn Case is legal, stays within the declared features and
size limits, and every feature and value family is reachable."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

import reference
from fused.variant import BN_FEATURES, CONV_FEATURES, FORMS
from tests.meta.helpers import derandomised
from verify import oracle
from verify.case import LAYOUTS
from verify.dtypes import HALF_DTYPES
from verify.properties.checks import MIN_RELATIVE_SPREAD, has_spread
from verify.strategies.configs import EPS_VALUES, MAX_INPUT_ELEMENTS, cases, dtypes_for
from verify.values import VALUE_FAMILIES

ALL = frozenset(CONV_FEATURES | BN_FEATURES | set(HALF_DTYPES))
SUPPORT_SETS = {
    "none": frozenset(),
    "all": ALL,
    "conv_only": frozenset(CONV_FEATURES),
    "stats_half": frozenset({"running_stats", "affine", "float16"}),
}
FAST = settings(
    max_examples=30,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _input_elements(case):
    return case.batch * case.in_channels * case.height * case.width


def _check_legal(case, supports, form):
    assert case.form == form
    assert case.features() <= supports, (case.features(), supports)
    assert case.dtype in dtypes_for(supports)
    assert case.layout in LAYOUTS and case.values in VALUE_FAMILIES and case.eps in EPS_VALUES
    assert 0.0 <= case.momentum <= 1.0
    assert case.in_channels % case.groups == 0 and case.out_channels % case.groups == 0
    assert min(case.output_hw) >= 1
    if case.training:
        assert case.values_per_channel >= 2
    else:
        assert case.running_stats
    arrays = case.arrays()
    # The oracle accepts the case: no ValueError from its validation.
    out, mean, var = reference.conv_bn(
        arrays["x"],
        arrays["weight"],
        arrays["bias"],
        arrays["bn_weight"],
        arrays["bn_bias"],
        arrays["running_mean"],
        arrays["running_var"],
        form=form,
        **case.kwargs(),
    )
    assert out.shape == case.out_shape
    assert (mean is None) == (not case.running_stats)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("support_name", sorted(SUPPORT_SETS))
def test_drawn_cases_are_legal_and_within_supports(support_name, form):
    supports = SUPPORT_SETS[support_name]

    @FAST
    @given(case=cases(supports, form))
    def check(case):
        _check_legal(case, supports, form)
        assert _input_elements(case) <= MAX_INPUT_ELEMENTS

    check()


@given(case=cases(ALL, "standard", max_input_elements=24))
@FAST
def test_max_input_elements_respected(case):
    assert _input_elements(case) <= 24
    assert case.values_per_channel >= (2 if case.training else 1)


@given(data=st.data())
@FAST
def test_restrictions_are_honoured(data):
    case = data.draw(
        cases(
            ALL,
            "tutorial",
            dtypes=("float64",),
            layouts=("strided",),
            values=("integers",),
            training=False,
            device="cuda",
        )
    )
    assert (case.dtype, case.layout, case.values, case.training, case.device) == (
        "float64",
        "strided",
        "integers",
        False,
        "cuda",
    )
    assert case.running_stats


REACHABLE = {
    **{
        f"feature:{f}": (lambda feature: lambda c: feature in c.features())(f)
        for f in sorted(ALL - {"cuda"})
    },
    **{f"values:{v}": (lambda family: lambda c: c.values == family)(v) for v in VALUE_FAMILIES},
    **{f"layout:{lay}": (lambda layout: lambda c: c.layout == layout)(lay) for lay in LAYOUTS},
    "eval": lambda c: not c.training,
    "train_with_stats": lambda c: c.training and c.running_stats,
    "momentum_0": lambda c: c.training and c.running_stats and c.momentum == 0.0,
    "momentum_1": lambda c: c.training and c.running_stats and c.momentum == 1.0,
    "eps_small": lambda c: c.eps == min(EPS_VALUES),
    "rectangular_kernel": lambda c: c.kernel[0] != c.kernel[1],
    "rectangular_stride": lambda c: c.stride[0] != c.stride[1],
    "two_values_per_channel": lambda c: c.training and c.values_per_channel == 2,
    "one_value_eval": lambda c: not c.training and c.values_per_channel == 1,
    "big": lambda c: _input_elements(c) > MAX_INPUT_ELEMENTS // 4,
}


@pytest.mark.parametrize("name", sorted(REACHABLE))
def test_everything_is_eventually_drawn(name):
    # Generation only: the first hit is enough, shrinking it would only cost time.
    found = find(
        cases(ALL, "tutorial"),
        REACHABLE[name],
        settings=derandomised(2000, phases=[Phase.generate]),
    )
    assert REACHABLE[name](found)


def test_unsupported_features_never_drawn():
    # Without "running_stats" a variant never sees eval mode; without half types, never a half
    # dtype.
    @FAST
    @given(case=cases(frozenset({"affine"}), "standard"))
    def check(case):
        assert case.training and not case.running_stats
        assert case.dtype in ("float32", "float64")
        assert case.features() <= {"affine"}

    check()


# -- has_spread --------------------------------------------------------------------------------
GEOMETRY = dict(batch=2, in_channels=3, out_channels=4, height=6, width=6, kernel=(3, 3))


def test_has_spread_on_known_cases():
    from verify.case import Case

    assert has_spread(Case(**GEOMETRY, values="normal", seed=1))
    assert not has_spread(Case(**GEOMETRY, values="constant", seed=1))  # a zero-variance channel
    # Eval mode never needs spread.
    assert has_spread(
        Case(**GEOMETRY, values="constant", seed=1, training=False, running_stats=True)
    )


@given(case=cases(ALL, "standard", dtypes=("float64",)).filter(has_spread))
@FAST
def test_has_spread_filter_keeps_only_spread_cases(case):
    if not case.training:
        return
    y = oracle.conv_output(case, case.arrays())
    spread = y.std(axis=(0, 2, 3))
    assert np.all(spread > MIN_RELATIVE_SPREAD * (np.abs(y).max(axis=(0, 2, 3)) + 1.0))
    assert np.all(np.ptp(y, axis=(0, 2, 3)) > 0)


def test_float16_cases_have_representable_answers():
    from verify import oracle

    @derandomised(40, phases=[Phase.generate])
    @given(case=cases(ALL, "tutorial", dtypes=("float16",), values=("constant",)))
    def check(case):
        exact = oracle.expected(case, case.arrays())
        for name, value in exact.items():
            assert np.all(np.abs(value) <= np.finfo(np.float16).max), (name, case)

    check()
