"""The oracle against PyTorch float64 (F.conv2d, F.batch_norm or the tutorial formula written
out, and autograd) over Hypothesis-drawn configurations covering every feature, both forms,
train and eval. The bound is norm-relative 1e-9 per tensor; see
helpers.check_against_torch for why."""

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import reference
from tests.reference.helpers import FIXED_CASES, cases, channels_well_spread, check_against_torch

# Only the deadline is relaxed (torch's first calls are slow); the number of examples is the
# active Hypothesis profile's.
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("form", reference.FORMS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@relaxed
@given(data=st.data())
def test_matches_torch(form, training, data):
    case = data.draw(cases(forms=(form,), training=training), label="case")
    assume(channels_well_spread(case))
    check_against_torch(case)


def _case_id(case):
    return "{form}-{mode}-groups{groups}".format(
        mode="train" if case.kwargs["training"] else "eval", **case.kwargs
    )


@pytest.mark.parametrize("case", FIXED_CASES, ids=_case_id)
def test_fixed_cases_match_torch_to_rounding(case):
    errors = check_against_torch(case)
    # Well-conditioned cases: the two implementations differ by rounding only.
    assert max(errors.values()) < 1e-12, errors
