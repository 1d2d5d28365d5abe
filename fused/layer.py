"""`FusedConvBN2d`: Conv2d followed by BatchNorm2d as one memory-saving module.

Parameter and buffer names (what `fuse_conv_bn` copies into and the state_dict keys):

==================  =============================================  ======================
name                meaning                                        from
==================  =============================================  ======================
weight              conv weight (C_out, C_in/groups, kH, kW)       Conv2d.weight
bias                conv bias (C_out,) or None (bias=False)        Conv2d.bias
bn_weight           batch-norm scale (C_out,) or None (affine=False)  BatchNorm2d.weight
bn_bias             batch-norm shift (C_out,) or None (affine=False)  BatchNorm2d.bias
running_mean        buffer (C_out,) or None (no tracking)          BatchNorm2d.running_mean
running_var         buffer (C_out,) or None (no tracking)          BatchNorm2d.running_var
num_batches_tracked long 0-dim buffer or None (no tracking)        BatchNorm2d.num_batches_tracked
==================  =============================================  ======================
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn.modules.utils import _pair

from fused.memory_saving import memory_saving_conv_bn
from fused.variant import FORMS

__all__ = ["FusedConvBN2d"]


class FusedConvBN2d(nn.Module):
    """Conv2d + BatchNorm2d whose backward recomputes the convolution instead of saving its output.

    Under `torch.compile` it is written in plain differentiable ops instead, and the compiler's
    partitioner decides what to save (`fused.traceable`): same numbers, the compiler's memory.

    Behaves like `nn.Sequential(nn.Conv2d(...), nn.BatchNorm2d(...))` (with `form="standard"`):
    training uses batch statistics and updates the running ones (`momentum=None`: cumulative
    average); eval uses the running statistics when `track_running_stats`, else batch statistics.
    `form="tutorial"` (the default, as in the seed tutorial) normalises with the unbiased variance
    and eps outside the square root.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=False,
        eps=1e-3,
        momentum=0.1,
        affine=True,
        track_running_stats=True,
        form="tutorial",
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must "
                f"be divisible by groups ({groups})"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.form = form
        self.weight = nn.Parameter(
            torch.empty((out_channels, in_channels // groups, *self.kernel_size), **factory)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        if affine:
            self.bn_weight = nn.Parameter(torch.empty(out_channels, **factory))
            self.bn_bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bn_weight", None)
            self.register_parameter("bn_bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(out_channels, **factory))
            self.register_buffer("running_var", torch.ones(out_channels, **factory))
            self.register_buffer(
                "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Conv2d's initialisation for weight/bias, ones/zeros for bn_weight/bn_bias."""
        self.reset_running_stats()
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(self.bias, -bound, bound)
        if self.affine:
            nn.init.ones_(self.bn_weight)
            nn.init.zeros_(self.bn_bias)

    def forward(self, x):
        use_batch_stats = self.training or not self.track_running_stats
        # Running stats are updated only in training; eval without tracking uses batch stats.
        update = self.training and self.track_running_stats
        return memory_saving_conv_bn(
            x,
            self.weight,
            self.bias,
            self.bn_weight,
            self.bn_bias,
            self.running_mean if (update or not use_batch_stats) else None,
            self.running_var if (update or not use_batch_stats) else None,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            training=use_batch_stats,
            momentum=self.momentum,
            eps=self.eps,
            form=self.form,
            num_batches_tracked=self.num_batches_tracked if update else None,
        )

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        s += (
            f", bias={self.bias is not None}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}, "
            f"form={self.form!r}"
        )
        return s
