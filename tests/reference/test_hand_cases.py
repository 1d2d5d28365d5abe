"""Small cases worked out by hand (the arithmetic is in the comments)."""

import math

import numpy as np
import pytest

import reference
from tests.reference.helpers import no_warnings


def test_known_stride_padding_dilation_output():
    # x[r, c] = 4r + c + 1 on a 4x4 grid; weight taps w[i, j] = 1, 10, 100, 1000.
    # padding 1, dilation 2, stride 2: output 2x2 ((4 + 2 - 2 - 1) // 2 + 1 = 2); output (a, b)
    # reads padded rows 2a + 2i, cols 2b + 2j, i.e. x[2a + 2i - 1, 2b + 2j - 1] or padding.
    #   y[0,0] = 1000 x[1,1]                                   = 6000
    #   y[0,1] = 100 x[1,1] + 1000 x[1,3]                      = 600 + 8000 = 8600
    #   y[1,0] = 10 x[1,1] + 1000 x[3,1]                       = 60 + 14000 = 14060
    #   y[1,1] = x[1,1] + 10 x[1,3] + 100 x[3,1] + 1000 x[3,3] = 6 + 80 + 1400 + 16000 = 17486
    x = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    w = np.array([[1.0, 10.0], [100.0, 1000.0]]).reshape(1, 1, 2, 2)
    y = reference.conv2d(x, w, stride=2, padding=1, dilation=2)
    np.testing.assert_array_equal(y, [[[[6000.0, 8600.0], [14060.0, 17486.0]]]])


def test_output_shape_with_pairs():
    # H: (5 + 2*1 - 1*(3-1) - 1) // 2 + 1 = 3;  W: (7 + 0 - 2*(2-1) - 1) // 3 + 1 = 2
    shape = reference.conv2d_output_shape(
        (1, 1, 5, 7), (4, 1, 3, 2), stride=(2, 3), padding=(1, 0), dilation=(1, 2)
    )
    assert shape == (1, 4, 3, 2)


def test_groups_do_not_mix_channels():
    # groups=2, two input channels per group: output 0 reads x channels 0, 1 and output 1
    # reads x channels 2, 3: y0 = 1*1 + 10*2 = 21, y1 = 100*3 + 1000*4 = 4300.
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1, 1)
    w = np.array([[1.0, 10.0], [100.0, 1000.0]]).reshape(2, 2, 1, 1)
    np.testing.assert_array_equal(reference.conv2d(x, w, groups=2).ravel(), [21.0, 4300.0])


# The 1x1 case: x channels [1, 3] and [2, 0] over two pixels, weight (2, -1), bias 1:
# y = 2*[1, 3] - [2, 0] + 1 = [1, 7]; mean 4, d = [-3, 3], sum d^2 = 18.
X11 = np.array([[[[1.0, 3.0]], [[2.0, 0.0]]]])  # (1, 2, 1, 2)
W11 = np.array([2.0, -1.0]).reshape(1, 2, 1, 1)
B11 = np.array([1.0])
G11 = np.array([0.5, 2.0]).reshape(1, 1, 1, 2)


@pytest.mark.parametrize("form", reference.FORMS)
def test_one_by_one_conv_forward_and_running_stats(form):
    eps = 1e-3
    # tutorial: var_u = 18, denom = sqrt(18) + eps; standard: var_b = 9, denom = sqrt(9 + eps)
    denom = math.sqrt(18) + eps if form == "tutorial" else math.sqrt(9 + eps)
    out, rm, rv = reference.conv_bn(
        X11,
        W11,
        B11,
        running_mean=np.zeros(1),
        running_var=np.ones(1),
        momentum=0.1,
        eps=eps,
        form=form,
    )
    np.testing.assert_allclose(out.ravel(), [-3 / denom, 3 / denom], rtol=1e-14)
    # 0.9 * 0 + 0.1 * 4 = 0.4; 0.9 * 1 + 0.1 * 18 = 2.7 (unbiased in both forms)
    np.testing.assert_allclose(rm, [0.4], rtol=1e-14)
    np.testing.assert_allclose(rv, [2.7], rtol=1e-14)


@pytest.mark.parametrize("form", reference.FORMS)
def test_two_value_channel_gradients(form):
    # Two values y1 < y2, delta = y2 - y1 = 6, d = [-delta/2, delta/2], g = [0.5, 2].
    # L = (g2 - g1) (delta / 2) / denom(delta), and dL/dy2 = -dL/dy1 = dL/d(delta):
    #   tutorial: denom = delta / sqrt(2) + eps   -> dL/d(delta) = (g2 - g1)/2 * eps / denom^2
    #   standard: denom = sqrt(delta^2 / 4 + eps) -> dL/d(delta) = (g2 - g1)/2 * eps / denom^3
    eps, delta, g1, g2 = 0.01, 6.0, 0.5, 2.0
    if form == "tutorial":
        dl = (g2 - g1) / 2 * eps / (delta / math.sqrt(2) + eps) ** 2
    else:
        dl = (g2 - g1) / 2 * eps / math.sqrt(delta**2 / 4 + eps) ** 3
    gx, gw, gb, gbw, gbb = reference.conv_bn_backward(
        G11, X11, W11, B11, np.ones(1), np.zeros(1), eps=eps, form=form
    )
    grad_y = np.array([-dl, dl])
    # Through the 1x1 conv: grad_x[c, p] = w[c] grad_y[p]; grad_w[c] = sum_p x[c, p] grad_y[p].
    np.testing.assert_allclose(gx.ravel(), np.outer([2.0, -1.0], grad_y).ravel(), rtol=1e-9)
    np.testing.assert_allclose(gw.ravel(), [1 * -dl + 3 * dl, 2 * -dl + 0 * dl], rtol=1e-9)
    np.testing.assert_allclose(gb, [0.0], atol=1e-15)
    # grad_bn_bias = g1 + g2; grad_bn_weight = sum g * xhat = (g2 - g1) * (delta / 2) / denom
    denom = delta / math.sqrt(2) + eps if form == "tutorial" else math.sqrt(delta**2 / 4 + eps)
    np.testing.assert_allclose(gbb, [g1 + g2], rtol=1e-14)
    np.testing.assert_allclose(gbw, [(g2 - g1) * delta / 2 / denom], rtol=1e-12)


@pytest.mark.parametrize("value", [2.0, 0.1])  # 0.1: the computed mean is not exactly 0.1
@pytest.mark.parametrize("form", reference.FORMS)
def test_constant_channel(form, value):
    # Zero batch variance: tutorial denom = eps, standard denom = sqrt(eps); the variance term
    # vanishes, leaving grad_y = (g - mean g) * bn_weight / denom, finite, with no warning.
    eps, bn_w = 1e-3, 1.5
    y = np.full((3, 1, 1, 1), value)
    g = np.array([1.0, -2.0, 4.0]).reshape(3, 1, 1, 1)
    out, _, _ = no_warnings(reference.batch_norm, y, np.array([bn_w]), eps=eps, form=form)
    np.testing.assert_allclose(out, 0.0, atol=1e-12)
    grad_y, gbw, gbb = no_warnings(
        reference.batch_norm_backward, g, y, np.array([bn_w]), np.zeros(1), eps=eps, form=form
    )
    denom = eps if form == "tutorial" else math.sqrt(eps)
    want = (g - g.mean()) * bn_w / denom
    # With value 0.1 the computed mean is off by an ulp, so d = y - mean is ~1e-17 rather
    # than 0 and the variance term contributes ~1e-14 of the gradient's scale.
    np.testing.assert_allclose(grad_y, want, rtol=1e-9, atol=1e-12 * np.max(np.abs(want)))
    np.testing.assert_allclose(gbb, [3.0], rtol=1e-15)
    np.testing.assert_allclose(gbw, [0.0], atol=1e-9)


def test_constant_channel_through_the_conv():
    # A zero weight row makes conv channel 0 equal to its bias everywhere: the composite's
    # gradients stay finite and channel 0's dL/dy is (g - mean g) / eps.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 3, 3))
    w = np.stack([np.zeros((1, 2, 2)), rng.standard_normal((1, 2, 2))])
    g = rng.standard_normal((2, 2, 2, 2))
    grads = no_warnings(reference.conv_bn_backward, g, x, w, np.array([0.3, -0.2]))
    assert all(np.isfinite(t).all() for t in grads if t is not None)
    _, gw, _ = reference.conv2d_backward(
        np.concatenate([(g[:, :1] - g[:, :1].mean()) / 1e-3, np.zeros_like(g[:, 1:])], axis=1), x, w
    )
    np.testing.assert_allclose(grads[1][0], gw[0], rtol=1e-9)
