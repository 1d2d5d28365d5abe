"""The recompute cost of a fused network: the conv forwards its backward runs again.

A memory-saving fused step does what the eager step does plus one convolution forward per conv-BN
pair (the backward recomputes the conv output instead of having saved it), so its time cannot go
below `eager step + recompute`: the physical limit the headline prints. `conv_recompute(workload)`
returns a callable that runs exactly those convolutions, through the kernel's own conv
(`fused.native_conv.conv_forward`, the one `backward_math` recomputes with, so same shapes,
memory layouts and CPU half-precision route), on the inputs each conv-BN pair saw in one forward
pass of `workload`.
"""

from __future__ import annotations

from typing import Callable

import torch

from fused.native_conv import conv_forward
from verify.benchmarks.models import ConvBN, Workload

__all__ = ["conv_recompute"]


def conv_recompute(workload: Workload) -> Callable[[], None]:
    """A callable that recomputes, without autograd, the conv forward of every conv-BN pair of
    `workload`'s network on the input that pair saw."""
    pairs = [m for m in workload.model.modules() if isinstance(m, ConvBN)]
    if not pairs:
        raise ValueError(f"{workload.name}: the network has no conv-BN pair (models.ConvBN)")
    inputs = {}
    handles = [
        m.register_forward_pre_hook(lambda m, args: inputs.__setitem__(m, args[0].detach()))
        for m in pairs
    ]
    try:
        with torch.no_grad():
            workload.forward()
    finally:
        for handle in handles:
            handle.remove()
    calls = [
        (
            inputs[m],
            m.weight.detach(),
            None if m.bias is None else m.bias.detach(),
            (m.stride,) * 2,
            (m.padding,) * 2,
        )
        for m in pairs
    ]

    def recompute() -> None:
        with torch.no_grad():
            for x, weight, bias, stride, padding in calls:
                conv_forward(x, weight, bias, stride, padding, (1, 1), 1)
        if workload.device.type == "cuda":
            torch.cuda.synchronize(workload.device)

    return recompute
