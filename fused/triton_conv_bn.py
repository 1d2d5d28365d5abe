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

import functools

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from fused import batch_norm_math as bnm
from fused import native_conv
from fused.arguments import ConvBNCall
from fused.entry import conv_bn_entry
from fused.functional import differentiable, saved_variance
from fused.triton_bn import TritonBatchNorm

__all__ = ["triton_conv_bn", "triton_conv_bn_with", "TritonConvBNFunction", "DEFAULT_BATCH_NORM"]

DEFAULT_BATCH_NORM = TritonBatchNorm()


class TritonConvBNFunction(torch.autograd.Function):
    """autograd.Function behind `triton_conv_bn`. `apply(call, bn, *differentiable)`: the
    validated call, the launcher of the Triton kernels, and the call's differentiable tensors
    again so that autograd records them."""

    @staticmethod
    def forward(ctx, call: ConvBNCall, bn: TritonBatchNorm, *differentiable):
        x, weight, bias, bn_weight, bn_bias, running_mean, running_var, _, conv, norm = call
        y = native_conv.conv_forward(x, weight, bias, *conv)
        n = bnm.values_per_channel(y)
        stat_dtype = bnm.stat_dtype(y.dtype)
        var = None
        if norm.training:
            mean, var = bn.moments(y, stat_dtype)
            invstd = bnm.train_invstd(var, n, norm.form, norm.eps)
            if running_mean is not None:
                bnm.update_running_stats(running_mean, running_var, mean, var, n, norm.momentum)
        else:
            mean = running_mean.to(stat_dtype, copy=True)
            invstd = bnm.eval_invstd(running_var.to(stat_dtype), norm.form, norm.eps)
        scale, shift = bnm.scale_shift(mean, invstd, bn_weight, bn_bias)
        out = bn.normalize_(y, scale, shift)
        ctx.save_for_backward(x, weight, bias, bn_weight, mean, invstd, saved_variance(var, norm))
        ctx.conv, ctx.norm, ctx.bn = conv, norm, bn
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight, bias, bn_weight, mean, invstd, var = ctx.saved_tensors
        need_x, need_w, need_b, need_bnw, need_bnb = ctx.needs_input_grad[2:7]
        need_conv = need_x or need_w or need_b
        bn, norm = ctx.bn, ctx.norm
        # Training needs y for the centred sums; eval only for bn_weight's gradient.
        y = None
        if norm.training or need_bnw:
            y = native_conv.conv_forward(x, weight, bias, *ctx.conv)
        sum_g = sum_gd = None
        if y is not None or need_bnb:
            sum_g, sum_gd = bn.grad_sums(grad_out, y, mean)
        n = bnm.values_per_channel(grad_out)
        grad_bnw = (sum_gd * invstd).to(bn_weight.dtype) if need_bnw else None
        grad_bnb = sum_g.to(grad_out.dtype) if need_bnb else None
        grad_x = grad_w = grad_b = None
        if need_conv:
            a, b, k = bnm.bn_input_grad_coefficients(
                sum_g, sum_gd, mean, invstd, bn_weight, n, norm.training, norm.form, var, norm.eps
            )
            grad_y = bn.input_grad(grad_out, y if norm.training else None, a, b, k)
            grad_x, grad_w, grad_b = native_conv.conv_backward(
                grad_y, x, weight, bias is not None, *ctx.conv, (need_x, need_w, need_b)
            )
        return None, None, grad_x, grad_w, grad_b, grad_bnw, grad_bnb


def _triton_kernel(call: ConvBNCall, bn: TritonBatchNorm) -> Tensor:
    return TritonConvBNFunction.apply(call, bn, *differentiable(call))


def triton_conv_bn_with(bn: TritonBatchNorm, name: str = "triton_conv_bn"):
    """The entry point of the Triton kernel with launcher `bn` (block sizes, accumulation dtype;
    a retuning, or a planted bug in tests/gallery/triton_bugs.py)."""
    return conv_bn_entry(
        functools.partial(_triton_kernel, bn=bn),
        name=name,
        module=__name__,
        doc="""Memory-saving `batch_norm(conv2d(x, weight, bias, ...), ...)` with a Triton batch
    norm.

    Arguments as `fused.memory_saving_conv_bn`'s (`form` "standard" or "tutorial"); running stats
    are updated in place in training and only read in eval. Every argument is validated
    (ValueError) before anything runs or is modified. Once-differentiable.""",
    )


triton_conv_bn = triton_conv_bn_with(DEFAULT_BATCH_NORM)
