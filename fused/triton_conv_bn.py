"""`triton_conv_bn`: the memory-saving fused Conv2d+BatchNorm with its batch norm in Triton.

The convolution and its backward run on PyTorch's kernels (every Conv2d option for free); all
NCHW-sized batch-norm work runs in the Triton kernels of `fused.triton_bn_kernels`: the
per-channel statistics (a split Welford reduction), normalisation and affine in one pass, the
backward reductions sum(g) and sum(g * (y - mean)), and the input-gradient pass. The C-sized
arithmetic between them (inverse std, scale and shift, running-stat blend, the backward's
per-channel coefficients) is shared with `fused.functional` through `fused.batch_norm_math`.

As in the tutorial, only the conv input is saved for backward; the backward recomputes the
convolution. Works on the CPU through Triton's interpreter (TRITON_INTERPRET=1, set up by
`fused.triton_support`) and natively on a CUDA device.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from fused import batch_norm_math as bnm
from fused import native_conv
from fused.arguments import ConvConfig, check_conv_bn_arguments
from fused.triton_bn import TritonBatchNorm

__all__ = ["triton_conv_bn", "TritonConvBNFunction", "DEFAULT_BATCH_NORM"]

DEFAULT_BATCH_NORM = TritonBatchNorm()


def _conv(x, weight, bias, cfg: ConvConfig):
    return native_conv.conv_forward(
        x, weight, bias, cfg.stride, cfg.padding, cfg.dilation, cfg.groups
    )


class TritonConvBNFunction(torch.autograd.Function):
    """autograd.Function behind `triton_conv_bn` (arguments already validated)."""

    @staticmethod
    def forward(
        ctx,
        x,
        weight,
        bias,
        bn_weight,
        bn_bias,
        running_mean,
        running_var,
        cfg,
        training,
        momentum,
        eps,
        form,
        bn: TritonBatchNorm,
    ):
        y = _conv(x, weight, bias, cfg)
        n = bnm.values_per_channel(y)
        stat_dtype = bnm.stat_dtype(y.dtype)
        var = None
        if training:
            mean, var = bn.moments(y, stat_dtype)
            invstd = bnm.train_invstd(var, n, form, eps)
            if running_mean is not None:
                bnm.update_running_stats(running_mean, running_var, mean, var, n, momentum)
        else:
            mean = running_mean.to(stat_dtype, copy=True)
            invstd = bnm.eval_invstd(running_var.to(stat_dtype), form, eps)
        scale, shift = bnm.scale_shift(mean, invstd, bn_weight, bn_bias)
        out = bn.normalize_(y, scale, shift)
        # Only the tutorial form's training backward needs the variance itself.
        ctx.save_for_backward(
            x,
            weight,
            bias,
            bn_weight,
            mean,
            invstd,
            var if training and form == "tutorial" else None,
        )
        ctx.cfg, ctx.training, ctx.eps, ctx.form, ctx.bn = cfg, training, eps, form, bn
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight, bias, bn_weight, mean, invstd, var = ctx.saved_tensors
        need_x, need_w, need_b, need_bnw, need_bnb = ctx.needs_input_grad[:5]
        need_conv = need_x or need_w or need_b
        bn, training = ctx.bn, ctx.training
        # Training needs y for the centred sums; eval only for bn_weight's gradient.
        y = _conv(x, weight, bias, ctx.cfg) if (training or need_bnw) else None
        sum_g = sum_gd = None
        if y is not None or need_bnb:
            sum_g, sum_gd = bn.grad_sums(grad_out, y, mean)
        n = bnm.values_per_channel(grad_out)
        grad_bnw = (sum_gd * invstd).to(bn_weight.dtype) if need_bnw else None
        grad_bnb = sum_g.to(grad_out.dtype) if need_bnb else None
        grad_x = grad_w = grad_b = None
        if need_conv:
            a, b, k = bnm.bn_input_grad_coefficients(
                sum_g, sum_gd, mean, invstd, bn_weight, n, training, ctx.form, var, ctx.eps
            )
            grad_y = bn.input_grad(grad_out, y if training else None, a, b, k)
            grad_x, grad_w, grad_b = native_conv.conv_backward(
                grad_y,
                x,
                weight,
                bias is not None,
                ctx.cfg.stride,
                ctx.cfg.padding,
                ctx.cfg.dilation,
                ctx.cfg.groups,
                (need_x, need_w, need_b),
            )
        return (grad_x, grad_w, grad_b, grad_bnw, grad_bnb) + (None,) * 8


def triton_conv_bn(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    bn_weight: Optional[Tensor] = None,
    bn_bias: Optional[Tensor] = None,
    running_mean: Optional[Tensor] = None,
    running_var: Optional[Tensor] = None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-3,
    form: str = "standard",
    bn: TritonBatchNorm = DEFAULT_BATCH_NORM,
) -> Tensor:
    """Memory-saving `batch_norm(conv2d(x, weight, bias, ...), ...)` with a Triton batch norm.

    Arguments mirror `fused.memory_saving_conv_bn` (`form` "standard" or "tutorial"); running stats
    are updated in place in training and only read in eval. Every argument is validated (ValueError)
    before anything runs or is modified. `bn` is the launcher of the Triton kernels (block sizes,
    accumulation dtype). Once-differentiable.
    """
    if momentum is None:
        raise ValueError(
            "momentum must be a number (the cumulative average of momentum=None "
            "is not supported by triton_conv_bn)"
        )
    cfg = check_conv_bn_arguments(
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
        form=form,
    )
    return TritonConvBNFunction.apply(
        x,
        weight,
        bias,
        bn_weight,
        bn_bias,
        running_mean,
        running_var,
        cfg,
        bool(training),
        float(momentum),
        float(eps),
        form,
        bn,
    )
