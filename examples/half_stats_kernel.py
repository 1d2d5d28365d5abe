"""A subtly wrong kernel, for docs/running.md: it accumulates the batch statistics in bfloat16 to
save bandwidth. On ordinary random inputs its outputs look right to two or three digits; the suite's
dtype-derived bounds catch it.

    pytest verify --variant examples/half_stats_kernel.py:VARIANT -x
"""

import torch
import torch.nn.functional as F

from fused import Variant


def conv_bn(
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
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    if y.numel() // y.shape[1] < 2:
        raise ValueError(
            f"batch norm needs 2 values per channel, got output shape {tuple(y.shape)}"
        )
    low = y.to(torch.bfloat16)  # the bug: statistics from a bfloat16 copy
    mean = low.mean(dim=(0, 2, 3)).to(y.dtype)
    var = low.var(dim=(0, 2, 3), unbiased=False).to(y.dtype)
    out = (y - mean[:, None, None]) / torch.sqrt(var[:, None, None] + eps)
    if bn_weight is not None:
        out = out * bn_weight[:, None, None] + bn_bias[:, None, None]
    return out


VARIANT = Variant("half_stats", conv_bn, form="standard", supports={"affine"})
