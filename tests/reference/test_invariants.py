"""Properties the maths guarantees, checked on the oracle without any other implementation."""

import dataclasses

import numpy as np
import pytest

import reference
from tests.reference.helpers import FIXED_CASES, make_case

TRAIN_CASES = [c for c in FIXED_CASES if c.kwargs["training"] and c.bias is not None]


def _id(case):
    return "{form}-groups{groups}".format(**case.kwargs)


@pytest.mark.parametrize("case", TRAIN_CASES, ids=_id)
def test_conv_bias_gradient_is_zero_in_training(case):
    # The batch mean absorbs any per-channel constant, so dL/d(bias) = sum(dL/dy) = 0.
    grad_bias = case.backward()[2]
    scale = np.abs(case.grad_out).sum() / case.kwargs["eps"]
    assert np.max(np.abs(grad_bias)) <= 1e-13 * scale


@pytest.mark.parametrize("form", reference.FORMS)
def test_output_has_zero_mean_and_the_forms_variance(form):
    case = make_case(5, n=3, hw=(4, 4), form=form, eps=0.1, bn_weight=False, bn_bias=False)
    y = reference.conv2d(case.x, case.weight, case.bias)
    out = case.forward()[0]
    axes = (0, 2, 3)
    np.testing.assert_allclose(out.mean(axis=axes), 0.0, atol=1e-14)
    eps = case.kwargs["eps"]
    if form == "tutorial":  # var_u(out) = var_u / (sqrt(var_u) + eps)^2
        s = y.std(axis=axes, ddof=1)
        np.testing.assert_allclose(out.var(axis=axes, ddof=1), s**2 / (s + eps) ** 2, rtol=1e-12)
    else:  # var_b(out) = var_b / (var_b + eps)
        v = y.var(axis=axes)
        np.testing.assert_allclose(out.var(axis=axes), v / (v + eps), rtol=1e-12)


@pytest.mark.parametrize("case", TRAIN_CASES, ids=_id)
def test_training_is_invariant_to_a_per_channel_shift(case):
    # Shifting every conv-output channel by a constant (through the conv bias) changes nothing
    # in training: not the output, not the gradients of x, weight, bn_weight, bn_bias.
    shifted = dataclasses.replace(case, bias=case.bias + np.linspace(-50, 50, case.bias.size))
    np.testing.assert_allclose(shifted.forward()[0], case.forward()[0], rtol=0, atol=1e-11)
    for i in (0, 1, 3, 4):
        a, b = shifted.backward()[i], case.backward()[i]
        if b is not None:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * max(1.0, np.max(np.abs(b))))


@pytest.mark.parametrize("case", FIXED_CASES[:4], ids=_id)
def test_conv_backward_is_the_adjoint(case):
    # conv2d is bilinear in (x, weight): sum(g * conv(x, w)) = sum(x * grad_x) = sum(w * grad_w).
    kw = {k: case.kwargs[k] for k in ("stride", "padding", "dilation", "groups")}
    rng = np.random.default_rng(0)
    y = reference.conv2d(case.x, case.weight, **kw)
    g = rng.standard_normal(y.shape)
    gx, gw, gb = reference.conv2d_backward(g, case.x, case.weight, **kw)
    assert gb is None
    total = np.sum(g * y)
    np.testing.assert_allclose(np.sum(case.x * gx), total, rtol=1e-12)
    np.testing.assert_allclose(np.sum(case.weight * gw), total, rtol=1e-12)


@pytest.mark.parametrize("form", reference.FORMS)
def test_momentum_extremes_and_eval_leaves_stats(form):
    case = make_case(2, form=form)
    y = reference.conv2d(case.x, case.weight, case.bias)
    args = case.args()
    _, rm0, rv0 = reference.conv_bn(*args, **{**case.kwargs, "momentum": 0.0})
    np.testing.assert_array_equal(rm0, case.running_mean)
    np.testing.assert_array_equal(rv0, case.running_var)
    _, rm1, rv1 = reference.conv_bn(*args, **{**case.kwargs, "momentum": 1.0})
    np.testing.assert_allclose(rm1, y.mean(axis=(0, 2, 3)), rtol=1e-13)
    np.testing.assert_allclose(rv1, y.var(axis=(0, 2, 3), ddof=1), rtol=1e-13)
    _, rm_e, rv_e = reference.conv_bn(*args, **{**case.kwargs, "training": False})
    np.testing.assert_array_equal(rm_e, case.running_mean)
    np.testing.assert_array_equal(rv_e, case.running_var)
    assert rm_e is not case.running_mean and rv_e is not case.running_var
