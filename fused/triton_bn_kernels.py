"""Triton kernels of the batch-norm half of the fused Conv2d+BatchNorm in `fused.triton_conv_bn`.

Layout. Every kernel sees one channel of an (N, C, H, W) tensor as a flat run of R = N*H*W
values; value i sits at `n * stride_n + hw * stride_hw` from the channel's start, with
n = i // HW and hw = i % HW (the host folds H and W into one stride, which conv outputs,
channels_last and every-other-element views all allow, and copies anything else).

Grid. (C, P): program (c, p) handles the values [p * chunk, min((p + 1) * chunk, R)) of channel c
in BLOCK-wide tiles, the last one masked. A channel's reduction is thus split across P programs,
each writing a partial result, and a second kernel merges the P partials of each channel.

Precision. Loads are converted to ACC (float32 for float16/bfloat16 inputs, else the input's own
dtype) and everything is accumulated in ACC; stores round once to the destination's dtype.

Helpers. `program_span` and `tile_index` are the Grid and Layout rules above, written once
and called by every tiled kernel.
"""

import triton
import triton.language as tl


@triton.jit
def program_span(chunk, R):
    """The values [start, end) of its channel that program (c, p) handles (see Grid)."""
    start = tl.program_id(1) * chunk
    return start, tl.minimum(start + chunk, R)


@triton.jit
def tile_index(first, lanes, end, HW):
    """One tile of values first + lanes of a channel: (inside mask, n, hw) with n and hw as int64,
    so that a value sits at `n * stride_n + hw * stride_hw` (see Layout)."""
    i = first + lanes
    n = i // HW
    return i < end, n.to(tl.int64), (i - n * HW).to(tl.int64)


@triton.jit
def welford_partials_kernel(
    y_ptr,
    count_ptr,
    mean_ptr,
    m2_ptr,
    R,
    HW,
    stride_n,
    stride_c,
    stride_hw,
    chunk,
    BLOCK: tl.constexpr,
    ACC: tl.constexpr,
):
    """Per (channel, program): count, mean and M2 (sum of squared deviations) of its values."""
    c = tl.program_id(0)
    p = tl.program_id(1)
    channel = y_ptr + c.to(tl.int64) * stride_c
    start, end = program_span(chunk, R)
    lanes = tl.arange(0, BLOCK)
    # Welford per lane: each lane keeps the running count, mean and M2 of the values it saw, which
    # stays accurate when the mean dwarfs the spread (E[y^2] - E[y]^2 would cancel).
    count = tl.zeros([BLOCK], ACC)
    mean = tl.zeros([BLOCK], ACC)
    m2 = tl.zeros([BLOCK], ACC)
    for first in range(start, end, BLOCK):
        inside, n, hw = tile_index(first, lanes, end, HW)
        v = tl.load(channel + n * stride_n + hw * stride_hw, mask=inside, other=0.0).to(ACC)
        count += inside.to(ACC)
        delta = tl.where(inside, v - mean, 0.0)
        mean += delta / tl.maximum(count, 1.0)
        m2 += delta * (v - mean)
    # Lanes to program: Chan et al.'s pairwise combination, all lanes at once.
    total = tl.sum(count, axis=0)
    program_mean = tl.sum(count * mean, axis=0) / total
    lane_shift = mean - program_mean
    program_m2 = tl.sum(m2 + count * lane_shift * lane_shift, axis=0)
    slot = c * tl.num_programs(1) + p
    tl.store(count_ptr + slot, total)
    tl.store(mean_ptr + slot, program_mean)
    tl.store(m2_ptr + slot, program_m2)


@triton.jit
def welford_merge_kernel(
    count_ptr, mean_ptr, m2_ptr, mean_out_ptr, var_out_ptr, P, BLOCK_P: tl.constexpr
):
    """Per channel: merge the P partials into the mean and the biased variance."""
    c = tl.program_id(0)
    j = tl.arange(0, BLOCK_P)
    inside = j < P
    slots = c * P + j
    count = tl.load(count_ptr + slots, mask=inside, other=0.0)
    mean = tl.load(mean_ptr + slots, mask=inside, other=0.0)
    m2 = tl.load(m2_ptr + slots, mask=inside, other=0.0)
    total = tl.sum(count, axis=0)
    channel_mean = tl.sum(count * mean, axis=0) / total
    # M2 of the union = the parts' own M2 plus the spread of the parts' means around the total
    # mean (the between-chunk term; zero only when every chunk has the same mean).
    between = mean - channel_mean
    channel_m2 = tl.sum(m2, axis=0) + tl.sum(count * between * between, axis=0)
    tl.store(mean_out_ptr + c, channel_mean)
    tl.store(var_out_ptr + c, channel_m2 / total)


@triton.jit
def grad_partials_kernel(
    g_ptr,
    y_ptr,
    mean_ptr,
    sum_g_ptr,
    sum_gd_ptr,
    R,
    HW,
    g_stride_n,
    g_stride_c,
    g_stride_hw,
    y_stride_n,
    y_stride_c,
    y_stride_hw,
    chunk,
    BLOCK: tl.constexpr,
    ACC: tl.constexpr,
    CENTRED: tl.constexpr,
):
    """Per (channel, program): sum(g) and, when CENTRED, sum(g * (y - mean[c]))."""
    c = tl.program_id(0)
    p = tl.program_id(1)
    g_channel = g_ptr + c.to(tl.int64) * g_stride_c
    y_channel = y_ptr + c.to(tl.int64) * y_stride_c
    mean = tl.load(mean_ptr + c).to(ACC)
    start, end = program_span(chunk, R)
    lanes = tl.arange(0, BLOCK)
    sum_g = tl.zeros([BLOCK], ACC)
    sum_gd = tl.zeros([BLOCK], ACC)
    for first in range(start, end, BLOCK):
        inside, n, hw = tile_index(first, lanes, end, HW)
        g = tl.load(g_channel + n * g_stride_n + hw * g_stride_hw, mask=inside, other=0.0).to(ACC)
        sum_g += g
        if CENTRED:
            y = tl.load(y_channel + n * y_stride_n + hw * y_stride_hw, mask=inside, other=0.0).to(
                ACC
            )
            # g is 0 outside, so the padded lanes add nothing whatever y - mean is there.
            sum_gd += g * (y - mean)
    slot = c * tl.num_programs(1) + p
    tl.store(sum_g_ptr + slot, tl.sum(sum_g, axis=0))
    tl.store(sum_gd_ptr + slot, tl.sum(sum_gd, axis=0))


@triton.jit
def sum_partials_kernel(a_ptr, b_ptr, a_out_ptr, b_out_ptr, P, BLOCK_P: tl.constexpr):
    """Per channel: add up the P partial sums of two reductions."""
    c = tl.program_id(0)
    j = tl.arange(0, BLOCK_P)
    inside = j < P
    a = tl.load(a_ptr + c * P + j, mask=inside, other=0.0)
    b = tl.load(b_ptr + c * P + j, mask=inside, other=0.0)
    tl.store(a_out_ptr + c, tl.sum(a, axis=0))
    tl.store(b_out_ptr + c, tl.sum(b, axis=0))


@triton.jit
def channel_affine_kernel(
    u_ptr,
    v_ptr,
    out_ptr,
    a_ptr,
    b_ptr,
    k_ptr,
    R,
    HW,
    u_stride_n,
    u_stride_c,
    u_stride_hw,
    v_stride_n,
    v_stride_c,
    v_stride_hw,
    out_stride_n,
    out_stride_c,
    out_stride_hw,
    chunk,
    BLOCK: tl.constexpr,
    ACC: tl.constexpr,
    WITH_V: tl.constexpr,
    WITH_K: tl.constexpr,
):
    """out = a[c] * u (+ b[c] * v when WITH_V) (+ k[c] when WITH_K), one pass; out may be u or v.

    The normalisation is `a * y + k` (scale, shift); the batch-norm input gradient is
    `a * g + b * y + k` in training and `a * g` in eval. Operands a flag leaves out are not read.
    """
    c = tl.program_id(0)
    u_channel = u_ptr + c.to(tl.int64) * u_stride_c
    v_channel = v_ptr + c.to(tl.int64) * v_stride_c
    out_channel = out_ptr + c.to(tl.int64) * out_stride_c
    a = tl.load(a_ptr + c).to(ACC)
    start, end = program_span(chunk, R)
    lanes = tl.arange(0, BLOCK)
    for first in range(start, end, BLOCK):
        inside, n, hw = tile_index(first, lanes, end, HW)
        u = tl.load(u_channel + n * u_stride_n + hw * u_stride_hw, mask=inside, other=0.0)
        result = a * u.to(ACC)
        if WITH_V:
            v = tl.load(v_channel + n * v_stride_n + hw * v_stride_hw, mask=inside, other=0.0)
            result += tl.load(b_ptr + c).to(ACC) * v.to(ACC)
        if WITH_K:
            result += tl.load(k_ptr + c).to(ACC)
        tl.store(
            out_channel + n * out_stride_n + hw * out_stride_hw,
            result.to(out_ptr.dtype.element_ty),
            mask=inside,
        )
