"""2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``) and its gradients.

With the input padded to ``xp`` and channels split into ``groups`` blocks of ``Cg`` inputs and
``Og`` outputs,

    y[n, g*Og + o, h, w] = bias[g*Og + o]
        + sum_{c, i, j} xp[n, g*Cg + c, h*sh + i*dh, w*sw + j*dw] * weight[g*Og + o, c, i, j]

Each op reads the padded input through one strided window view (no copy) and contracts it with a
single einsum, so there is no Python loop over pixels, batch elements or kernel taps.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .validation import check_conv_args, check_spatial_args, quiet_on_nonfinite


def conv2d_output_shape(x_shape, weight_shape, *, stride=1, padding=0, dilation=1):
    """(N, C_out, H_out, W_out) with H_out = (H + 2 p - d (kH - 1) - 1) // s + 1.

    Checks the spatial arguments (ValueError on an empty output), not the channel counts.
    """
    (sh, sw), (ph, pw), (dh, dw) = check_spatial_args(
        x_shape, weight_shape, stride=stride, padding=padding, dilation=dilation
    )
    n, _, h, w = x_shape
    c_out, _, kh, kw = weight_shape
    return (
        n,
        c_out,
        (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
        (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1,
    )


def _windows(a, groups, kernel, stride, dilation, out_hw):
    """Read-only view ``v[n, g, c, h, w, i, j] = a[n, g*Cg + c, h*sh + i*dh, w*sw + j*dw]``."""
    n, channels = a.shape[:2]
    s_n, s_c, s_h, s_w = a.strides
    cg = channels // groups
    return as_strided(
        a,
        shape=(n, groups, cg, *out_hw, *kernel),
        strides=(
            s_n,
            cg * s_c,
            s_c,
            s_h * stride[0],
            s_w * stride[1],
            s_h * dilation[0],
            s_w * dilation[1],
        ),
        writeable=False,
    )


def _group_einsum(spec, *operands):
    """``np.einsum(spec, *operands)`` where ``g`` subscripts the group axis.

    einsum only hands a contraction to BLAS when no axis is shared by both operands and the
    output; the group axis is such a batch axis, so with a single group it is dropped first
    (2-3x faster on the benchmark shape).
    """
    inputs, output = spec.split("->")
    subscripts = inputs.split(",")
    if any(op.shape[sub.index("g")] != 1 for sub, op in zip(subscripts, operands, strict=True)):
        return np.einsum(spec, *operands, optimize=True)
    squeezed = [
        op[(slice(None),) * sub.index("g") + (0,)]
        for sub, op in zip(subscripts, operands, strict=True)
    ]
    result = np.einsum(spec.replace("g", ""), *squeezed, optimize=True)
    return np.expand_dims(result, output.index("g"))


def _pad(x, padding):
    """x with zero borders of ``padding`` rows and columns (np.pad costs more on tiny inputs)."""
    ph, pw = padding
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


@quiet_on_nonfinite
def conv2d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1):
    """Forward convolution; float64 arrays in, a new float64 array (N, C_out, H_out, W_out) out."""
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    stride, padding, dilation, groups = check_conv_args(
        x.shape, weight.shape, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    n, c_out, h_out, w_out = conv2d_output_shape(
        x.shape, weight.shape, stride=stride, padding=padding, dilation=dilation
    )
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64)
        if bias.shape != (c_out,):
            raise ValueError(f"bias must have shape ({c_out},), got {bias.shape}")
    _, c_in_g, kh, kw = weight.shape
    win = _windows(_pad(x, padding), groups, (kh, kw), stride, dilation, (h_out, w_out))
    w_g = weight.reshape(groups, c_out // groups, c_in_g, kh, kw)
    y = _group_einsum("ngchwij,gocij->ngohw", win, w_g)
    y = y.reshape(n, c_out, h_out, w_out)
    if bias is not None:
        y += bias[:, None, None]
    return y


@quiet_on_nonfinite
def conv2d_backward(
    grad_y, x, weight, *, has_bias=False, stride=1, padding=0, dilation=1, groups=1
):
    """Gradients of ``sum(grad_y * conv2d(x, weight, bias))``.

    Returns ``(grad_x, grad_weight, grad_bias)``; grad_bias is None unless ``has_bias``.

    - grad_weight[g*Og+o, c, i, j] = sum_{n,h,w} grad_y[n, g*Og+o, h, w]
      * xp[n, g*Cg+c, h*sh + i*dh, w*sw + j*dw]: one einsum of grad_y with the forward's
      window view.
    - grad_x: each input pixel collects grad_y * weight from every window that read it. Placing
      grad_y on a zero grid at stride ``s`` (the "dilated" grad_y) with ``d (k - 1)`` zeros in
      front turns this into a stride-1 correlation, dilation ``d``, with the kernel flipped in
      space and transposed in channels; it yields the gradient of the padded input, which is
      then cropped.
    - grad_bias = sum of grad_y over (N, H, W).
    """
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    grad_y = np.asarray(grad_y, dtype=np.float64)
    stride, padding, dilation, groups = check_conv_args(
        x.shape, weight.shape, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    y_shape = conv2d_output_shape(
        x.shape, weight.shape, stride=stride, padding=padding, dilation=dilation
    )
    if grad_y.shape != y_shape:
        raise ValueError(
            f"grad_y must have the output's shape {y_shape}, got {grad_y.shape} "
            f"(x shape {x.shape}, weight shape {weight.shape})"
        )
    n, c_out, h_out, w_out = y_shape
    _, c_in, h, w = x.shape
    _, c_in_g, kh, kw = weight.shape
    o_g = c_out // groups
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    w_g = weight.reshape(groups, o_g, c_in_g, kh, kw)
    gy_g = grad_y.reshape(n, groups, o_g, h_out, w_out)

    win = _windows(_pad(x, padding), groups, (kh, kw), stride, dilation, (h_out, w_out))
    grad_w = _group_einsum("ngohw,ngchwij->gocij", gy_g, win)
    grad_w = grad_w.reshape(weight.shape)

    hp, wp = h + 2 * ph, w + 2 * pw
    lead_h, lead_w = dh * (kh - 1), dw * (kw - 1)
    # Zero grid big enough for a full correlation over the padded input: lead zeros, grad_y at
    # stride s, and trailing zeros up to the rows/columns the forward never reached.
    spread = np.zeros((n, c_out, hp + lead_h, wp + lead_w))
    spread[
        :,
        :,
        lead_h : lead_h + (h_out - 1) * sh + 1 : sh,
        lead_w : lead_w + (w_out - 1) * sw + 1 : sw,
    ] = grad_y
    spread_win = _windows(spread, groups, (kh, kw), (1, 1), dilation, (hp, wp))
    w_flip = w_g[..., ::-1, ::-1]
    grad_xp = _group_einsum("ngohwij,gocij->ngchw", spread_win, w_flip)
    grad_x = grad_xp.reshape(n, c_in, hp, wp)[:, :, ph : ph + h, pw : pw + w].copy()

    grad_b = grad_y.sum(axis=(0, 2, 3)) if has_bias else None
    return grad_x, grad_w, grad_b
