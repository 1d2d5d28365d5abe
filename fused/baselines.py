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

Both are kernels behind `fused.entry.conv_bn_entry`, like every built-in kernel: the same
validation before anything runs (a call that raises leaves the running statistics untouched), and
`num_batches_tracked` counted as nn.BatchNorm2d counts it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from fused.arguments import ConvBNCall
from fused.entry import conv_bn_entry

__all__ = ["eager_conv_bn", "checkpoint_conv_bn"]

_REDUCE_DIMS = (0, 2, 3)


def _dense(t):
    # PyTorch 2.13's CPU batch-norm backward reads a strided (non-contiguous) bn_weight as if it
    # were contiguous and returns NaN input gradients (found by `pytest verify`'s gradcheck
    # property under the fuzz profile); a C-sized copy avoids it.
    return None if t is None else t.contiguous()


def _batch_norm(y, bn_weight, bn_bias, running_mean, running_var, norm):
    # A cumulative average's factor is resolved by the entry point: momentum is None only when
    # there are no running statistics to blend.
    momentum = 0.0 if norm.momentum is None else norm.momentum
    return F.batch_norm(
        y,
        running_mean,
        running_var,
        _dense(bn_weight),
        _dense(bn_bias),
        norm.training,
        momentum,
        norm.eps,
    )


def _conv_bn(x, weight, bias, bn_weight, bn_bias, running_mean, running_var, conv, norm):
    """`F.conv2d` then `F.batch_norm`; in training, running stats (if given) updated in place."""
    y = F.conv2d(x, weight, bias, *conv)
    return _batch_norm(y, bn_weight, bn_bias, running_mean, running_var, norm)


def _eager_kernel(call: ConvBNCall):
    return _conv_bn(*call[:7], call.conv, call.norm)


def _batch_moments(x, weight, bias, bn_weight, bn_bias, conv, norm):
    """Conv + training-mode BN from batch statistics only: safe to run twice (no side effects).
    Also returns the detached batch mean and unbiased variance of the conv output, for the caller
    to update the running statistics once."""
    y = F.conv2d(x, weight, bias, *conv)
    out = _batch_norm(y, bn_weight, bn_bias, None, None, norm)
    with torch.no_grad():
        # Low-precision dtypes: accumulate in float32 like F.batch_norm's CPU/CUDA kernels do.
        acc = y if y.dtype in (torch.float32, torch.float64) else y.float()
        var, mean = torch.var_mean(acc, dim=_REDUCE_DIMS, correction=1)
    return out, mean, var


def _checkpoint_kernel(call: ConvBNCall):
    """Conv2d + BatchNorm2d (standard form) under non-reentrant activation checkpointing.

    Saves only the inputs for backward; recomputes conv and batch norm there. Running stats are
    updated once per call (never again during recomputation), with the unbiased batch variance.
    """
    x, weight, bias, bn_weight, bn_bias, running_mean, running_var, _, conv, norm = call
    if not norm.training:
        # Snapshots (C-sized): recomputation in backward must see the statistics of the forward,
        # even if the caller updates its buffers in place in between.
        stats = running_mean.detach().clone(), running_var.detach().clone()
        tensors = (x, weight, bias, bn_weight, bn_bias, *stats)
        return checkpoint(_conv_bn, *tensors, conv, norm, use_reentrant=False)
    tensors = (x, weight, bias, bn_weight, bn_bias)
    if running_mean is None:
        return checkpoint(_conv_bn, *tensors, None, None, conv, norm, use_reentrant=False)
    out, mean, var = checkpoint(_batch_moments, *tensors, conv, norm, use_reentrant=False)
    with torch.no_grad():
        momentum = norm.momentum
        running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        running_var.mul_(1 - momentum).add_(var.to(running_var.dtype), alpha=momentum)
    return out


eager_conv_bn = conv_bn_entry(
    _eager_kernel,
    name="eager_conv_bn",
    forms=("standard",),
    doc="`F.conv2d` then `F.batch_norm` (standard form); running stats updated in place.",
)
checkpoint_conv_bn = conv_bn_entry(
    _checkpoint_kernel,
    name="checkpoint_conv_bn",
    forms=("standard",),
    doc=_checkpoint_kernel.__doc__ or "",
)
