"""Per-channel batch normalisation of a (N, C, H, W) array, in the two forms of docs/contract.md.

With ``m = N*H*W`` values per channel, ``mean`` their mean and ``d = y - mean``:

- ``"tutorial"``: ``out = d / (sqrt(var_u) + eps)`` with ``var_u = sum(d**2) / (m - 1)``;
  eval mode ``(y - running_mean) / (sqrt(running_var) + eps)``.
- ``"standard"`` (``nn.BatchNorm2d``): ``out = d / sqrt(var_b + eps)`` with
  ``var_b = sum(d**2) / m``; eval mode ``(y - running_mean) / sqrt(running_var + eps)``.

Then ``out * bn_weight + bn_bias`` where given. Training updates running stats as
``(1 - momentum) * old + momentum * batch_stat`` with ``var_u`` in both forms.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .validation import check_batch_norm_args, quiet_on_nonfinite


def _c(v):
    """A per-channel vector shaped to broadcast against (N, C, H, W)."""
    return v[None, :, None, None]


def _f64(v):
    return None if v is None else np.asarray(v, dtype=np.float64)


class BatchNormStatistics(NamedTuple):
    """What batch norm divides and subtracts, per the form; also used to size error bounds."""

    centred: np.ndarray  # y - mean (training) or y - running_mean (eval)
    denom: np.ndarray  # per channel: out = centred / denom
    mean: np.ndarray | None  # batch statistics, training only
    var_unbiased: np.ndarray | None
    values_per_channel: int  # m (a field named `count` would shadow tuple.count)


def batch_norm_statistics(y, running_mean, running_var, *, training, eps, form):
    """Centred values and per-channel denominator of batch norm in `form` (batch statistics in
    training, running ones in eval): out = centred / denom before the affine transform."""
    count = y.shape[0] * y.shape[2] * y.shape[3]
    if not training:
        centred = y - _c(running_mean)
        if form == "tutorial":
            denom = np.sqrt(running_var) + eps
        else:
            denom = np.sqrt(running_var + eps)
        return BatchNormStatistics(centred, denom, None, None, count)
    mean = y.mean(axis=(0, 2, 3))
    # Two passes (mean, then squared deviations) rather than E[y^2] - E[y]^2, which cancels
    # catastrophically when |mean| >> std.
    centred = y - _c(mean)
    sum_sq = np.einsum("nchw,nchw->c", centred, centred)
    var_unbiased = sum_sq / (count - 1)
    if form == "tutorial":
        denom = np.sqrt(var_unbiased) + eps
    else:
        denom = np.sqrt(sum_sq / count + eps)
    return BatchNormStatistics(centred, denom, mean, var_unbiased, count)


@quiet_on_nonfinite
def batch_norm(
    y,
    bn_weight=None,
    bn_bias=None,
    running_mean=None,
    running_var=None,
    *,
    training=True,
    momentum=0.1,
    eps=1e-3,
    form="tutorial",
):
    """Returns ``(out, new_running_mean, new_running_var)``; the stats are None when not given.

    Inputs are never modified: the running stats come back as new arrays (copies in eval mode).
    """
    y = np.asarray(y, dtype=np.float64)
    bn_weight, bn_bias, running_mean, running_var = map(
        _f64, (bn_weight, bn_bias, running_mean, running_var)
    )
    check_batch_norm_args(
        y.shape,
        bn_weight,
        bn_bias,
        running_mean,
        running_var,
        training=training,
        momentum=momentum,
        eps=eps,
        form=form,
    )
    norm = batch_norm_statistics(
        y, running_mean, running_var, training=training, eps=eps, form=form
    )
    out = norm.centred / _c(norm.denom)
    if bn_weight is not None:
        out *= _c(bn_weight)
    if bn_bias is not None:
        out += _c(bn_bias)
    if running_mean is None:
        return out, None, None
    if not training:
        return out, running_mean.copy(), running_var.copy()
    new_mean = (1 - momentum) * running_mean + momentum * norm.mean
    new_var = (1 - momentum) * running_var + momentum * norm.var_unbiased
    return out, new_mean, new_var


@quiet_on_nonfinite
def batch_norm_backward(
    grad_out,
    y,
    bn_weight=None,
    bn_bias=None,
    running_mean=None,
    running_var=None,
    *,
    training=True,
    eps=1e-3,
    form="tutorial",
):
    """Gradients of ``sum(grad_out * batch_norm(y, ...)[0])``.

    Returns ``(grad_y, grad_bn_weight, grad_bn_bias)``; None for an absent bn_weight/bn_bias.
    With ``g = grad_out``, ``xhat = centred / denom`` and ``gh = g * bn_weight``:

    - grad_bn_bias = sum g, grad_bn_weight = sum g * xhat (per channel, over N, H, W).
    - eval: the statistics are constants, so grad_y = gh / denom.
    - training: y reaches out through d, the mean and denom. The mean's path gives
      -mean(gh) / denom. For denom, d(denom)/dy = k * d (the mean's share cancels because
      sum(d) = 0), with k = 1 / ((m - 1) * sqrt(var_u)) in the tutorial form and
      k = 1 / (m * denom) in the standard form; dL/d(denom) = -sum(gh * d) / denom**2. So

          grad_y = (gh - mean(gh)) / denom - k * sum(gh * d) / denom**2 * d

    A tutorial-form channel with zero variance has d == 0 and the k-term is O(var_u) as the
    variance vanishes; its limit 0 is used, leaving (gh - mean(gh)) / eps, finite.
    """
    y = np.asarray(y, dtype=np.float64)
    grad_out = np.asarray(grad_out, dtype=np.float64)
    bn_weight, bn_bias, running_mean, running_var = map(
        _f64, (bn_weight, bn_bias, running_mean, running_var)
    )
    check_batch_norm_args(
        y.shape,
        bn_weight,
        bn_bias,
        running_mean,
        running_var,
        training=training,
        momentum=0.0,
        eps=eps,
        form=form,
    )
    if grad_out.shape != y.shape:
        raise ValueError(
            f"grad_out must have the batch norm input's shape {y.shape}, got {grad_out.shape}"
        )
    norm = batch_norm_statistics(
        y, running_mean, running_var, training=training, eps=eps, form=form
    )
    axes = (0, 2, 3)
    grad_bn_bias = grad_out.sum(axis=axes) if bn_bias is not None else None
    grad_bn_weight = None
    if bn_weight is not None:
        grad_bn_weight = np.einsum("nchw,nchw->c", grad_out, norm.centred) / norm.denom
    gh = grad_out * _c(bn_weight) if bn_weight is not None else grad_out
    if not training:
        return gh / _c(norm.denom), grad_bn_weight, grad_bn_bias

    m = norm.values_per_channel
    if form == "tutorial":
        std = np.sqrt(norm.var_unbiased)
        k = np.divide(1.0, (m - 1) * std, out=np.zeros_like(std), where=std > 0)
    else:
        k = 1.0 / (m * norm.denom)
    proj = np.einsum("nchw,nchw->c", gh, norm.centred)
    grad_y = (gh - _c(gh.mean(axis=axes))) / _c(norm.denom)
    grad_y -= _c(k * proj / norm.denom**2) * norm.centred
    return grad_y, grad_bn_weight, grad_bn_bias
