"""Kernels under test: the tutorial's fused Conv2d+BatchNorm, a general memory-saving layer, a
torch.library custom op, eager baselines, and the `Variant` contract for plugging in new kernels."""

from fused.fuse import fuse_conv_bn, load_unfused_state_dict
from fused.layer import FusedConvBN2d
from fused.memory_saving import memory_saving_conv_bn
from fused.tutorial import FusedConvBN2DFunction
from fused.variant import FEATURES, FORMS, UnsupportedFeatureError, Variant

__all__ = [
    "FEATURES",
    "FORMS",
    "FusedConvBN2DFunction",
    "FusedConvBN2d",
    "UnsupportedFeatureError",
    "Variant",
    "fuse_conv_bn",
    "memory_saving_conv_bn",
    "load_unfused_state_dict",
]
