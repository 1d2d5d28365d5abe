"""A kernel variant written against the `fused.Variant` contract, ready to fuzz:

    pytest verify --variant examples/my_kernel.py:VARIANT

It is plain autograd over torch ops in the standard (nn.BatchNorm2d) form and declares the optional
features it handles; the suite draws only those (plus float32/float64 and every memory layout)."""

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
    # PyTorch's CPU batch norm reads a strided bn_weight as if it were contiguous (its backward
    # returns NaN): the suite reports that as upstream (docs/upstream-bugs.md), and a C-sized
    # contiguous copy sidesteps it.
    if bn_weight is not None:
        bn_weight = bn_weight.contiguous()
    return F.batch_norm(y, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps)


VARIANT = Variant(
    "my_conv_bn",
    conv_bn,
    form="standard",
    supports={"stride", "padding", "dilation", "groups", "bias", "affine", "running_stats"},
)
