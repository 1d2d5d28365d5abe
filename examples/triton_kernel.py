"""A fused Conv2d+BatchNorm variant whose batch norm is a Triton kernel, ready to fuzz on a laptop:

    pytest verify --variant examples/triton_kernel.py:VARIANT

Without a GPU the suite runs the kernel on Triton's CPU interpreter (it sets TRITON_INTERPRET=1
before this file is imported; `--triton-interpret` forces it on a GPU machine too). The variant
says it is a Triton kernel with `triton=True`, so the suite skips the benchmarks, which would
only time the interpreter.

Forward: one Triton program per channel computes the mean, the (two-pass) variance and writes the
normalised, affine output. Backward: the standard batch-norm gradient in torch ops, from the
recomputed conv output (only x is saved, as in the tutorial). Standard form, every conv option,
affine; no running statistics (so eval mode is not declared either).
"""

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from fused import Variant

BLOCK = 256


@triton.jit
def _bn_forward_kernel(
    y_ptr, out_ptr, gamma_ptr, beta_ptr, eps_ptr, mean_ptr, rstd_ptr, N, C, HW, BLOCK: tl.constexpr
):
    c = tl.program_id(0)
    R = N * HW
    lanes = tl.arange(0, BLOCK)
    total = tl.zeros([BLOCK], tl.float64)
    for first in range(0, R, BLOCK):
        i = first + lanes
        n = i // HW
        v = tl.load(y_ptr + (n * C + c) * HW + i - n * HW, mask=i < R, other=0.0)
        total += v.to(tl.float64)
    mean = tl.sum(total, axis=0) / R
    squares = tl.zeros([BLOCK], tl.float64)
    for first in range(0, R, BLOCK):
        i = first + lanes
        n = i // HW
        v = tl.load(y_ptr + (n * C + c) * HW + i - n * HW, mask=i < R, other=0.0)
        d = tl.where(i < R, v.to(tl.float64) - mean, 0.0)  # padding must not add mean^2
        squares += d * d
    # eps comes as a float64 tensor: a Python float argument would be rounded to float32.
    rstd = 1.0 / tl.sqrt(tl.sum(squares, axis=0) / R + tl.load(eps_ptr))
    scale = rstd * tl.load(gamma_ptr + c).to(tl.float64)
    shift = tl.load(beta_ptr + c).to(tl.float64) - mean * scale
    for first in range(0, R, BLOCK):
        i = first + lanes
        n = i // HW
        offset = (n * C + c) * HW + i - n * HW
        v = tl.load(y_ptr + offset, mask=i < R, other=0.0)
        tl.store(
            out_ptr + offset,
            (v.to(tl.float64) * scale + shift).to(out_ptr.dtype.element_ty),
            mask=i < R,
        )
    tl.store(mean_ptr + c, mean)
    tl.store(rstd_ptr + c, rstd)


def _batch_norm_forward(y, gamma, beta, eps):
    y = y.contiguous()
    batch, channels, height, width = y.shape
    out = torch.empty_like(y)
    mean = torch.empty(channels, dtype=torch.float64, device=y.device)
    rstd = torch.empty_like(mean)
    eps = torch.tensor([eps], dtype=torch.float64, device=y.device)
    _bn_forward_kernel[(channels,)](
        y,
        out,
        gamma.contiguous(),
        beta.contiguous(),
        eps,
        mean,
        rstd,
        batch,
        channels,
        height * width,
        BLOCK=BLOCK,
    )
    return out, mean, rstd


class _ConvBN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, gamma, beta, conv, eps):
        y = F.conv2d(x, weight, bias, **conv)
        if y.numel() // y.shape[1] < 2:
            raise ValueError("expected more than 1 value per channel when training")
        out, mean, rstd = _batch_norm_forward(y, gamma, beta, eps)
        ctx.save_for_backward(x, weight, bias, gamma, mean, rstd)
        ctx.conv = conv
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias, gamma, mean, rstd = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_() for t in (x, weight)]
            conv_bias = None if bias is None else bias.detach().requires_grad_()
            y = F.conv2d(*leaves, conv_bias, **ctx.conv)  # recomputed, not saved
        g = grad_out.to(torch.float64)
        xhat = (y.detach().to(torch.float64) - mean.view(-1, 1, 1)) * rstd.view(-1, 1, 1)
        sum_g = g.sum(dim=(0, 2, 3))
        sum_gx = (g * xhat).sum(dim=(0, 2, 3))
        n = g.numel() // g.shape[1]
        grad_y = (gamma.to(torch.float64) * rstd).view(-1, 1, 1) * (
            g - (sum_g / n).view(-1, 1, 1) - xhat * (sum_gx / n).view(-1, 1, 1)
        )
        inputs = leaves + ([conv_bias] if conv_bias is not None else [])
        grads = torch.autograd.grad(y, inputs, grad_y.to(y.dtype))
        grad_bias = grads[2] if bias is not None else None
        return (
            grads[0],
            grads[1],
            grad_bias,
            sum_gx.to(gamma.dtype),
            sum_g.to(gamma.dtype),
            None,
            None,
        )


def conv_bn(
    x,
    weight,
    bias=None,
    bn_weight=None,
    bn_bias=None,
    running_mean=None,
    running_var=None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    training=True,
    momentum=0.1,
    eps=1e-3,
):
    channels = weight.shape[0]
    gamma = (
        bn_weight if bn_weight is not None else torch.ones(channels, dtype=x.dtype, device=x.device)
    )
    beta = bn_bias if bn_bias is not None else torch.zeros(channels, dtype=x.dtype, device=x.device)
    for name, t in (("bn_weight", gamma), ("bn_bias", beta)):
        if t.shape != (channels,):
            raise ValueError(f"{name} must have shape ({channels},), got {tuple(t.shape)}")
    conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return _ConvBN.apply(x, weight, bias, gamma, beta, conv, float(eps))


VARIANT = Variant(
    "my_triton_conv_bn",
    conv_bn,
    form="standard",
    supports={"stride", "padding", "dilation", "groups", "bias", "affine"},
    memory_saving=True,
    triton=True,
)
