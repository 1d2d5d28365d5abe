"""Planted bugs that live only at the sizes of real networks: hundreds to thousands of channels,
millions of values per channel, a batch or an image past a CUDA grid dimension (65535), depthwise
convolutions, many channels and many values together in channels_last. Each passes the unit-test
sized tiers (at most 129 channels, 24,577 values per channel, batch 16, groups up to 4) and must
fail the network tiers (verify/strategies/sizes.py: channels, long, grid, crowd) or, for the
depthwise ones, the depthwise cases every tier now draws.

Written in torch the way a Triton or CUDA kernel organises its work, each a one-method change of
the correct implementations in `_correct.py`. `GALLERY` maps name -> `Planted`, merged into
`bugs.py`'s gallery.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.nn.grad import conv2d_weight

try:  # loaded by path (pytest verify --variant tests/gallery/bugs.py:ALL) from anywhere
    import tests.gallery  # noqa: F401
except ImportError:  # pragma: no cover - the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.gallery._correct import Explicit, Traced, per_channel
from tests.gallery.planted import Planted

CHANNEL_CHUNK = 1024  # channels per launch of a channel loop
GRID_LIMIT = 65535  # the largest CUDA grid y/z dimension
MAX_PROGRAMS = 64  # programs a split reduction launches per channel
PROGRAM_VALUES = 16384  # values each of them reduces
DEPTHWISE_VECTOR = 8  # channels a depthwise fast path handles at once (taken from 8 channels)
CROWD_CHANNELS = 64  # channels_last: more channels than one program's row of them
CROWD_ROWS = 8192  # ... and more rows (N*H*W positions) than one program reduces


def _by_channel(y):
    """(C, M): each channel's N*H*W values in (n, h, w) order, as a kernel walks them."""
    return y.transpose(0, 1).reshape(y.shape[1], -1)


def _stats_of(values, count):
    """(mean, unbiased variance) of each row of `values`, divided by `count` values."""
    mean = values.sum(dim=1) / count
    d = values - mean[:, None]
    return mean, (d * d).sum(dim=1) / (count - 1)


def _depthwise(weight, c) -> bool:
    return c.groups == weight.shape[0] >= DEPTHWISE_VECTOR and weight.shape[1] == 1


class ChannelIndexEightBit(Traced):
    """The channel index travels in an 8-bit field of a packed launch descriptor: from 257
    channels on, channel c normalises with the statistics of channel c % 256."""

    def batch_stats(self, y):
        mean, var = super().batch_stats(y)
        index = torch.arange(y.shape[1]) % 256
        return mean[index], var[index]


class ChannelChunkRemainder(Traced):
    """Channels in launches of CHANNEL_CHUNK: the last, partial launch (the channels past the last
    full chunk) is given the statistics of the chunk before it, channel by channel."""

    def batch_stats(self, y):
        mean, var = super().batch_stats(y)
        channels = y.shape[1]
        full = channels // CHANNEL_CHUNK * CHANNEL_CHUNK
        if channels <= CHANNEL_CHUNK or full == channels:
            return mean, var
        index = torch.arange(channels)
        index[full:] -= CHANNEL_CHUNK
        return mean[index], var[index]


class CountInSixteenBits(Traced):
    """The per-channel count of a Welford state is a uint16 (to fit shared memory): from 65536
    values per channel on, it wraps, and the mean and variance divide by count mod 65536."""

    def batch_stats(self, y):
        values = _by_channel(y)
        count = values.shape[1] % 2**16
        return _stats_of(values, count)


class ReductionPastMaxPrograms(Traced):
    """A split reduction launches at most MAX_PROGRAMS programs of PROGRAM_VALUES values per
    channel and no loop over the rest: past 2^20 values per channel the tail is never read (the
    count still says all of them)."""

    def batch_stats(self, y):
        values = _by_channel(y)
        return _stats_of(values[:, : MAX_PROGRAMS * PROGRAM_VALUES], values.shape[1])


class BatchGridClamped(Traced):
    """The normalisation pass writes into an output from torch.empty with one program per sample
    along grid y, clamped to GRID_LIMIT programs: samples from the 65536th on are never written."""

    def affine(self, xhat, bn_weight, bn_bias):
        full = super().affine(xhat, bn_weight, bn_bias)
        out = torch.empty(full.shape, dtype=full.dtype)
        out[:GRID_LIMIT] = full[:GRID_LIMIT]
        return out


class PixelGridWraps(Traced):
    """The normalisation pass launches one program per output pixel along grid y and takes the
    pixel index modulo GRID_LIMIT: past 65535 pixels an image repeats its first pixels."""

    def affine(self, xhat, bn_weight, bn_bias):
        out = super().affine(xhat, bn_weight, bn_bias)
        n, c, h, w = out.shape
        if h * w <= GRID_LIMIT:
            return out
        flat = out.reshape(n, c, h * w)
        index = torch.arange(h * w) % GRID_LIMIT
        return flat[:, :, index].reshape(n, c, h, w)


class DepthwiseFlippedGradWeight(Explicit):
    """A depthwise backward-filter fast path (groups == channels >= 8) walks each window from
    the far corner: grad_weight comes out rotated by 180 degrees. Forward, grad_x and every
    non-depthwise case are right."""

    def conv_backward(self, grad_y, grad_out, x, weight, has_bias, c):
        grad_x, grad_weight, grad_bias = super().conv_backward(
            grad_y, grad_out, x, weight, has_bias, c
        )
        if _depthwise(weight, c):
            grad_weight = torch.flip(conv2d_weight(x, weight.shape, grad_y, **c.conv), dims=(2, 3))
        return grad_x, grad_weight, grad_bias


class DepthwiseStrideOfRows(Traced):
    """A depthwise forward fast path (groups == channels >= 8) takes one stride for both axes,
    the stride along the rows: right for square strides and every other convolution."""

    def conv(self, x, weight, bias, c):
        if not _depthwise(weight, c) or c.stride[0] == c.stride[1]:
            return super().conv(x, weight, bias, c)
        y = torch.nn.functional.conv2d(
            x,
            weight,
            None,
            stride=c.stride[0],
            padding=c.padding,
            dilation=c.dilation,
            groups=c.groups,
        )
        # The output buffer has the shape the right strides give; the fast path fills what fits.
        right = super().conv(x, weight, None, c)
        out = torch.zeros_like(right)
        h, w = min(y.shape[2], out.shape[2]), min(y.shape[3], out.shape[3])
        out[:, :, :h, :w] = y[:, :, :h, :w]
        return out if bias is None else out + per_channel(bias)


class ChannelsLastCrowdRows(Traced):
    """channels_last statistics (NVIDIA/apex#1768's shape): an NHWC path, taken when
    x.is_contiguous(memory_format=torch.channels_last) (as a one-channel input also is), splits
    each channel's N*H*W rows into programs of CROWD_ROWS when there are more than CROWD_CHANNELS
    channels, and merges their partial means as if every program had a full block: past 8192
    values per channel the short last block weighs as much as a full one."""

    def compute(self, x, *args):
        self.nhwc = x.is_contiguous(memory_format=torch.channels_last)
        return super().compute(x, *args)

    def batch_stats(self, y):
        values = _by_channel(y)
        m = values.shape[1]
        if not self.nhwc or y.shape[1] <= CROWD_CHANNELS or m <= CROWD_ROWS:
            return super().batch_stats(y)
        blocks = values.split(CROWD_ROWS, dim=1)
        mean = torch.stack([b.mean(dim=1) for b in blocks]).mean(dim=0)
        d = values - mean[:, None]
        return mean, (d * d).sum(dim=1) / (m - 1)


VALUES = r"(out|grad_\w+|running_(mean|var)): worst element"
# Sizes as a report's size line says them: "size: 65537 values per channel (N=1 x
# H_out*W_out=1x65537), 1 channels".
PAST_256_CHANNELS = r", (25[7-9]|2[6-9]\d|[3-9]\d\d|\d{4}) channels"
PAST_1024_CHANNELS = r", (102[5-9]|10[3-9]\d|1[1-9]\d\d|[2-9]\d{3}|\d{5}) channels"
PAST_2_16_VALUES = r"size: (6553[6-9]|65[6-9]\d\d|6[6-9]\d{3}|[7-9]\d{4}|\d{6,}) values per"
PAST_2_20_VALUES = (
    r"size: (104857[7-9]|10485[89]\d|1048[6-9]\d\d|1049\d{3}|10[5-9]\d{4}|1[1-9]\d{5}"
    r"|[2-9]\d{6}|\d{8,}) values"
)
BATCH_PAST_GRID = r"\(N=(6553[6-9]|65[6-9]\d\d|6[6-9]\d{3}|[7-9]\d{4}|\d{6,}) x"
PIXELS_PAST_GRID = PAST_2_16_VALUES + r" channel \(N=[12] x"
CROWD = (
    r"size: (819[3-9]|8[2-9]\d\d|9\d{3}|\d{5,}) values per channel \(N=\d+ x "
    r"H_out\*W_out=\d+x\d+\), (6[5-9]|[7-9]\d|\d{3,}) channels"
)
# A depthwise case of at least 8 channels: weight(C, 1, kh, kw) and groups=C.
DEPTHWISE = r"weight\(([89]|[1-9]\d+), 1, \d+, \d+\), .*groups=\1,"
NUMERIC = "forward|gradients"


def _then(size: str, result: str = VALUES) -> str:
    return size + r"[\s\S]*?" + result


GALLERY = {
    "channel_index_eight_bit": Planted(
        ChannelIndexEightBit("standard"),
        {NUMERIC: _then(PAST_256_CHANNELS)},
    ),
    "channel_loop_remainder": Planted(
        ChannelChunkRemainder("tutorial"),
        {NUMERIC: _then(PAST_1024_CHANNELS)},
    ),
    "count_in_sixteen_bits": Planted(
        CountInSixteenBits("standard"),
        {NUMERIC: _then(PAST_2_16_VALUES)},
    ),
    "split_reduction_capped": Planted(
        ReductionPastMaxPrograms("tutorial"),
        {NUMERIC: _then(PAST_2_20_VALUES)},
    ),
    "batch_grid_clamped": Planted(
        BatchGridClamped("standard"),
        {NUMERIC: _then(BATCH_PAST_GRID, r"out: worst element .* actual nan")},
    ),
    "pixel_index_wraps": Planted(
        PixelGridWraps("tutorial"),
        {NUMERIC: _then(PIXELS_PAST_GRID, r"out: worst element")},
    ),
    "depthwise_filter_grad_flipped": Planted(
        DepthwiseFlippedGradWeight("standard"),
        {"gradients": _then(DEPTHWISE, r"grad_weight: worst element")},
        memory_saving=True,
    ),
    "depthwise_square_stride": Planted(
        DepthwiseStrideOfRows("tutorial"),
        {NUMERIC: _then(DEPTHWISE)},
    ),
    "channels_last_crowd_rows": Planted(
        ChannelsLastCrowdRows("standard"),
        {NUMERIC: _then(CROWD)},
    ),
}
EXTRA_SUPPORTS: dict = {}
# Properties each must pass though the bug is planted: a backward-only bug leaves the forward
# output and the running statistics right.
MUST_PASS = {"depthwise_filter_grad_flipped": ("forward", "running_stats")}
