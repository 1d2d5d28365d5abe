"""`triton_conv_bn`: the memory-saving fused Conv2d+BatchNorm with its batch norm in Triton.

The convolution and its backward run on PyTorch's kernels (every Conv2d option for free); all
NCHW-sized batch-norm work runs in the Triton kernels of `fused.triton_bn_kernels`: the
per-channel statistics (a split Welford reduction), normalisation and affine in one pass, the
backward reductions sum(g) and sum(g * (y - mean)), and the input-gradient pass. The C-sized
arithmetic between them (inverse std, scale and shift, running-stat blend, the backward's
per-channel coefficients), the recompute and the autograd Function are `fused.memory_saving`'s:
`TritonBatchNorm` is the batch-norm passes argument of its forward and backward.

As in the tutorial, only the conv input is saved for backward; the backward recomputes the
convolution. Works on the CPU through Triton's interpreter (TRITON_INTERPRET=1, set up by
`fused.triton_support`) and natively on a CUDA device.
"""

from __future__ import annotations

import functools

from fused.entry import conv_bn_entry
from fused.memory_saving import memory_saving_kernel
from fused.triton_bn import TritonBatchNorm

__all__ = ["triton_conv_bn", "triton_conv_bn_with", "DEFAULT_BATCH_NORM"]

DEFAULT_BATCH_NORM = TritonBatchNorm()


def triton_conv_bn_with(bn: TritonBatchNorm, name: str = "triton_conv_bn"):
    """The entry point of the Triton kernel with launcher `bn` (block sizes, accumulation dtype;
    a retuning, or a planted bug in tests/gallery/triton_bugs.py)."""
    return conv_bn_entry(
        functools.partial(memory_saving_kernel, bn=bn),
        name=name,
        module=__name__,
        doc="""Memory-saving `batch_norm(conv2d(x, weight, bias, ...), ...)` with a Triton batch
    norm.

    Arguments as `fused.memory_saving_conv_bn`'s (`form` "standard" or "tutorial"); running stats
    are updated in place in training and only read in eval. Every argument is validated
    (ValueError) before anything runs or is modified. Once-differentiable.""",
    )


triton_conv_bn = triton_conv_bn_with(DEFAULT_BATCH_NORM)
