"""Conv2d forward and backward through PyTorch's native kernels, for the kernels in `fused/` that
recompute the convolution in backward (`aten.convolution`, `aten.convolution_backward`: one call
each, output in the convolution's natural memory format)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from fused.dtypes import is_half

__all__ = ["conv_forward", "conv_backward", "cpu_half"]


def cpu_half(x: Tensor) -> bool:
    # PyTorch 2.13's CPU half-precision convolutions are wrong on some legal geometries, found by
    # `pytest verify`: float16 forward segfaults (width 1, 1-wide kernel, stride 2, padding 1,
    # dilation 2), and bfloat16 channels_last weight gradients read uninitialised memory (NaN or
    # garbage where a kernel tap sees only padding, e.g. grouped 3x3, stride (1, 2), padding
    # (0, 2), width 1). Neither is faster than float32 on CPU, so CPU half convs run in float32 and
    # round once to the input dtype.
    return is_half(x.dtype) and x.device.type == "cpu"


def conv_forward(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> Tensor:
    """Conv2d forward through the native kernel (output in the conv's natural memory format)."""
    if cpu_half(x):
        upcast = conv_forward(
            x.float(),
            weight.float(),
            None if bias is None else bias.float(),
            stride,
            padding,
            dilation,
            groups,
        )
        return upcast.to(x.dtype)
    return torch.ops.aten.convolution(
        x, weight, bias, list(stride), list(padding), list(dilation), False, [0, 0], groups
    )


def conv_backward(
    grad_y: Tensor,
    x: Tensor,
    weight: Tensor,
    has_bias: bool,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    output_mask: Sequence[bool],
):
    """(grad_x, grad_weight, grad_bias) of Conv2d in one native call; None where not asked for."""
    if not any(output_mask):
        return None, None, None
    if cpu_half(x):
        grads = conv_backward(
            grad_y.float(),
            x.float(),
            weight.float(),
            has_bias,
            stride,
            padding,
            dilation,
            groups,
            output_mask,
        )
        return tuple(None if g is None else g.to(x.dtype) for g in grads)
    bias_sizes = [weight.shape[0]] if has_bias else None
    grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
        grad_y,
        x,
        weight,
        bias_sizes,
        list(stride),
        list(padding),
        list(dilation),
        False,
        [0, 0],
        groups,
        [bool(m) for m in output_mask],
    )
    return (
        grad_x if output_mask[0] else None,
        grad_w if output_mask[1] else None,
        grad_b if output_mask[2] else None,
    )
