"""The seed tutorial's fused Conv2d + BatchNorm2d, as one `torch.autograd.Function`.

Same algorithm and structure as the tutorial: forward = conv, batch statistics, normalise, saving
only the conv input and weight (plus C-sized statistics); backward = recompute the conv, batch-norm
backward, conv backward. Hard-coded like the tutorial: stride 1, no padding, dilation 1, groups 1,
no conv bias, no affine, no running statistics, and the tutorial's batch-norm form
`out = (y - mean) / (sqrt(unbiased var) + eps)`.

Fixed relative to the published version:
* a channel with zero batch variance gets the finite gradient `(g - mean(g)) / eps` instead of NaN
  (the variance term vanishes there: every d = y - mean is 0);
* fewer than two values per channel raises ValueError (the unbiased variance is undefined);
* wrong-rank or mismatched inputs raise ValueError instead of failing inside the conv;
* the backward is explicitly once-differentiable and honours `needs_input_grad`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from fused.arguments import ConvBNCall, check_conv_bn_arguments
from fused.entry import conv_bn_entry

__all__ = [
    "FusedConvBN2DFunction",
    "tutorial_variant_fn",
    "batch_norm_backward",
    "convolution_backward",
]

_REDUCE_DIMS = (0, 2, 3)


def _per_channel(t):
    return t[None, :, None, None]


def _check_inputs(X, conv_weight, eps):
    # The tutorial's signature is the contract's `Variant` signature with every option at its
    # default, so the kernels' shared validator applies as it is.
    check_conv_bn_arguments(X, conv_weight, eps=eps, form="tutorial")


def convolution_backward(grad_out, X, conv_weight, needs_grad=(True, True)):
    """(grad_X, grad_weight) of `F.conv2d(X, conv_weight)` (stride 1, no padding)."""
    if not any(needs_grad):
        return None, None
    grad_X, grad_weight, _ = torch.ops.aten.convolution_backward(
        grad_out,
        X,
        conv_weight,
        None,
        [1, 1],
        [0, 0],
        [1, 1],
        False,
        [0, 0],
        1,
        [bool(needs_grad[0]), bool(needs_grad[1]), False],
    )
    return grad_X, grad_weight


def batch_norm_backward(grad_out, Y, mean, sqrt_var, N, eps):
    """Gradient of `(Y - mean) / (sqrt_var + eps)` with respect to Y, where mean and sqrt_var are
    the batch mean and sqrt of the unbiased batch variance of Y over (N, H, W).

    With d = Y - mean and denom = sqrt_var + eps:
        grad_Y = (g - mean(g) - d * sum(g * d) / ((N - 1) * sqrt_var * denom)) / denom
    The last term (through the variance) is 0 for a channel whose sqrt_var is 0, since d is 0 there.
    Y is consumed: it is overwritten with the result (it is a recomputed temporary).
    """
    denom = sqrt_var + eps
    d = Y.sub_(_per_channel(mean))
    sum_g = grad_out.sum(dim=_REDUCE_DIMS)
    sum_gd = (grad_out * d).sum(dim=_REDUCE_DIMS)
    has_var = sqrt_var > 0
    safe_sqrt_var = torch.where(has_var, sqrt_var, torch.ones_like(sqrt_var))
    var_coef = torch.where(
        has_var, sum_gd / ((N - 1) * safe_sqrt_var * denom), torch.zeros_like(sum_gd)
    )
    # grad = (g - sum_g / N - d * var_coef) / denom, built in the buffer of d.
    grad = d.mul_(_per_channel(-var_coef))
    grad.add_(grad_out).sub_(_per_channel(sum_g / N))
    grad.div_(_per_channel(denom))
    return grad


class FusedConvBN2DFunction(torch.autograd.Function):
    """`apply(X, conv_weight, eps=1e-3)`: tutorial-form batch norm of `F.conv2d(X, conv_weight)`.

    Saves X, conv_weight and the per-channel mean and sqrt(unbiased var); recomputes the conv in
    backward.
    """

    @staticmethod
    def forward(ctx, X, conv_weight, eps=1e-3):
        _check_inputs(X, conv_weight, eps)
        # (1) conv
        Y = F.conv2d(X, conv_weight)
        # (2) batch statistics (C-sized)
        N = Y.numel() // Y.size(1)
        mean = Y.mean(dim=_REDUCE_DIMS)
        sqrt_var = torch.sqrt(Y.var(dim=_REDUCE_DIMS, unbiased=True))
        # Only the conv input and weight are saved NCHW/weight-sized; the rest is per channel.
        ctx.save_for_backward(X, conv_weight, mean, sqrt_var)
        ctx.N, ctx.eps = N, eps
        # (3) normalise, in place in the conv output (no second NCHW buffer)
        out = Y.sub_(_per_channel(mean))
        out.div_(_per_channel(sqrt_var + eps))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        X, conv_weight, mean, sqrt_var = ctx.saved_tensors
        needs_grad = ctx.needs_input_grad[:2]
        if not any(needs_grad):
            return None, None, None
        # (4) recompute the conv
        Y = F.conv2d(X, conv_weight)
        # (5) batch-norm backward
        grad_Y = batch_norm_backward(grad_out, Y, mean, sqrt_var, ctx.N, ctx.eps)
        # (6) conv backward
        grad_X, grad_weight = convolution_backward(grad_Y, X, conv_weight, needs_grad)
        return grad_X, grad_weight, None


def _tutorial_kernel(call: ConvBNCall):
    return FusedConvBN2DFunction.apply(call.x, call.weight, call.norm.eps)


tutorial_variant_fn = conv_bn_entry(
    _tutorial_kernel,
    name="tutorial_variant_fn",
    form="tutorial",
    forms=("tutorial",),
    supports=frozenset(),
    doc="""`FusedConvBN2DFunction` with the `Variant` fn signature (form "tutorial", no optional
    features). Any non-default feature raises `UnsupportedFeatureError`.""",
)
