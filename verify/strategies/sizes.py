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

Within a tier Hypothesis draws the values per channel from one ascending list of sizes next to the
tier's boundaries (2^k - 1, 2^k, 2^k + 1, and awkward remainders), and the batch and image shape
that factor it by index, so a size failure shrinks to the smallest failing size of its tier.
"""

from __future__ import annotations

from hypothesis import strategies as st

from verify.strategies.shared import shared

SIZE_TIERS = ("small", "tile", "split", "large", "wide")

# Values per channel (N * H_out * W_out) each tier straddles.
REDUCTION_BOUNDARIES = {
    "tile": (32, 64, 128, 256),
    "split": (512, 1024, 2048, 4096),
    "large": (8192, 16384),
}
CHANNEL_BOUNDARIES = (8, 16, 32, 64, 128)
# The largest batch each tier draws: grids over the batch (one program per sample) break past a
# grid dimension, so the large tier reaches 16.
MAX_BATCH = {"small": 3, "tile": 16, "split": 16, "large": 16, "wide": 4}
# Channels per group in the tiers whose reduction is long: the work grows with
# values x channels, and the channel edges have their own tier.
MAX_PER_GROUP = {"small": 3, "tile": 3, "split": 2, "large": 2, "wide": 3}


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


def reduction_sizes(tier: str) -> tuple:
    """Every size a tier draws, ascending: one index to shrink, toward the smallest failing."""
    return tuple(sorted({v for b in REDUCTION_BOUNDARIES[tier] for v in offsets_around(b)}))


def _divisors(n: int, limit: int) -> list:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


@shared
@st.composite
def reduction_layout(draw, tier: str):
    """(batch, (H_out, W_out)) whose product sits next to one of the tier's boundaries."""
    values = draw(st.sampled_from(reduction_sizes(tier)))
    # The factorisation is picked by index modulo the number of choices, so the same draws follow
    # whatever `values` is: the shrinker can then move `values` alone to a smaller size.
    batches = _divisors(values, MAX_BATCH[tier])
    batch = batches[draw(st.integers(0, MAX_BATCH[tier] - 1)) % len(batches)]
    pixels = values // batch
    # Rows from the squarest factorisation down to a single row of `pixels` columns (a prime
    # count of pixels has only that one).
    rows = sorted((d for d in _divisors(pixels, pixels) if d * d <= pixels), reverse=True)
    height = rows[draw(st.integers(0, 7)) % len(rows)]
    return batch, (height, pixels // height)


@shared
@st.composite
def channel_count(draw):
    """Output channels next to one of CHANNEL_BOUNDARIES."""
    boundary = draw(st.sampled_from(CHANNEL_BOUNDARIES))
    return draw(st.sampled_from((boundary - 1, boundary, boundary + 1)))
