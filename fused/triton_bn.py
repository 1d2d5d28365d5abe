"""Host side of the Triton batch norm: tiling decisions and kernel launches.

`TritonBatchNorm` owns every choice a GPU engineer tunes (tile width, values per program, the cap
on programs per channel, the accumulation dtype) and launches the kernels of
`fused.triton_bn_kernels`. Each choice is one attribute or one small method, so a variation of the
kernel (a planted bug in tests/gallery/triton_bugs.py, or a retuning) is a small subclass.

Block sizes are deliberately small: a tile of BLOCK = 256 values and 4 tiles per program, so a
channel of more than 1,024 values is split across programs and merged, and the masked tail tile,
the split and the merge are all exercised at sizes the suite draws (up to 16,385 values per
channel), not only on ImageNet-sized tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fused.dtypes import stat_dtype
from fused.triton_support import (
    check_language_mode,
    configure_interpreter,
    interpreting,
    is_interpreted,
)

# The interpreter is chosen when triton and the kernels are imported: decide before both.
configure_interpreter()
check_language_mode()

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from fused import triton_bn_kernels  # noqa: E402

__all__ = ["TritonBatchNorm"]

_TL_DTYPES = {
    torch.float64: tl.float64,
    torch.float32: tl.float32,
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
}


def _channel_strides(t: Tensor):
    """(t, stride_n, stride_c, stride_hw) with H and W folded into one stride (value hw = h*W+w
    of a sample sits at hw * stride_hw); a copy when no single stride walks H and W."""
    _, _, h, w = t.shape
    s_n, s_c, s_h, s_w = t.stride()
    if h == 1:
        return t, s_n, s_c, s_w
    if w == 1:
        return t, s_n, s_c, s_h
    if s_h == w * s_w:
        return t, s_n, s_c, s_w
    t = t.contiguous()
    return (t,) + t.stride()[:2] + (1,)


class TritonBatchNorm:
    """Launches the Triton batch-norm kernels on (N, C, H, W) tensors with C-sized statistics."""

    kernels = triton_bn_kernels
    block = 256  # values per tile (a power of two)
    tiles_per_program = 4  # tiles each program reduces before the cross-program merge
    max_programs = 64  # cap on programs per channel; beyond it programs get longer

    # -- tiling ------------------------------------------------------------------------------
    def accumulator(self, dtype: torch.dtype) -> torch.dtype:
        """Accumulate half inputs in float32 (their 11 or 8 bits cannot hold a long sum)."""
        return stat_dtype(dtype)

    def programs(self, values: int, chunk: int) -> int:
        """Programs per channel for `values` values at most `chunk` per program."""
        return triton.cdiv(values, chunk)

    def split(self, values: int) -> tuple:
        """(programs per channel, values per program), the latter a whole number of tiles."""
        chunk = self.block * self.tiles_per_program
        if triton.cdiv(values, chunk) > self.max_programs:
            chunk = triton.cdiv(triton.cdiv(values, self.max_programs), self.block) * self.block
        return self.programs(values, chunk), chunk

    def _check_device(self, t: Tensor) -> None:
        if t.device.type == "cpu" and not is_interpreted(self.kernels.channel_affine_kernel):
            raise RuntimeError(
                "the Triton kernels were compiled for a GPU but the tensors are on the CPU: set "
                "TRITON_INTERPRET=1 before fused.triton_bn is imported to run them on Triton's "
                f"CPU interpreter (TRITON_INTERPRET is {'on' if interpreting() else 'off'} now)"
            )

    # -- forward -----------------------------------------------------------------------------
    def moments(self, y: Tensor, stat_dtype: torch.dtype):
        """Per-channel (mean, biased variance) of y in `stat_dtype`: a split Welford reduction."""
        self._check_device(y)
        y, s_n, s_c, s_hw = _channel_strides(y)
        batch, channels, height, width = y.shape
        values = batch * height * width
        programs, chunk = self.split(values)
        acc = self.accumulator(y.dtype)
        count, mean, m2 = (
            torch.empty(channels, programs, dtype=acc, device=y.device) for _ in range(3)
        )
        self.kernels.welford_partials_kernel[(channels, programs)](
            y,
            count,
            mean,
            m2,
            values,
            height * width,
            s_n,
            s_c,
            s_hw,
            chunk,
            BLOCK=self.block,
            ACC=_TL_DTYPES[acc],
        )
        channel_mean = torch.empty(channels, dtype=stat_dtype, device=y.device)
        channel_var = torch.empty_like(channel_mean)
        self._merge(
            self.kernels.welford_merge_kernel, programs, count, mean, m2, channel_mean, channel_var
        )
        return channel_mean, channel_var

    def normalize_(self, y: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        """y * scale + shift per channel, written into y (a buffer the caller owns)."""
        self._check_device(y)
        return self._channel_affine(y, None, scale, None, shift, out=None)

    # -- backward ----------------------------------------------------------------------------
    def grad_sums(self, grad_out: Tensor, y, mean: Tensor):
        """Per-channel (sum(g), sum(g * (y - mean))) in mean's dtype; the second is None when y
        is None (eval mode, where only sum(g) is needed)."""
        self._check_device(grad_out)
        g, g_n, g_c, g_hw = _channel_strides(grad_out)
        centred = y is not None
        y, y_n, y_c, y_hw = _channel_strides(y) if centred else (g, g_n, g_c, g_hw)
        batch, channels, height, width = g.shape
        values = batch * height * width
        programs, chunk = self.split(values)
        acc = self.accumulator(g.dtype)
        part_g, part_gd = (
            torch.empty(channels, programs, dtype=acc, device=g.device) for _ in range(2)
        )
        self.kernels.grad_partials_kernel[(channels, programs)](
            g,
            y,
            mean.contiguous(),
            part_g,
            part_gd,
            values,
            height * width,
            g_n,
            g_c,
            g_hw,
            y_n,
            y_c,
            y_hw,
            chunk,
            BLOCK=self.block,
            ACC=_TL_DTYPES[acc],
            CENTRED=centred,
        )
        sum_g = torch.empty(channels, dtype=mean.dtype, device=g.device)
        sum_gd = torch.empty_like(sum_g)
        self._merge(self.kernels.sum_partials_kernel, programs, part_g, part_gd, sum_g, sum_gd)
        return sum_g, (sum_gd if centred else None)

    @staticmethod
    def _merge(kernel, programs: int, *partials_then_results: Tensor) -> None:
        """Launch a merge of each channel's `programs` partial results: one program per channel
        (the channel count is the results' length), all partials in one block."""
        channels = partials_then_results[-1].shape[0]
        block = max(2, triton.next_power_of_2(programs))
        kernel[(channels,)](*partials_then_results, programs, BLOCK_P=block)

    def input_grad(self, grad_out: Tensor, y, a: Tensor, b, k) -> Tensor:
        """a * g + b * y + k per channel (training), or a * g (eval: b and k None). Written
        into y when given (the recomputed conv output, a buffer the caller owns)."""
        self._check_device(grad_out)
        if b is None:
            out = y
            if out is None:
                out = torch.empty(grad_out.shape, dtype=grad_out.dtype, device=grad_out.device)
            return self._channel_affine(grad_out, None, a, None, None, out=out)
        return self._channel_affine(grad_out, y, a, b, k, out=None)

    def _channel_affine(self, u: Tensor, v, a: Tensor, b, k, out) -> Tensor:
        """a * u (+ b * v) (+ k) per channel, written into `out`, or with out None into the last
        operand given (v, else u). Returns the tensor written: that operand itself unless
        folding its H and W into one stride had to copy it."""
        u, u_n, u_c, u_hw = _channel_strides(u)
        with_v, with_k = v is not None, k is not None
        v, v_n, v_c, v_hw = _channel_strides(v) if with_v else (u, u_n, u_c, u_hw)
        if out is None:
            o, o_n, o_c, o_hw = v, v_n, v_c, v_hw
        else:
            o, o_n, o_c, o_hw = _channel_strides(out)
        batch, channels, height, width = u.shape
        values = batch * height * width
        programs, chunk = self.split(values)
        self.kernels.channel_affine_kernel[(channels, programs)](
            u,
            v,
            o,
            a.contiguous(),
            (b if with_v else a).contiguous(),
            (k if with_k else a).contiguous(),
            values,
            height * width,
            u_n,
            u_c,
            u_hw,
            v_n,
            v_c,
            v_hw,
            o_n,
            o_c,
            o_hw,
            chunk,
            BLOCK=self.block,
            ACC=_TL_DTYPES[self.accumulator(u.dtype)],
            WITH_V=with_v,
            WITH_K=with_k,
        )
        return o
