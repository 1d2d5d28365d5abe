"""Every gradient of the oracle against central finite differences of the oracle's own forward,
along random directions, both forms, train and eval. Independent of torch: a backward formula
that disagrees with its forward fails here (see helpers.check_finite_differences)."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import reference
from tests.reference.helpers import (
    FIXED_CASES,
    cases,
    channels_well_spread,
    check_finite_differences,
    make_case,
)


def _case_id(case):
    return "{form}-{mode}-groups{groups}".format(
        mode="train" if case.kwargs["training"] else "eval", **case.kwargs
    )


@pytest.mark.parametrize("case", FIXED_CASES, ids=_case_id)
def test_fixed_cases(case):
    check_finite_differences(case)


@pytest.mark.parametrize("form", reference.FORMS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@settings(deadline=None)
@given(data=st.data())
def test_drawn_cases(form, training, data):
    # x_offsets=(0,): with |x| >> its spread the loss bends on a scale far below the step
    # chosen from the inputs' own spread; the two-pass variance is torch's test's business.
    case = data.draw(cases(forms=(form,), training=training, x_offsets=(0.0,)), label="case")
    assume(channels_well_spread(case))  # FD needs a smooth loss (see channels_well_spread)
    check_finite_differences(case, seed=data.draw(st.integers(0, 2**16), label="direction seed"))


@pytest.mark.parametrize("form", reference.FORMS)
def test_two_values_per_channel(form):
    # m = 2, the smallest legal batch: the unbiased/biased factors differ most here.
    case = make_case(3, n=2, hw=(1, 1), kernel=(1, 1), form=form, eps=0.1)
    check_finite_differences(case)
