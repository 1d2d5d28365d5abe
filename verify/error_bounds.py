"""Per-element error bounds derived from the dtype and the conditioning of the case.

A fixed atol is either too loose for a well-conditioned case (a kernel computing in half precision
passes) or too tight for an ill-conditioned one (a correct kernel fails on a large offset with a
small spread, where 1/(std+eps) amplifies every rounding error of the conv output). Instead each
result gets a first-order running error bound, built stage by stage from the magnitudes that flow
into it, in units of the claimed dtype's unit roundoff u:

  conv output      E_y   = u (sqrt(K) |x|*|w| + |y|)                 K terms per output
  centred values   E_d   = E_y + mean(E_y) + u (sqrt(R) mean|y - mean| + R |mean|)   R values
  denominator      rel_D = dD/D from the variance's error        D = sqrt(var)+eps or sqrt(var+eps)
  normalised       E_xh  = E_d / D + |xhat| rel_D
  output           E_out = |bn_weight| E_xh + 2u (|out| + |bn_bias|)
  grad of y        E_gy  = |bn_weight| / D (u sqrt(R) B + B rel_D
                                          + rms(g) (E_xh + |xhat| rms(E_xh)))
                   with B = |g| + mean|g| + 1.5 |xhat| rms(g), the terms of the backward formula
  conv backward    E_gx, E_gw, E_gb: E_gy pushed through |w| and |x|, plus the sums' own rounding

Sums of n terms are charged sqrt(n) u (probabilistic rounding error analysis, Higham & Mary 2019)
rather than the worst case n u, except the part of a per-channel sum that every addend shares
(the mean of a channel) and the squares of values that repeat (padding's bias-only positions,
families of few distinct values), whose rounding errors are not independent: they are charged
n u. The bound scales with u, so a kernel that silently computes in a lower precision than its
dtype fails by the ratio of unit roundoffs (2^13 for float32 against float16, 2^29 for float64
against float32), while every amplification of the maths (1/D, the cancellation in y - mean, the
projection in the backward) widens it exactly where a correct kernel loses accuracy. `SAFETY` is
the margin over the model, calibrated on correct kernels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

import reference
from verify import oracle
from verify.case import Case
from verify.dtypes import underflow_unit, unit_roundoff
from verify.oracle import Results

# Calibrated on correct kernels over the fuzz profile: the worst error/bound seen is reported by
# the run's summary table and in docs/error-bounds.md; the margin stays far below 2^13.
SAFETY = 8.0
# Identical addends round the same way at every step, so the rounding error of a per-channel sum
# grows linearly in its length R on the part the addends share, not as sqrt(R): measured on
# constant channels up to R = 24,577, a correct Welford kernel (torch.batch_norm_update_stats) and
# a sequential float32 sum both err by 0.23-0.24 R u |mean|. Charged SHARED_SUM R u |mean|, which
# with SAFETY allows 2 R u |mean|.
SHARED_SUM = 0.25
# Repeated values round alike as well: when many addends of a channel are equal (the bias alone
# at every position padding leaves no input, or a family of few distinct values such as small
# integers), the rounding errors of a sequential sum of squares or of Welford's updates are no
# longer a random walk. Measured on PyTorch's own float64 CPU statistics: torch.var (one thread,
# Welford) errs by 0.24 R u var on a conv output of small integers (R = 65,536, all but 43 values
# repeats), and F.batch_norm by 0.1 k u var on k = 10,922 bias-only positions of R = 16,383.
# Charged SHARED_SUM k u_sum var for k repeats, with u_sum = `sum_roundoff(dtype)`.
SUM_DTYPE = {"float16": "float32", "bfloat16": "float32"}
# The tutorial form's var term carries sqrt(R/(R-1)) <= sqrt(2) relative to the standard form's.
VAR_TERM = 1.5

_AXES = (0, 2, 3)


def _c(v):
    return np.asarray(v)[None, :, None, None]


def _mean(a):
    return a.mean(axis=_AXES)


def _rms(a):
    return np.sqrt((a * a).mean(axis=_AXES))


@dataclass(frozen=True)
class _Forward:
    """What the gradients' bounds take from the forward's: the unit roundoff and underflow unit of
    the dtype, |bn_weight| (ones without affine), the denominator D and the normalised values xhat
    of the exact forward, the bound on xhat's error and D's relative error."""

    u: float
    eta: float
    gamma: np.ndarray
    denom: np.ndarray
    xhat: np.ndarray
    e_xhat: np.ndarray
    rel_denom: np.ndarray


def bounds(case: Case, arrays: dict, exact: Results, *, gradients: bool = True) -> Results:
    """Allowed absolute error for every element of every result in `exact`."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _bounds(case, arrays, exact, gradients)


def _bounds(case, arrays, exact, gradients):
    u = unit_roundoff(case.dtype)
    x, weight, bias = arrays["x"], arrays["weight"], arrays["bias"]
    c_out = case.out_channels
    gamma = np.abs(arrays["bn_weight"]) if arrays["bn_weight"] is not None else np.ones(c_out)
    beta = np.abs(arrays["bn_bias"]) if arrays["bn_bias"] is not None else np.zeros(c_out)
    conv = case.conv_options()
    r = case.values_per_channel
    root_r = np.sqrt(r)

    y = oracle.conv_output(case, arrays)
    magnitude = reference.conv2d(
        np.abs(x), np.abs(weight), None if bias is None else np.abs(bias), **conv
    )
    # Below the normal range the dtype's spacing is a constant, eta: each rounded product, sum
    # and stored value may err by it whatever its size (values near float16's 6e-5, say).
    eta = underflow_unit(case.dtype)
    e_y = u * (np.sqrt(case.conv_reduction) * magnitude + np.abs(y)) + eta * (
        np.sqrt(case.conv_reduction) + 1
    )

    stats = reference.batch_norm_statistics(
        y,
        arrays["running_mean"],
        arrays["running_var"],
        training=case.training,
        eps=case.eps,
        form=case.form,
    )
    denom, centred = stats.denom, stats.centred
    xhat = centred / _c(denom)
    if case.training:
        # The mean's own rounding: sqrt(R) u for the part of the addends that fluctuates, but
        # linear in R for the part they share (see SHARED_SUM).
        e_mean = _mean(e_y) + u * (
            root_r * _mean(np.abs(centred)) + SHARED_SUM * r * np.abs(stats.mean)
        )
        e_d = e_y + _c(e_mean) + u * np.abs(centred)
        # Error of the variance (sum of squares of centred values), then of the denominator:
        # |(d + e)^2 - d^2| <= 2 |d| e + e^2, whose second-order term is all that is left on a
        # constant channel (d = 0 exactly, yet a kernel's rounded mean leaves e^2 behind).
        var = stats.var_unbiased
        e_var = _mean(2 * np.abs(centred) * e_d + e_d * e_d) * r / max(r - 1, 1) + var * (
            u * root_r + SHARED_SUM * sum_roundoff(case.dtype) * repeats(y)
        )
        if case.form == "tutorial":
            std = np.sqrt(var)
            # sqrt is 1/2-Hoelder: |sqrt(v + e) - sqrt(v)| <= min(e / (2 sqrt(v)), sqrt(e)).
            e_denom = np.minimum(
                np.divide(e_var, 2 * std, out=np.full_like(std, np.inf), where=std > 0),
                np.sqrt(e_var),
            )
        else:
            e_denom = e_var / (2 * denom)
        rel_denom = e_denom / denom + 2 * u
    else:
        e_mean = np.zeros(case.out_channels)
        e_d = e_y + u * (np.abs(centred) + _c(np.abs(arrays["running_mean"])))
        rel_denom = np.full(case.out_channels, 2 * u)
    e_xhat = e_d / _c(denom) + np.abs(xhat) * _c(rel_denom)

    result = Results(out=_c(gamma) * e_xhat + 2 * u * (np.abs(exact.out) + _c(beta)) + 2 * eta)
    if exact.running_mean is not None:
        if case.training:
            m = case.momentum
            running_mean, running_var = arrays["running_mean"], arrays["running_var"]
            # Whatever the blend's arithmetic ((1-m) old + m new, or old + m (new - old)), the
            # rounding of momentum and of the old value costs u |old|, even when 1 - m is tiny.
            # The blend is rounded in the running stats' own dtype (float32 under autocast, when
            # the activations are half): a kernel that keeps them in half precision fails.
            u_stats, eta_stats = unit_roundoff(case.stats_dtype), underflow_unit(case.stats_dtype)
            result.running_mean = m * e_mean + 2 * u_stats * (
                np.abs(running_mean) + m * np.abs(stats.mean)
            )
            result.running_var = m * e_var + 2 * u_stats * (running_var + m * var)
            result.running_mean += 2 * eta_stats
            result.running_var += 2 * eta_stats
        else:
            # Eval mode must hand the running stats back untouched: no error is allowed.
            result.running_mean = np.zeros(case.out_channels)
            result.running_var = np.zeros(case.out_channels)

    if gradients:
        forward = _Forward(u, eta, gamma, denom, xhat, e_xhat, rel_denom)
        result = dataclasses.replace(result, **_gradient_bounds(case, arrays, exact, forward))
    return Results(**{name: SAFETY * value for name, value in result.items()})


def sum_roundoff(dtype: str) -> float:
    """The unit roundoff of the precision a kernel's sums run in: float32 for the half dtypes (the
    precision a half kernel must accumulate in; a float16 accumulator still fails), the dtype's
    own otherwise."""
    return unit_roundoff(SUM_DTYPE.get(dtype, dtype))


def repeats(y) -> np.ndarray:
    """Per channel, how many of its N*H*W values repeat one the channel already holds (R minus
    its distinct values)."""
    by_channel = np.sort(np.moveaxis(y, 1, 0).reshape(y.shape[1], -1), axis=1)
    return (by_channel[:, 1:] == by_channel[:, :-1]).sum(axis=1)


def _shared_sum(v):
    """Per channel, the part of sum(v) over (N, H, W) that every addend shares: R |mean(v)|.
    Its rounding errors add up linearly (R u), not as a random walk (see e_mean above)."""
    return np.abs(v.sum(axis=_AXES))


def _gradient_bounds(case: Case, arrays: dict, exact: Results, forward: _Forward) -> dict:
    """The bounds of the gradients present in the case, by name."""
    u, eta, xhat, e_xhat = forward.u, forward.eta, forward.xhat, forward.e_xhat
    rel_denom = forward.rel_denom
    grads = {}
    g = arrays["grad_out"]
    abs_g = np.abs(g)
    r = case.values_per_channel
    root_r = np.sqrt(r)
    scale = _c(forward.gamma / forward.denom)
    if case.training:
        rms_g = _c(_rms(g))
        terms = abs_g + _c(_mean(abs_g)) + VAR_TERM * np.abs(xhat) * rms_g
        # The reductions sum(g) and sum(g xhat): sqrt(R) u on what fluctuates (in `terms`), and
        # R u on the shared part (a stride-0 grad_out from out.sum() is all shared).
        shared = SHARED_SUM * u * (_c(_shared_sum(g)) + np.abs(xhat) * _c(_shared_sum(g * xhat)))
        e_gy = scale * (
            u * root_r * terms
            + terms * _c(rel_denom)
            + shared
            + rms_g * (e_xhat + np.abs(xhat) * _c(_rms(e_xhat)))
        )
        grad_y = scale * terms  # magnitude of the terms of grad_y, for the conv backward's sums
    else:
        e_gy = scale * abs_g * _c(rel_denom + 2 * u)
        grad_y = scale * abs_g
    e_gy = e_gy + 2 * eta  # grad_y is rounded to the dtype
    if arrays["bn_weight"] is not None:
        grads["grad_bn_weight"] = (
            u * root_r * np.einsum("nchw,nchw->c", abs_g, np.abs(xhat))
            + SHARED_SUM * u * r * _shared_sum(g * xhat)
            + np.einsum("nchw,nchw->c", abs_g, e_xhat)
            + eta * (root_r + 1)
        )
    if arrays["bn_bias"] is not None:
        grads["grad_bn_bias"] = (
            u * root_r * abs_g.sum(axis=_AXES)
            + SHARED_SUM * u * r * _shared_sum(g)
            + eta * (root_r + 1)
        )

    has_bias = arrays["bias"] is not None
    x_abs, w_abs = np.abs(arrays["x"]), np.abs(arrays["weight"])
    conv = case.conv_options()
    pushed = reference.conv2d_backward(e_gy, x_abs, w_abs, has_bias=has_bias, **conv)
    sums = reference.conv2d_backward(grad_y, x_abs, w_abs, has_bias=has_bias, **conv)
    transposed_terms = case.out_channels // case.groups * case.kernel[0] * case.kernel[1]
    grads["grad_x"] = (
        pushed[0] + u * np.sqrt(transposed_terms) * sums[0] + eta * (np.sqrt(transposed_terms) + 1)
    )
    # Sums over the R positions of a channel: their shared part (the exact gradient itself,
    # when grad_y is constant as in eval mode with a stride-0 grad_out) errs linearly.
    linear = SHARED_SUM * u * r
    assert exact.grad_weight is not None, "gradients' bounds need the oracle's gradients"
    grads["grad_weight"] = (
        pushed[1] + u * root_r * sums[1] + linear * np.abs(exact.grad_weight) + eta * (root_r + 1)
    )
    if has_bias:
        assert exact.grad_bias is not None
        grads["grad_bias"] = (
            pushed[2] + u * root_r * sums[2] + linear * np.abs(exact.grad_bias) + eta * (root_r + 1)
        )
    return grads
