"""Size tiers: where the batch-norm reduction and the channel loop cross the block sizes that GPU
kernels tile by.

Real kernels (Triton, CUDA) reduce each channel's N*H_out*W_out values in blocks of a power of two,
split long reductions across programs and merge the partial results, and handle channels in
groups of 8 to 128. Their bugs live at those edges: the masked tail of the last block, the merge
of partial statistics, the channel past the first group. Tiny cases never reach them, so besides
`small` (today's millisecond cases, which shrink well) each property draws a share of its examples
from tiers whose sizes sit on both sides of those powers of two:

    small    at most ~48 values per channel, at most 9 channels
    tile     values per channel around 32, 64, 128, 256: the tail of one block
    split    around 512, 1024, 2048, 4096: a reduction split across programs and merged;
             H_out*W_out crosses 256 and 1024 when the batch is 1
    large    around 8192 and 16384, up to 24,577 values per channel, batch up to 16
    wide     output channels around 8, 16, 32, 64, 128 (up to 129)

The network tiers (NETWORK_TIERS) reach the sizes real networks run, each cheap because it is
large along one or two dimensions only: no tensor of a case holds more than MAX_NETWORK_ELEMENTS
(2^22) values, so an example (oracle and bounds included) stays around a second:

    channels around 256, 512, 1024, 2048, 4096 output channels (up to 4097; ResNet-50's last
             stage is 2048), a few values per channel
    long     values per channel around 2^16, 2^20 and 2^21 (up to 2^21 + 3), one or two channels
    grid     a batch or an H_out*W_out past 65535 (a CUDA grid dimension), not both
    crowd    many channels and many values together, drawn channels_last first: 63-129 channels
             x 6,143-12,289 values (the shape of NVIDIA/apex#1768, 65 x 10,000)

Where a variant declares `groups`, the wide, channels and crowd tiers also draw depthwise
convolutions (groups == in_channels == out_channels), at 7-129, at 7-129 and 255-1025, and at
63-129 channels (`depthwise_widths`).

Within a tier Hypothesis draws the values per channel from one ascending list of sizes next to the
tier's boundaries (2^k - 1, 2^k, 2^k + 1, and awkward remainders), and the batch and image shape
that factor it by index, so a size failure shrinks to the smallest failing size of its tier.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from verify.strategies.shared import BOOLEANS, choice, ints, shared

# The tiers every property runs at unless it says otherwise (its SIZE_TIERS).
SIZE_TIERS = ("small", "tile", "split", "large", "wide")
# Sizes of real networks: forward, gradients and cuda opt in (their SIZE_TIERS).
NETWORK_TIERS = ("channels", "long", "grid", "crowd")
ALL_TIERS = SIZE_TIERS + NETWORK_TIERS
# Past 2^31 elements, where a kernel's int32 indices overflow: the `cuda` property's tier, checked
# against `verify.chunked` on the GPU (no float64 NumPy oracle fits), skipped without one.
INT32_TIER = "int32"
# No tensor of a network-tier case (x, the output, the weight) holds more values than this.
MAX_NETWORK_ELEMENTS = 2**22

# Values per channel (N * H_out * W_out) each tier straddles.
REDUCTION_BOUNDARIES = {
    "tile": (32, 64, 128, 256),
    "split": (512, 1024, 2048, 4096),
    "large": (8192, 16384),
    "long": (2**16, 2**20, 2**21),
    "crowd": (8192,),
}
# Sizes a tier draws beside its boundaries' neighbours: apex#1768's 10,000 values per channel.
EXTRA_REDUCTION_SIZES = {"crowd": (10000,)}
# The most values per channel a tier draws (2^21's neighbours past 2^21 + 3 would break the
# element bound once a 3-wide kernel widens the input).
MAX_VALUES = {"long": 2**21 + 3}
CHANNEL_BOUNDARIES = (8, 16, 32, 64, 128)
# Output channels of the tiers that cross channel counts (wide: CHANNEL_BOUNDARIES).
NETWORK_CHANNEL_BOUNDARIES = {"channels": (256, 512, 1024, 2048, 4096), "crowd": (64, 128)}
# The batch or H_out*W_out the grid tier puts past 65535, the largest CUDA grid y/z dimension.
GRID_BOUNDARY = 2**16
# The largest batch each tier draws: grids over the batch (one program per sample) break past a
# grid dimension, so the large tier reaches 16 (the grid tier reaches 98,305).
MAX_BATCH = {
    "small": 3,
    "tile": 16,
    "split": 16,
    "large": 16,
    "wide": 4,
    "channels": 2,
    "long": 16,
    "grid": 2,
    "crowd": 16,
}
# Channels per group in the tiers whose reduction is long: the work grows with
# values x channels, and the channel edges have their own tier.
MAX_PER_GROUP = {
    "small": 3,
    "tile": 3,
    "split": 2,
    "large": 2,
    "wide": 3,
    "channels": 2,
    "long": 1,
    "grid": 3,
    "crowd": 2,
}


def offsets_around(boundary: int) -> tuple:
    """Sizes next to a power of two, ascending: a remainder of about 3/4, 2^k - 1, 2^k, 2^k + 1,
    2^k + 3, and one and a half blocks plus one."""
    return tuple(
        sorted(
            {
                boundary - boundary // 4 - 1,
                boundary - 1,
                boundary,
                boundary + 1,
                boundary + 3,
                boundary + boundary // 2 + 1,
            }
        )
    )


def past_first(sizes: tuple, boundary: int) -> tuple:
    """`sizes` (ascending, around `boundary`) reordered from the first one past the boundary up,
    then the ones below it downwards: where a tier draws a boundary first and then a size next to
    it, its simplest case (the first example Hypothesis tries, all that one example per tier
    reaches) crosses the boundary, and a failure shrinks to the smallest failing size past it."""
    above = [v for v in sizes if v > boundary]
    below = [v for v in sizes if v <= boundary]
    return tuple(above + below[::-1])


def reduction_sizes(tier: str) -> tuple:
    """Every size a tier draws, ascending: one index to shrink, toward the smallest failing."""
    drawn = {v for b in REDUCTION_BOUNDARIES[tier] for v in offsets_around(b)}
    drawn |= set(EXTRA_REDUCTION_SIZES.get(tier, ()))
    return tuple(sorted(v for v in drawn if v <= MAX_VALUES.get(tier, v)))


def network_sizes(tier: str) -> dict:
    """boundary -> the sizes next to it a network tier draws, from the first one past it (see
    `past_first`); each size belongs to its nearest boundary."""
    boundaries = REDUCTION_BOUNDARIES[tier]
    near: dict = {b: [] for b in boundaries}
    for v in reduction_sizes(tier):
        near[min(boundaries, key=lambda b: abs(v - b) / b)].append(v)
    return {b: past_first(tuple(sizes), b) for b, sizes in near.items()}


def _divisors(n: int, limit: int) -> list:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def _divisors_up_to_root(n: int) -> list:
    return [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]


@shared
@st.composite
def _image(draw, pixels: int):
    """(H_out, W_out) with H_out * W_out == pixels: rows from the squarest factorisation down to
    a single row of `pixels` columns (a prime count of pixels has only that one), by index."""
    rows = sorted(_divisors_up_to_root(pixels), reverse=True)
    height = rows[draw(ints(0, 7)) % len(rows)]
    return height, pixels // height


@shared
@st.composite
def reduction_layout(draw, tier: str):
    """(batch, (H_out, W_out)) whose product sits next to one of the tier's boundaries."""
    if tier in NETWORK_TIERS:
        near = network_sizes(tier)
        values = draw(choice(near[draw(choice(tuple(near)))]))
    else:
        values = draw(choice(reduction_sizes(tier)))
    # The factorisation is picked by index modulo the number of choices, so the same draws follow
    # whatever `values` is: the shrinker can then move `values` alone to a smaller size.
    batches = _divisors(values, MAX_BATCH[tier])
    batch = batches[draw(ints(0, MAX_BATCH[tier] - 1)) % len(batches)]
    return batch, draw(_image(values // batch))


@shared
@st.composite
def grid_layout(draw):
    """(batch, (H_out, W_out)) with either the batch or H_out*W_out next to GRID_BOUNDARY and the
    other one or two: the two grid dimensions a kernel launches over, one at a time."""
    across_pixels = draw(BOOLEANS)
    count = draw(choice(past_first(offsets_around(GRID_BOUNDARY), GRID_BOUNDARY - 1)))
    other = draw(ints(1, 2))
    if across_pixels:
        return other, draw(_image(count))
    return count, (1, other)


@shared
@st.composite
def channel_count(draw, boundaries=CHANNEL_BOUNDARIES, *, past: bool = False):
    """Output channels next to one of `boundaries` (from the one past it first, if `past`)."""
    boundary = draw(choice(boundaries))
    near = (boundary - 1, boundary, boundary + 1)
    return draw(choice(past_first(near, boundary) if past else near))


@shared
@st.composite
def int32_geometry(draw):
    """Case fields past 2^31 elements: one channel of 2^31 + 2^16 values (its count overflows an
    int32), or two of 2^30 + 2^15 (the output's flat index overflows one). A pointwise
    convolution of one input channel, so x holds no more than the output."""
    channels = draw(ints(1, 2))
    return dict(
        batch=3 - channels,
        in_channels=1,
        out_channels=channels,
        height=2**15,
        width=2**15 + 1,
        kernel=(1, 1),
        stride=(1, 1),
        padding=(0, 0),
        dilation=(1, 1),
        groups=1,
    )


def channel_boundaries(tier: str) -> tuple:
    """The output-channel counts `tier` straddles; () where it draws a few channels per group."""
    if tier == "wide":
        return CHANNEL_BOUNDARIES
    return NETWORK_CHANNEL_BOUNDARIES.get(tier, ())


def depthwise_widths(tier: str) -> tuple:
    """Widths (groups == in_channels == out_channels) a tier draws depthwise convolutions at, where
    `groups` is declared; () where it draws none: `wide` 7-129, `channels` 7-129 and 255-1025,
    `crowd` 63-129. Not `long` and `grid` (one or two channels), and not the four unit tiers
    small to large: a new draw there would reshuffle the derandomised ci examples that the
    gallery's catches of context and program bugs were calibrated on (measured: four catches
    lost), while `wide` already crosses the 8-channel vector of a depthwise fast path."""
    boundaries: tuple[int, ...]
    if tier == "wide":
        boundaries = CHANNEL_BOUNDARIES
    elif tier == "channels":
        boundaries = CHANNEL_BOUNDARIES + NETWORK_CHANNEL_BOUNDARIES["channels"]
    elif tier == "crowd":
        boundaries = NETWORK_CHANNEL_BOUNDARIES["crowd"]
    else:
        return ()
    # Depthwise stops at 1025 channels: wider ones would be all weight and no batch norm.
    return tuple(w for b in boundaries for w in past_first((b - 1, b, b + 1), b) if w <= 1025)
