"""Kernels under test: the tutorial's fused Conv2d+BatchNorm, a general memory-saving layer, a
torch.library custom op, eager baselines, and the `Variant` contract for plugging in new kernels.

The names below are loaded on first use, not when the package is: `fused.triton_support`, which
the pytest plugin's controller process imports only to decide where Triton kernels run, would
otherwise pull in torch (a second or more of every run's start-up) in a process that never runs a
kernel."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for type checkers: what __getattr__ returns
    from fused.fuse import fuse_conv_bn as fuse_conv_bn
    from fused.fuse import load_unfused_state_dict as load_unfused_state_dict
    from fused.layer import FusedConvBN2d as FusedConvBN2d
    from fused.memory_saving import memory_saving_conv_bn as memory_saving_conv_bn
    from fused.tutorial import FusedConvBN2DFunction as FusedConvBN2DFunction
    from fused.variant import FEATURES as FEATURES
    from fused.variant import FORMS as FORMS
    from fused.variant import UnsupportedFeatureError as UnsupportedFeatureError
    from fused.variant import Variant as Variant

_HOMES = {
    "FEATURES": "fused.variant",
    "FORMS": "fused.variant",
    "FusedConvBN2DFunction": "fused.tutorial",
    "FusedConvBN2d": "fused.layer",
    "UnsupportedFeatureError": "fused.variant",
    "Variant": "fused.variant",
    "fuse_conv_bn": "fused.fuse",
    "load_unfused_state_dict": "fused.fuse",
    "memory_saving_conv_bn": "fused.memory_saving",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'fused' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
