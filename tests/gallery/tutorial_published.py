"""The PUBLISHED tutorial's fused Conv2d+BatchNorm arithmetic, as a Variant, unfixed.

Re-implemented from the maths of /work/shared/seeds/tutorial_custom_function_conv_bn.rst
("Fusing Convolution and Batch Norm using Custom Function"): the same forward (sum, unbiased var,
sqrt_var kept on ctx, out = (X - sum/N) / (sqrt_var + eps)), the same batch-norm backward formula
(d_denom = -sum((X - mean) g) / (sqrt_var + eps)^2, d_var = d_denom / (2 sqrt_var), the var term
written as (X N - sum) d_var 2 / ((N - 1) N), the mean term -sum(g / (sqrt_var + eps)) / N), the
same conv backward (grad_weight from a conv of the transposed input with the transposed gradient,
grad_X from conv_transpose2d), the same recompute of the conv in backward, and the same omissions:
no check for a single value per channel, no guard for a zero-variance channel, and a backward that
is not marked once-differentiable although it treats sum and sqrt_var as constants.

What the suite must find, derived from the maths (see PUBLISHED_EXPECTED):
* gradients: a channel with zero batch variance (a zeroed weight slice) has sqrt_var = 0, so
  d_var = d_denom / (2 * 0) with d_denom = -0 / eps^2 = 0 gives 0 / 0 = NaN, and the NaN spreads
  to grad_X and grad_weight through the conv backward. The finite limit is (g - mean(g)) / eps.
  determinism, which checks both of its calls' gradients against the oracle, sees the same NaN,
  and so does programs, which runs backward inside the programs that call a layer.
* bad_inputs: one value per channel gives var with N - 1 = 0 degrees of freedom = NaN and a NaN
  output instead of an error.
* second_order: the backward is built from differentiable torch ops on the saved X (the
  recomputed conv tracks it) but uses ctx.sum and ctx.sqrt_var as constants, so a double backward
  runs and is silently wrong; the suite's second_order property runs gradgradcheck on any variant
  whose double backward does not raise.
Everything else holds: the forward and first derivatives are right on well-spread channels
(forward, gradcheck, finite_differences, shift_invariance, no_mutation, at every size), and only X
and the weight are saved
(saved_memory, it claims memory_saving like the tutorial does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fused.variant import Variant


def _unsqueeze_all(t):
    # The channel vector broadcast over (N, C, H, W).
    return t[None, :, None, None]


def convolution_backward(grad_out, X, weight):
    # d/dweight: correlate the input with the output gradient, batch and channels swapped.
    grad_weight = F.conv2d(X.transpose(0, 1), grad_out.transpose(0, 1)).transpose(0, 1)
    grad_X = F.conv_transpose2d(grad_out, weight)
    return grad_X, grad_weight


def batch_norm_backward(grad_out, X, sum, sqrt_var, N, eps):
    # out = (X - mean) / (sqrt(var_unbiased) + eps); chain rule through (1) the variance,
    # (2) the mean and (3) the numerator, rewritten with few NCHW buffers.
    tmp = -((X - _unsqueeze_all(sum) / N) * grad_out).sum(dim=(0, 2, 3))
    d_denom = tmp / (sqrt_var + eps) ** 2
    d_var = d_denom / (2 * sqrt_var)  # 0 / 0 = NaN where sqrt_var == 0
    d_mean_dx = grad_out / _unsqueeze_all(sqrt_var + eps)
    d_mean_dx = _unsqueeze_all(-d_mean_dx.sum(dim=(0, 2, 3)) / N)
    # (1) var_unbiased = sum((X - sum / N)^2) / (N - 1)
    grad_input = X * _unsqueeze_all(d_var * N)
    grad_input += _unsqueeze_all(-d_var * sum)
    grad_input *= 2 / ((N - 1) * N)
    # (2) the mean
    grad_input += d_mean_dx
    # (3) the numerator: + grad_out / (sqrt_var + eps), without an extra buffer
    grad_input *= _unsqueeze_all(sqrt_var + eps)
    grad_input += grad_out
    grad_input /= _unsqueeze_all(sqrt_var + eps)
    return grad_input


class PublishedFusedConvBN2DFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, conv_weight, eps=1e-3):
        assert X.ndim == 4  # N, C, H, W
        ctx.save_for_backward(X, conv_weight)  # the only buffers kept for backward
        X = F.conv2d(X, conv_weight)
        sum = X.sum(dim=(0, 2, 3))
        var = X.var(unbiased=True, dim=(0, 2, 3))
        N = X.numel() / X.size(1)
        sqrt_var = torch.sqrt(var)
        ctx.eps = eps
        ctx.sum = sum
        ctx.N = N
        ctx.sqrt_var = sqrt_var
        mean = sum / N
        denom = sqrt_var + eps
        out = X - _unsqueeze_all(mean)
        out /= _unsqueeze_all(denom)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # not @once_differentiable, as published
        X, conv_weight = ctx.saved_tensors
        X_conv_out = F.conv2d(X, conv_weight)  # recompute the conv
        grad_out = batch_norm_backward(grad_out, X_conv_out, ctx.sum, ctx.sqrt_var, ctx.N, ctx.eps)
        grad_X, grad_weight = convolution_backward(grad_out, X, conv_weight)
        return grad_X, grad_weight, None, None, None, None, None


def published_tutorial_fn(
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
    """The Variant fn: the tutorial hard-codes every optional feature away (the Variant wrapper
    rejects them before this is called)."""
    return PublishedFusedConvBN2DFunction.apply(x, weight, eps)


PUBLISHED = Variant(
    "tutorial_published",
    published_tutorial_fn,
    form="tutorial",
    supports=frozenset(),
    memory_saving=True,
)
PUBLISHED_EXPECTED = frozenset(
    {"gradients", "determinism", "programs", "bad_inputs", "second_order"}
)
