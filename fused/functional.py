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
from fused.arguments import ConvConfig, check_conv_bn_arguments
from fused.traceable import compile_aware

__all__ = ["memory_saving_conv_bn", "MemorySavingConvBNFunction", "forward_math", "backward_math"]


def running_update_factor(momentum: Optional[float], num_batches_tracked: Optional[Tensor]):
    """Increment num_batches_tracked (if given) and return the exponential-average factor, like
    nn.BatchNorm2d: `momentum`, or 1/num_batches_tracked when momentum is None."""
    if num_batches_tracked is not None:
        num_batches_tracked.add_(1)
    if momentum is None:
        return 1.0 / float(num_batches_tracked.item())
    return float(momentum)


def track_batch(
    running_mean, running_var, num_batches_tracked, mean, var_biased, n: int, momentum
) -> None:
    """Training-mode bookkeeping: increment num_batches_tracked and blend the batch statistics
    into the running ones (in place), like nn.BatchNorm2d. No-op when nothing is tracked."""
    if running_mean is None and num_batches_tracked is None:
        return
    factor = running_update_factor(momentum, num_batches_tracked)
    bnm.update_running_stats(running_mean, running_var, mean, var_biased, n, factor)


def forward_math(
    x,
    weight,
    bias,
    bn_weight,
    bn_bias,
    running_mean,
    running_var,
    num_batches_tracked,
    cfg: ConvConfig,
    training: bool,
    momentum,
    eps: float,
    form: str,
):
    """Fused forward, no autograd: returns (out, mean, invstd, var_biased). `var_biased` is the
    batch variance (training) or None (eval). Updates running stats/num_batches_tracked in place."""
    y = native_conv.conv_forward(x, weight, bias, cfg.stride, cfg.padding, cfg.dilation, cfg.groups)
    n = bnm.values_per_channel(y)
    if training:
        mean, var = bnm.batch_stats(y)
        invstd = bnm.train_invstd(var, n, form, eps)
        track_batch(running_mean, running_var, num_batches_tracked, mean, var, n, momentum)
    else:
        sd = bnm.stat_dtype(y.dtype)
        mean = running_mean.to(sd, copy=True)
        invstd = bnm.eval_invstd(running_var.to(sd), form, eps)
        var = None
    scale, shift = bnm.scale_shift(mean, invstd, bn_weight, bn_bias)
    out = bnm.normalize_(y, scale, shift)
    return out, mean, invstd, var


def backward_math(
    grad_out,
    x,
    weight,
    bias,
    bn_weight,
    mean,
    invstd,
    var,
    cfg: ConvConfig,
    training: bool,
    eps: float,
    form: str,
    needs_grad,
):
    """Fused backward, no autograd: recomputes the conv (only when the maths needs it) and returns
    (grad_x, grad_weight, grad_bias, grad_bn_weight, grad_bn_bias), None where not needed."""
    need_x, need_w, need_b, need_bnw, need_bnb = needs_grad
    need_conv = need_x or need_w or need_b
    if not (need_conv or need_bnw or need_bnb):
        return None, None, None, None, None
    y = None
    sum_g = sum_gd = None
    if training or need_bnw:
        y = native_conv.conv_forward(
            x, weight, bias, cfg.stride, cfg.padding, cfg.dilation, cfg.groups
        )
        sum_g, sum_gd = bnm.grad_reductions(grad_out, y, mean)
    elif need_bnb:
        sum_g = grad_out.sum(dim=(0, 2, 3), dtype=mean.dtype)
    n = grad_out.shape[0] * grad_out.shape[2] * grad_out.shape[3]
    grad_bnw = (sum_gd * invstd).to(bn_weight.dtype) if need_bnw else None
    grad_bnb = (
        sum_g.to(bn_weight.dtype if bn_weight is not None else grad_out.dtype) if need_bnb else None
    )
    grad_x = grad_w = grad_b = None
    if need_conv:
        a, b, c = bnm.bn_input_grad_coefficients(
            sum_g, sum_gd, mean, invstd, bn_weight, n, training, form, var, eps
        )
        if y is not None:
            grad_y = bnm.bn_input_grad_(y, grad_out, a, b, c)
        else:
            grad_y = bnm.bn_input_grad_eval(grad_out, a)
        grad_x, grad_w, grad_b = native_conv.conv_backward(
            grad_y,
            x,
            weight,
            bias is not None,
            cfg.stride,
            cfg.padding,
            cfg.dilation,
            cfg.groups,
            (need_x, need_w, need_b),
        )
    return grad_x, grad_w, grad_b, grad_bnw, grad_bnb


class MemorySavingConvBNFunction(torch.autograd.Function):
    """autograd.Function behind `memory_saving_conv_bn` (arguments already validated)."""

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
        num_batches_tracked,
        cfg,
        training,
        momentum,
        eps,
        form,
    ):
        out, mean, invstd, var = forward_math(
            x,
            weight,
            bias,
            bn_weight,
            bn_bias,
            running_mean,
            running_var,
            num_batches_tracked,
            cfg,
            training,
            momentum,
            eps,
            form,
        )
        # The variance is only needed by the tutorial form's training backward.
        keep_var = var if (training and form == "tutorial") else None
        ctx.save_for_backward(x, weight, bias, bn_weight, mean, invstd, keep_var)
        ctx.cfg, ctx.training, ctx.eps, ctx.form = cfg, training, eps, form
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight, bias, bn_weight, mean, invstd, var = ctx.saved_tensors
        grads = backward_math(
            grad_out,
            x,
            weight,
            bias,
            bn_weight,
            mean,
            invstd,
            var,
            ctx.cfg,
            ctx.training,
            ctx.eps,
            ctx.form,
            ctx.needs_input_grad[:5],
        )
        return grads + (None,) * 8


@compile_aware
def memory_saving_conv_bn(
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
    momentum: Optional[float] = 0.1,
    eps: float = 1e-3,
    form: str = "standard",
    num_batches_tracked: Optional[Tensor] = None,
) -> Tensor:
    """Memory-saving `batch_norm(conv2d(x, weight, bias, ...), ...)`.

    Arguments mirror `F.conv2d` + `F.batch_norm`. `form` is "standard" (nn.BatchNorm2d) or
    "tutorial" (unbiased variance, eps outside the square root). In training, running stats (if
    given) are updated in place with the unbiased batch variance; `num_batches_tracked`, if given,
    is incremented in place and, with `momentum=None`, drives a cumulative average. Eval mode
    (training=False) normalises with the running stats and changes nothing. Every argument is
    validated (ValueError) before anything is modified. Saves only x, weight and C-sized tensors
    for backward; the backward recomputes the convolution and is once-differentiable. Under
    `torch.compile` the same function in plain ops (`fused.traceable`), which the compiler's
    partitioner sees through.
    """
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
        num_batches_tracked=num_batches_tracked,
    )
    return MemorySavingConvBNFunction.apply(
        x,
        weight,
        bias,
        bn_weight,
        bn_bias,
        running_mean,
        running_var,
        num_batches_tracked,
        cfg,
        bool(training),
        momentum,
        float(eps),
        form,
    )
