"""NumPy float64 oracle for Conv2d + BatchNorm training (forward, running stats, gradients).

Never imports torch. The two batch-norm forms and the signatures: docs/contract.md.
"""

from .batch_norm import BatchNormStatistics, batch_norm, batch_norm_backward, batch_norm_statistics
from .conv import conv2d, conv2d_backward, conv2d_output_shape
from .conv_bn import conv_bn, conv_bn_backward
from .validation import FORMS, as_pair

__all__ = [
    "BatchNormStatistics",
    "FORMS",
    "as_pair",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_statistics",
    "conv2d",
    "conv2d_backward",
    "conv2d_output_shape",
    "conv_bn",
    "conv_bn_backward",
]
