"""Kernels under test: the tutorial's fused Conv2d+BatchNorm, a general memory-saving layer, a
torch.library custom op, eager baselines, and the `Variant` contract for plugging in new kernels."""
from fused.variant import FEATURES, FORMS, UnsupportedFeatureError, Variant

__all__ = ["FEATURES", "FORMS", "UnsupportedFeatureError", "Variant"]
