"""Math shared by the memory-saving fused Conv2d+BatchNorm kernels (`fused.functional` and
`fused.custom_op`).

Everything here is a plain function of tensors; none of it touches autograd. The design rules:

* Statistics (mean, inverse std, per-channel reductions) are C-sized and kept in the *statistics
  dtype*: float32 for float16/bfloat16 inputs (as PyTorch's own batch norm does), else the input's.
* NCHW-sized work goes through PyTorch's native kernels (`aten.convolution`,
  `aten.convolution_backward`, `aten.batch_norm_update_stats`, `aten.native_batch_norm_backward`) or
  a single in-place `addcmul`, so that a call allocates as few NCHW buffers as possible: on CPU a
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

from typing import Optional, Sequence

import torch
from torch import Tensor

HALF_DTYPES = (torch.float16, torch.bfloat16)


def stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics are computed and stored in for an input of `dtype`."""
    return torch.float32 if dtype in HALF_DTYPES else dtype


def per_channel(t: Tensor) -> Tensor:
    """View a C-sized tensor so that it broadcasts against (N, C, H, W)."""
    return t.view(-1, 1, 1)


# ----------------------------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------------------------

def _cpu_half(x: Tensor) -> bool:
    # PyTorch 2.13's CPU half-precision convolutions are wrong on some legal geometries, found by
    # `pytest verify`: float16 forward segfaults (width 1, 1-wide kernel, stride 2, padding 1,
    # dilation 2), and bfloat16 channels_last weight gradients read uninitialised memory (NaN or
    # garbage where a kernel tap sees only padding, e.g. grouped 3x3, stride (1, 2), padding
    # (0, 2), width 1). Neither is faster than float32 on CPU, so CPU half convs run in float32 and
    # round once to the input dtype.
    return x.dtype in HALF_DTYPES and x.device.type == "cpu"


def conv_forward(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Sequence[int],
                 padding: Sequence[int], dilation: Sequence[int], groups: int) -> Tensor:
    """Conv2d forward through the native kernel (output in the conv's natural memory format)."""
    if _cpu_half(x):
        upcast = conv_forward(x.float(), weight.float(), None if bias is None else bias.float(),
                              stride, padding, dilation, groups)
        return upcast.to(x.dtype)
    return torch.ops.aten.convolution(x, weight, bias, list(stride), list(padding),
                                      list(dilation), False, [0, 0], groups)


def conv_backward(grad_y: Tensor, x: Tensor, weight: Tensor, has_bias: bool,
                  stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                  groups: int, output_mask: Sequence[bool]):
    """(grad_x, grad_weight, grad_bias) of Conv2d in one native call; None where not asked for."""
    if not any(output_mask):
        return None, None, None
    if _cpu_half(x):
        grads = conv_backward(grad_y.float(), x.float(), weight.float(), has_bias, stride, padding,
                              dilation, groups, output_mask)
        return tuple(None if g is None else g.to(x.dtype) for g in grads)
    bias_sizes = [weight.shape[0]] if has_bias else None
    grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
        grad_y, x, weight, bias_sizes, list(stride), list(padding), list(dilation), False,
        [0, 0], groups, [bool(m) for m in output_mask])
    return (grad_x if output_mask[0] else None, grad_w if output_mask[1] else None,
            grad_b if output_mask[2] else None)


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


def update_running_stats(running_mean: Optional[Tensor], running_var: Optional[Tensor],
                         mean: Tensor, var_biased: Tensor, n: int, factor: float) -> None:
    """new = (1 - factor) * old + factor * batch_stat, in place, unbiased variance; the blend is
    done in the statistics dtype and written back in the buffer's dtype."""
    if running_mean is not None:
        new = running_mean.to(mean.dtype) * (1.0 - factor) + mean * factor
        running_mean.copy_(new)
    if running_var is not None:
        new = running_var.to(var_biased.dtype) * (1.0 - factor) + var_biased * (factor * n / (n - 1))
        running_var.copy_(new)


def scale_shift(mean: Tensor, invstd: Tensor, bn_weight: Optional[Tensor],
                bn_bias: Optional[Tensor]):
    """Per-channel (scale, shift) with out = y * scale + shift."""
    scale = invstd if bn_weight is None else invstd * bn_weight.to(invstd.dtype)
    shift = -mean * scale
    if bn_bias is not None:
        shift = shift + bn_bias.to(invstd.dtype)
    return scale, shift


def normalize_(y: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """y <- y * scale + shift, in place (y is a buffer the caller owns), one pass."""
    return torch.addcmul(per_channel(shift), y, per_channel(scale), out=y)


# ----------------------------------------------------------------------------------------------
# Batch-norm backward
# ----------------------------------------------------------------------------------------------

def grad_reductions(grad_out: Tensor, y: Tensor, mean: Tensor):
    """Per-channel (sum(g), sum(g * (y - mean))) in the statistics dtype, one native pass that
    allocates nothing NCHW-sized."""
    ones = torch.ones_like(mean)
    _, sum_gd, sum_g = torch.ops.aten.native_batch_norm_backward(
        grad_out, y, None, None, None, mean, ones, True, 0.0, [False, True, True])
    return sum_g, sum_gd


def tutorial_variance_factor(var_biased: Tensor, n: int, eps: float) -> Tensor:
    """(s + eps) * n / ((n - 1) * s) with s = sqrt(unbiased var), and 0 where s == 0: rescales
    sum(g*d) so the standard elementwise formula gives the tutorial form's gradient."""
    s = torch.sqrt(var_biased * (n / (n - 1)))
    factor = (s + eps) * n / ((n - 1) * s)
    return torch.where(s > 0, factor, torch.zeros_like(factor))


def bn_input_grad_coefficients(sum_g: Optional[Tensor], sum_gd: Optional[Tensor], mean: Tensor,
                               invstd: Tensor, bn_weight: Optional[Tensor], n: int,
                               training: bool, form: str, var_biased: Optional[Tensor],
                               eps: float):
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


def bn_input_grad_(y: Tensor, grad_out: Tensor, a: Tensor, b: Optional[Tensor],
                   c: Optional[Tensor]) -> Tensor:
    """grad_y = a * g + b * y + c written into the recomputed conv output `y` (two in-place
    passes, no NCHW allocation). Returns y."""
    if b is None:
        return torch.mul(grad_out, per_channel(a), out=y)
    torch.addcmul(per_channel(c), y, per_channel(b), out=y)
    return y.addcmul_(grad_out, per_channel(a))


def bn_input_grad_eval(grad_out: Tensor, a: Tensor) -> Tensor:
    """Eval-mode grad_y = a * g when no recomputed conv output is at hand (allocates)."""
    out = torch.empty_like(grad_out)
    return torch.mul(grad_out, per_channel(a), out=out)
