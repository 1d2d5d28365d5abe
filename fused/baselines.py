"""Eager baselines in the `Variant` fn signature, "standard" (nn.BatchNorm2d) form.

* `eager_conv_bn`: `F.conv2d` followed by `F.batch_norm`, differentiated by autograd (double
  backward included). It is what an unfused `nn.Conv2d` + `nn.BatchNorm2d` pair computes, and it
  saves for backward the conv input *and* the conv output.
* `checkpoint_conv_bn`: the same numbers under `torch.utils.checkpoint` (non-reentrant): the
  memory-saving baseline a user would reach for before a fused kernel. Only the conv input and the
  (small) parameters are kept; conv *and* batch norm are recomputed in backward.

  Running statistics are updated exactly once: the checkpointed function computes the batch
  statistics without touching the running buffers (it is re-run in backward), returns them
  detached, and the buffers are updated afterwards, outside the checkpoint, under `no_grad`.

Both validate their arguments with the kernels' shared validator (`fused.arguments`) before
anything runs, so they reject the same calls as every built-in kernel and a call that raises
leaves the running statistics untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from fused.arguments import check_conv_bn_arguments

__all__ = ["eager_conv_bn", "checkpoint_conv_bn"]

_REDUCE_DIMS = (0, 2, 3)


def _dense(t):
    # PyTorch 2.13's CPU batch-norm backward reads a strided (non-contiguous) bn_weight as if it
    # were contiguous and returns NaN input gradients (found by `pytest verify`'s gradcheck
    # property under the fuzz profile); a C-sized copy avoids it.
    return None if t is None else t.contiguous()


def eager_conv_bn(
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
    """`F.conv2d` then `F.batch_norm` (standard form); running stats updated in place."""
    check_conv_bn_arguments(
        x,
        weight,
        bias,
        bn_weight,
        bn_bias,
        running_mean,
        running_var,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        training=training,
        momentum=momentum,
        eps=eps,
        form="standard",
    )
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    bn_weight, bn_bias = _dense(bn_weight), _dense(bn_bias)
    return F.batch_norm(
        y,
        running_mean,
        running_var,
        bn_weight,
        bn_bias,
        training=training,
        momentum=momentum,
        eps=eps,
    )


def _conv_bn_train(
    x, weight, bias, bn_weight, bn_bias, stride, padding, dilation, groups, eps, want_stats
):
    """Conv + training-mode BN from batch statistics only: safe to run twice (no side effects).

    With `want_stats`, also returns the detached batch mean and unbiased variance of the conv
    output, for the caller to update the running statistics once.
    """
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    out = F.batch_norm(
        y, None, None, _dense(bn_weight), _dense(bn_bias), training=True, momentum=0.0, eps=eps
    )
    if not want_stats:
        return out
    with torch.no_grad():
        # Low-precision dtypes: accumulate in float32 like F.batch_norm's CPU/CUDA kernels do.
        acc = y if y.dtype in (torch.float32, torch.float64) else y.float()
        var, mean = torch.var_mean(acc, dim=_REDUCE_DIMS, correction=1)
    return out, mean, var


def _conv_bn_eval(
    x,
    weight,
    bias,
    bn_weight,
    bn_bias,
    running_mean,
    running_var,
    stride,
    padding,
    dilation,
    groups,
    eps,
):
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return F.batch_norm(
        y, running_mean, running_var, _dense(bn_weight), _dense(bn_bias), training=False, eps=eps
    )


def checkpoint_conv_bn(
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
    """Conv2d + BatchNorm2d (standard form) under non-reentrant activation checkpointing.

    Saves only the inputs for backward; recomputes conv and batch norm there. Running stats are
    updated once per call (never again during recomputation), with the unbiased batch variance.
    """
    check_conv_bn_arguments(
        x,
        weight,
        bias,
        bn_weight,
        bn_bias,
        running_mean,
        running_var,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        training=training,
        momentum=momentum,
        eps=eps,
        form="standard",
    )
    if not training:
        # Snapshots (C-sized): recomputation in backward must see the statistics of the forward,
        # even if the caller updates its buffers in place in between.
        rm, rv = running_mean.detach().clone(), running_var.detach().clone()
        return checkpoint(
            _conv_bn_eval,
            x,
            weight,
            bias,
            bn_weight,
            bn_bias,
            rm,
            rv,
            stride,
            padding,
            dilation,
            groups,
            eps,
            use_reentrant=False,
        )

    want_stats = running_mean is not None
    result = checkpoint(
        _conv_bn_train,
        x,
        weight,
        bias,
        bn_weight,
        bn_bias,
        stride,
        padding,
        dilation,
        groups,
        eps,
        want_stats,
        use_reentrant=False,
    )
    if not want_stats:
        return result
    out, mean, var = result
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        running_var.mul_(1 - momentum).add_(var.to(running_var.dtype), alpha=momentum)
    return out
