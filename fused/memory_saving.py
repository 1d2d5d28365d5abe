"""`memory_saving_conv_bn`: the general memory-saving fused Conv2d + BatchNorm2d op.

Forward runs the convolution and the batch norm as usual (the normalisation is written in place
into the convolution's output, so no second NCHW buffer is allocated); backward recomputes the
convolution from its input instead of having saved it. What is saved for backward is therefore one
NCHW-sized tensor (the conv input `x`), the conv weight (and bias, bn_weight) and C-sized
statistics - never the conv output or the normalised output.

Every Conv2d/BatchNorm2d option is supported: stride, padding, dilation, groups, conv bias, affine
(bn_weight / bn_bias independently), running statistics (updated in place like `F.batch_norm`, with
`momentum=None` meaning a cumulative average driven by `num_batches_tracked`), training and eval,
both batch-norm forms ("standard" = nn.BatchNorm2d, "tutorial" = unbiased variance with eps outside
the square root), any memory layout, float32/float64 and float16/bfloat16 (statistics in float32).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from fused import batch_norm_math as bnm
from fused import native_conv
from fused.arguments import ConvBNCall, ConvConfig, NormConfig
from fused.entry import conv_bn_entry
from fused.traceable import traceable_kernel

__all__ = ["memory_saving_conv_bn", "MemorySavingConvBNFunction", "forward_math", "backward_math"]


class NativeBatchNorm:
    """The NCHW-sized batch-norm passes on PyTorch's native kernels (`fused.batch_norm_math`).
    `fused.triton_bn.TritonBatchNorm` has the same four methods in Triton; the fused forward and
    backward below take either."""

    def moments(self, y: Tensor, stat_dtype) -> tuple:
        """Per-channel (mean, biased variance) in the statistics dtype."""
        return bnm.batch_stats(y)

    def normalize_(self, y: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        return bnm.normalize_(y, scale, shift)

    def grad_sums(self, grad_out: Tensor, y: Optional[Tensor], mean: Tensor) -> tuple:
        """(sum(g), sum(g * (y - mean))); the second None when y is None (eval mode)."""
        if y is None:
            return grad_out.sum(dim=(0, 2, 3), dtype=mean.dtype), None
        return bnm.grad_reductions(grad_out, y, mean)

    def input_grad(self, grad_out: Tensor, y: Optional[Tensor], a, b, c) -> Tensor:
        """a * g + b * y + c per channel (a * g when b is None), into y when given."""
        if y is None:
            return bnm.bn_input_grad_eval(grad_out, a)
        return bnm.bn_input_grad_(y, grad_out, a, b, c)


NATIVE_BATCH_NORM = NativeBatchNorm()


def forward_math(call: ConvBNCall, bn=NATIVE_BATCH_NORM):
    """Fused forward, no autograd: returns (out, mean, invstd, var_biased). `var_biased` is the
    batch variance (training) or None (eval). Updates the running statistics in place. `bn`: the
    batch-norm passes (`NativeBatchNorm` or a `fused.triton_bn.TritonBatchNorm`)."""
    x, weight, bias, bn_weight, bn_bias, running_mean, running_var, _, conv, norm = call
    y = native_conv.conv_forward(x, weight, bias, *conv)
    n = bnm.values_per_channel(y)
    sd = bnm.stat_dtype(y.dtype)
    if norm.training:
        mean, var = bn.moments(y, sd)
        invstd = bnm.train_invstd(var, n, norm.form, norm.eps)
        if running_mean is not None:
            bnm.update_running_stats(running_mean, running_var, mean, var, n, norm.momentum)
    else:
        mean = running_mean.to(sd, copy=True)
        invstd = bnm.eval_invstd(running_var.to(sd), norm.form, norm.eps)
        var = None
    scale, shift = bnm.scale_shift(mean, invstd, bn_weight, bn_bias)
    out = bn.normalize_(y, scale, shift)
    return out, mean, invstd, var


def saved_variance(var, norm: NormConfig):
    """What backward needs of the batch variance: only the tutorial form's training backward
    uses it."""
    return var if (norm.training and norm.form == "tutorial") else None


def backward_math(
    grad_out, saved, conv: ConvConfig, norm: NormConfig, needs_grad, bn=NATIVE_BATCH_NORM
):
    """Fused backward, no autograd: recomputes the conv (only when the maths needs it) and returns
    (grad_x, grad_weight, grad_bias, grad_bn_weight, grad_bn_bias), None where not needed.
    `saved`: (x, weight, bias, bn_weight, mean, invstd, var) as the forward saved them."""
    x, weight, bias, bn_weight, mean, invstd, var = saved
    need_x, need_w, need_b, need_bnw, need_bnb = needs_grad
    need_conv = need_x or need_w or need_b
    if not (need_conv or need_bnw or need_bnb):
        return None, None, None, None, None
    # Training needs y for the centred sums; eval only for bn_weight's gradient.
    y = None
    if norm.training or need_bnw:
        y = native_conv.conv_forward(x, weight, bias, *conv)
    sum_g = sum_gd = None
    if y is not None or need_bnb:
        sum_g, sum_gd = bn.grad_sums(grad_out, y, mean)
    n = bnm.values_per_channel(grad_out)
    grad_bnw = (sum_gd * invstd).to(bn_weight.dtype) if need_bnw else None
    grad_bnb = (
        sum_g.to(bn_weight.dtype if bn_weight is not None else grad_out.dtype) if need_bnb else None
    )
    grad_x = grad_w = grad_b = None
    if need_conv:
        a, b, c = bnm.bn_input_grad_coefficients(
            sum_g, sum_gd, mean, invstd, bn_weight, n, norm.training, norm.form, var, norm.eps
        )
        grad_y = bn.input_grad(grad_out, y, a, b, c)
        grad_x, grad_w, grad_b = native_conv.conv_backward(
            grad_y, x, weight, bias is not None, *conv, (need_x, need_w, need_b)
        )
    return grad_x, grad_w, grad_b, grad_bnw, grad_bnb


class MemorySavingConvBNFunction(torch.autograd.Function):
    """autograd.Function behind `memory_saving_conv_bn` and `fused.triton_conv_bn`.
    `apply(call, bn, *differentiable)`: the validated call, the batch-norm passes, and the call's
    differentiable tensors again so that autograd records them."""

    @staticmethod
    def forward(ctx, call: ConvBNCall, bn, *differentiable):
        out, mean, invstd, var = forward_math(call, bn)
        ctx.save_for_backward(
            call.x,
            call.weight,
            call.bias,
            call.bn_weight,
            mean,
            invstd,
            saved_variance(var, call.norm),
        )
        ctx.conv, ctx.norm, ctx.bn = call.conv, call.norm, bn
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        needs_grad = ctx.needs_input_grad[2:7]
        grads = backward_math(grad_out, ctx.saved_tensors, ctx.conv, ctx.norm, needs_grad, ctx.bn)
        return (None, None, *grads)


def differentiable(call: ConvBNCall) -> tuple:
    """The tensors of `call` a gradient flows to, in the contract's order."""
    return call[:5]


def memory_saving_kernel(call: ConvBNCall, bn=NATIVE_BATCH_NORM) -> Tensor:
    """The kernel behind `memory_saving_conv_bn` (and, with Triton passes, `triton_conv_bn`)."""
    return MemorySavingConvBNFunction.apply(call, bn, *differentiable(call))


memory_saving_conv_bn = conv_bn_entry(
    memory_saving_kernel,
    name="memory_saving_conv_bn",
    under_compile=traceable_kernel,
    doc="""Memory-saving `batch_norm(conv2d(x, weight, bias, ...), ...)`.

    `memory_saving_conv_bn(x, weight, bias=None, bn_weight=None, bn_bias=None, running_mean=None,
    running_var=None, *, stride=1, padding=0, dilation=1, groups=1, training=True, momentum=0.1,
    eps=1e-3, form="standard", num_batches_tracked=None) -> Tensor`

    Arguments mirror `F.conv2d` + `F.batch_norm`. `form` is "standard" (nn.BatchNorm2d) or
    "tutorial" (unbiased variance, eps outside the square root). In training, running stats (if
    given) are updated in place with the unbiased batch variance; `num_batches_tracked`, if given,
    is incremented in place and, with `momentum=None`, drives a cumulative average. Eval mode
    (training=False) normalises with the running stats and changes nothing. Every argument is
    validated (ValueError) before anything is modified. Saves only x, weight and C-sized tensors
    for backward; the backward recomputes the convolution and is once-differentiable. Under
    `torch.compile` the same function in plain ops (`fused.traceable`), which the compiler's
    partitioner sees through.
    """,
)
