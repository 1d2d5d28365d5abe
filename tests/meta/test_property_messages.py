"""Properties that delegate to torch's checkers report those checkers' findings as property
failures with torch's own explanation, not as crashes of the suite."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fused import Variant
from verify.case import Case
from verify.properties import finite_differences, gradcheck
from verify.report import PropertyFailure


class _ScaledBackward(torch.autograd.Function):
    """Identity forward whose backward is 1% too large: wrong, but only in the gradient."""

    @staticmethod
    def forward(ctx, y):
        return y.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * 1.01


def _wrong_backward(
    x,
    weight,
    bias=None,
    bn_weight=None,
    bn_bias=None,
    running_mean=None,
    running_var=None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    training=True,
    momentum=0.1,
    eps=1e-3,
):
    y = _ScaledBackward.apply(F.conv2d(x, weight))
    return F.batch_norm(y, None, None, training=True, eps=eps)


WRONG = Variant("wrong_backward", _wrong_backward, form="standard")
CASE = Case(
    batch=2,
    in_channels=2,
    out_channels=2,
    height=3,
    width=3,
    kernel=(2, 2),
    form="standard",
    dtype="float64",
    seed=3,
)


def test_gradcheck_failure_is_reported_with_torch_explanation():
    with pytest.raises(PropertyFailure) as info:
        gradcheck.check(WRONG, CASE)
    message = str(info.value)
    assert "gradcheck failed" in message and "Jacobian mismatch" in message
    assert "raised" not in message.split("\n")[2]  # not reported as a crash of the suite


def test_finite_differences_catch_the_same_kernel():
    with pytest.raises(PropertyFailure, match="directional derivative"):
        finite_differences.check(WRONG, CASE)
