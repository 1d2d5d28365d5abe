"""The batch-norm half of the memory-saving fused Conv2d+BatchNorm kernels (`fused.memory_saving`,
`fused.custom_op`, and the per-channel coefficients of `fused.triton_conv_bn`); the convolution
half is `fused.native_conv`.

Everything here is a plain function of tensors; none of it touches autograd. The design rules:

* Statistics (mean, inverse std, per-channel reductions) are C-sized and kept in the *statistics
  dtype*: float32 for float16/bfloat16 inputs (as PyTorch's own batch norm does), else the input's.
* NCHW-sized work goes through PyTorch's native kernels (`aten.batch_norm_update_stats`,
  `aten.native_batch_norm_backward`) or in-place elementwise passes over a buffer the caller owns,
  so that a call allocates as few NCHW buffers as possible: on CPU a
  fresh large buffer costs page faults that are comparable to a full elementwise pass.
* Both batch-norm forms share one elementwise formula. With d = y - mean and n values per channel,
  the input gradient of training-mode batch norm is
      grad_y = A * g - A * k * d - A * mean(g),     A = bn_weight * invstd,
  where k = invstd**2 * sum(g * d) / n for the "standard" form and
        k = invstd**2 * sum(g * d) * (s + eps) / ((n - 1) * s)   (0 where s == 0)
  for the "tutorial" form (invstd = 1 / (s + eps), s = sqrt(unbiased var)). Eval mode has k = 0
  and no mean(g) term.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from fused.dtypes import is_half, stat_dtype


def per_channel(t: Tensor) -> Tensor:
    """View a C-sized tensor so that it broadcasts against (N, C, H, W)."""
    return t.view(-1, 1, 1)


# ----------------------------------------------------------------------------------------------
# Batch-norm forward
# ----------------------------------------------------------------------------------------------


def values_per_channel(y: Tensor) -> int:
    return y.shape[0] * y.shape[2] * y.shape[3]


def batch_stats(y: Tensor):
    """Per-channel (mean, biased variance) of `y` in the statistics dtype (one native pass)."""
    sd = stat_dtype(y.dtype)
    if y.dtype != sd:
        y = y.to(sd)
    mean, var = torch.batch_norm_update_stats(y, None, None, 0.0)
    return mean, var


def train_invstd(var_biased: Tensor, n: int, form: str, eps: float) -> Tensor:
    """1/denominator for training mode from the biased batch variance."""
    if form == "standard":
        return torch.rsqrt(var_biased + eps)
    return torch.reciprocal(torch.sqrt(var_biased * (n / (n - 1))) + eps)


def eval_invstd(running_var: Tensor, form: str, eps: float) -> Tensor:
    """1/denominator for eval mode from the running (unbiased) variance."""
    if form == "standard":
        return torch.rsqrt(running_var + eps)
    return torch.reciprocal(torch.sqrt(running_var) + eps)


def update_running_stats(
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    mean: Tensor,
    var_biased: Tensor,
    n: int,
    factor: float,
) -> None:
    """new = (1 - factor) * old + factor * batch_stat, in place, unbiased variance; the blend is
    done in the statistics dtype and written back in the buffer's dtype."""
    if running_mean is not None:
        new = running_mean.to(mean.dtype) * (1.0 - factor) + mean * factor
        running_mean.copy_(new)
    if running_var is not None:
        new = running_var.to(var_biased.dtype) * (1.0 - factor) + var_biased * (
            factor * n / (n - 1)
        )
        running_var.copy_(new)


def scale_shift(
    mean: Tensor, invstd: Tensor, bn_weight: Optional[Tensor], bn_bias: Optional[Tensor]
):
    """Per-channel (scale, shift) with out = y * scale + shift."""
    scale = invstd if bn_weight is None else invstd * bn_weight.to(invstd.dtype)
    shift = -mean * scale
    if bn_bias is not None:
        shift = shift + bn_bias.to(invstd.dtype)
    return scale, shift


def _single_rounding(y: Tensor) -> bool:
    # PyTorch 2.13's CPU `addcmul` with a broadcast per-channel first operand takes a slow
    # TensorIterator path: measured 3-6x slower than an in-place `mul_` followed by `add_`
    # (at one thread: 15.9 ms vs 4.2 ms on a (256, 64, 24, 24) float32 tensor, 2.5 ms vs 0.7 ms on
    # (32, 64, 28, 28)), so float32/float64 take the two fast passes and their one extra rounding
    # (a unit roundoff of the product, far inside every error bound). Half types keep one op:
    # there an extra rounding is 2**-11 or 2**-8 of the value, and CPU half is not a speed path.
    return is_half(y.dtype)


def normalize_(y: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """y <- y * scale + shift, in place (y is a buffer the caller owns)."""
    if _single_rounding(y):
        return torch.addcmul(per_channel(shift), y, per_channel(scale), out=y)
    return y.mul_(per_channel(scale)).add_(per_channel(shift))


# ----------------------------------------------------------------------------------------------
# Batch-norm backward
# ----------------------------------------------------------------------------------------------


def grad_reductions(grad_out: Tensor, y: Tensor, mean: Tensor):
    """Per-channel (sum(g), sum(g * (y - mean))) in the statistics dtype, one native pass that
    allocates nothing NCHW-sized."""
    ones = torch.ones_like(mean)
    _, sum_gd, sum_g = torch.ops.aten.native_batch_norm_backward(
        grad_out, y, None, None, None, mean, ones, True, 0.0, [False, True, True]
    )
    return sum_g, sum_gd


def tutorial_variance_factor(var_biased: Tensor, n: int, eps: float) -> Tensor:
    """(s + eps) * n / ((n - 1) * s) with s = sqrt(unbiased var), and 0 where s == 0: rescales
    sum(g*d) so the standard elementwise formula gives the tutorial form's gradient."""
    s = torch.sqrt(var_biased * (n / (n - 1)))
    factor = (s + eps) * n / ((n - 1) * s)
    return torch.where(s > 0, factor, torch.zeros_like(factor))


def bn_input_grad_coefficients(
    sum_g: Optional[Tensor],
    sum_gd: Optional[Tensor],
    mean: Tensor,
    invstd: Tensor,
    bn_weight: Optional[Tensor],
    n: int,
    training: bool,
    form: str,
    var_biased: Optional[Tensor],
    eps: float,
):
    """(a, b, c) with grad_y = a * g + b * y + c, all per channel."""
    a = invstd if bn_weight is None else invstd * bn_weight.to(invstd.dtype)
    if not training:
        return a, None, None
    proj = sum_gd / n
    if form == "tutorial":
        proj = proj * tutorial_variance_factor(var_biased, n, eps)
    k = invstd * invstd * proj
    b = -a * k
    c = a * (k * mean - sum_g / n)
    return a, b, c


def bn_input_grad_(
    y: Tensor, grad_out: Tensor, a: Tensor, b: Optional[Tensor], c: Optional[Tensor]
) -> Tensor:
    """grad_y = a * g + b * y + c written into the recomputed conv output `y` (in-place passes,
    no NCHW allocation). Returns y."""
    if b is None:
        return torch.mul(grad_out, per_channel(a), out=y)
    if _single_rounding(y):
        torch.addcmul(per_channel(c), y, per_channel(b), out=y)
    else:
        y.mul_(per_channel(b)).add_(per_channel(c))
    return y.addcmul_(grad_out, per_channel(a))


def bn_input_grad_eval(grad_out: Tensor, a: Tensor) -> Tensor:
    """Eval-mode grad_y = a * g when no recomputed conv output is at hand (allocates)."""
    out = torch.empty_like(grad_out)
    return torch.mul(grad_out, per_channel(a), out=out)
