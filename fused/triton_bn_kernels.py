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

Interpreter. Under TRITON_INTERPRET=1 each call of a `@triton.jit` helper re-patches
triton.language (about a millisecond), so the tile loops are written inline, not factored into
helpers.
"""
import triton
import triton.language as tl


@triton.jit
def welford_partials_kernel(y_ptr, count_ptr, mean_ptr, m2_ptr, R, HW, stride_n, stride_c,
                            stride_hw, chunk, BLOCK: tl.constexpr, ACC: tl.constexpr):
    """Per (channel, program): count, mean and M2 (sum of squared deviations) of its values."""
    c = tl.program_id(0)
    p = tl.program_id(1)
    channel = y_ptr + c.to(tl.int64) * stride_c
    start = p * chunk
    end = tl.minimum(start + chunk, R)
    lanes = tl.arange(0, BLOCK)
    # Welford per lane: each lane keeps the running count, mean and M2 of the values it saw, which
    # stays accurate when the mean dwarfs the spread (E[y^2] - E[y]^2 would cancel).
    count = tl.zeros([BLOCK], ACC)
    mean = tl.zeros([BLOCK], ACC)
    m2 = tl.zeros([BLOCK], ACC)
    for first in range(start, end, BLOCK):
        i = first + lanes
        inside = i < end
        n = i // HW
        offsets = n.to(tl.int64) * stride_n + (i - n * HW).to(tl.int64) * stride_hw
        v = tl.load(channel + offsets, mask=inside, other=0.0).to(ACC)
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
def welford_merge_kernel(count_ptr, mean_ptr, m2_ptr, mean_out_ptr, var_out_ptr, P,
                         BLOCK_P: tl.constexpr):
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
def normalize_kernel(y_ptr, out_ptr, scale_ptr, shift_ptr, R, HW, y_stride_n, y_stride_c,
                     y_stride_hw, out_stride_n, out_stride_c, out_stride_hw, chunk,
                     BLOCK: tl.constexpr, ACC: tl.constexpr):
    """out = y * scale[c] + shift[c]: normalisation and affine in one pass (out may be y)."""
    c = tl.program_id(0)
    p = tl.program_id(1)
    y_channel = y_ptr + c.to(tl.int64) * y_stride_c
    out_channel = out_ptr + c.to(tl.int64) * out_stride_c
    scale = tl.load(scale_ptr + c).to(ACC)
    shift = tl.load(shift_ptr + c).to(ACC)
    start = p * chunk
    end = tl.minimum(start + chunk, R)
    lanes = tl.arange(0, BLOCK)
    for first in range(start, end, BLOCK):
        i = first + lanes
        inside = i < end
        n = i // HW
        n64 = n.to(tl.int64)
        hw64 = (i - n * HW).to(tl.int64)
        v = tl.load(y_channel + n64 * y_stride_n + hw64 * y_stride_hw, mask=inside,
                    other=0.0).to(ACC)
        result = v * scale + shift
        tl.store(out_channel + n64 * out_stride_n + hw64 * out_stride_hw,
                 result.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def grad_partials_kernel(g_ptr, y_ptr, mean_ptr, sum_g_ptr, sum_gd_ptr, R, HW, g_stride_n,
                         g_stride_c, g_stride_hw, y_stride_n, y_stride_c, y_stride_hw, chunk,
                         BLOCK: tl.constexpr, ACC: tl.constexpr, CENTRED: tl.constexpr):
    """Per (channel, program): sum(g) and, when CENTRED, sum(g * (y - mean[c]))."""
    c = tl.program_id(0)
    p = tl.program_id(1)
    g_channel = g_ptr + c.to(tl.int64) * g_stride_c
    y_channel = y_ptr + c.to(tl.int64) * y_stride_c
    mean = tl.load(mean_ptr + c).to(ACC)
    start = p * chunk
    end = tl.minimum(start + chunk, R)
    lanes = tl.arange(0, BLOCK)
    sum_g = tl.zeros([BLOCK], ACC)
    sum_gd = tl.zeros([BLOCK], ACC)
    for first in range(start, end, BLOCK):
        i = first + lanes
        inside = i < end
        n = i // HW
        n64 = n.to(tl.int64)
        hw64 = (i - n * HW).to(tl.int64)
        g = tl.load(g_channel + n64 * g_stride_n + hw64 * g_stride_hw, mask=inside,
                    other=0.0).to(ACC)
        sum_g += g
        if CENTRED:
            y = tl.load(y_channel + n64 * y_stride_n + hw64 * y_stride_hw, mask=inside,
                        other=0.0).to(ACC)
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
def input_grad_kernel(g_ptr, y_ptr, out_ptr, a_ptr, b_ptr, k_ptr, R, HW, g_stride_n,
                      g_stride_c, g_stride_hw, y_stride_n, y_stride_c, y_stride_hw,
                      out_stride_n, out_stride_c, out_stride_hw, chunk, BLOCK: tl.constexpr,
                      ACC: tl.constexpr, CENTRED: tl.constexpr):
    """Batch-norm input gradient: out = a[c] * g + b[c] * y + k[c] when CENTRED (training),
    else out = a[c] * g (eval; b and k are then read but unused). out may be y."""
    c = tl.program_id(0)
    p = tl.program_id(1)
    g_channel = g_ptr + c.to(tl.int64) * g_stride_c
    y_channel = y_ptr + c.to(tl.int64) * y_stride_c
    out_channel = out_ptr + c.to(tl.int64) * out_stride_c
    a = tl.load(a_ptr + c).to(ACC)
    b = tl.load(b_ptr + c).to(ACC)
    k = tl.load(k_ptr + c).to(ACC)
    start = p * chunk
    end = tl.minimum(start + chunk, R)
    lanes = tl.arange(0, BLOCK)
    for first in range(start, end, BLOCK):
        i = first + lanes
        inside = i < end
        n = i // HW
        n64 = n.to(tl.int64)
        hw64 = (i - n * HW).to(tl.int64)
        g = tl.load(g_channel + n64 * g_stride_n + hw64 * g_stride_hw, mask=inside,
                    other=0.0).to(ACC)
        result = a * g
        if CENTRED:
            y = tl.load(y_channel + n64 * y_stride_n + hw64 * y_stride_hw, mask=inside,
                        other=0.0).to(ACC)
            result += b * y + k
        tl.store(out_channel + n64 * out_stride_n + hw64 * out_stride_hw,
                 result.to(out_ptr.dtype.element_ty), mask=inside)
