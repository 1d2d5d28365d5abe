"""Shared helpers of the oracle's tests: cases, a torch float64 re-derivation, finite differences.

Each ``check_*`` function raises AssertionError on a disagreement, so that the same function is
used by the tests and by ``test_tests_catch_bugs.py``, which plants bugs in the oracle and
expects these checks to fail. Every call into the oracle goes through the ``reference`` package
attributes at call time so that monkeypatched bugs are seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import assume
from hypothesis import strategies as st

import reference

PARAMS = ("x", "weight", "bias", "bn_weight", "bn_bias")  # differentiable, in gradient order
ARGS = PARAMS + ("running_mean", "running_var")


@dataclasses.dataclass
class Case:
    """One conv_bn call: arrays (None where absent), keywords and the upstream gradient."""

    x: np.ndarray
    weight: np.ndarray
    bias: np.ndarray | None
    bn_weight: np.ndarray | None
    bn_bias: np.ndarray | None
    running_mean: np.ndarray | None
    running_var: np.ndarray | None
    grad_out: np.ndarray
    kwargs: dict

    def args(self):
        return tuple(getattr(self, name) for name in ARGS)

    def forward(self, **overrides):
        args = dict(zip(ARGS, self.args(), strict=True), **overrides)
        return reference.conv_bn(*(args[name] for name in ARGS), **self.kwargs)

    def backward(self):
        return reference.conv_bn_backward(self.grad_out, *self.args(), **self.kwargs)


def make_case(
    seed=0,
    *,
    n=2,
    groups=1,
    c_in_per_group=2,
    c_out_per_group=2,
    hw=(5, 5),
    kernel=(3, 3),
    stride=1,
    padding=0,
    dilation=1,
    bias=True,
    bn_weight=True,
    bn_bias=True,
    running_stats=True,
    training=True,
    momentum=0.1,
    eps=1e-3,
    form="tutorial",
    x_offset=0.0,
):
    """A random case from a seed; every feature is a keyword."""
    rng = np.random.default_rng(seed)
    c_in, c_out = groups * c_in_per_group, groups * c_out_per_group
    x = rng.standard_normal((n, c_in, *hw)) + x_offset
    weight = rng.standard_normal((c_out, c_in_per_group, *kernel))

    def vec(flag, lo=-1.0, hi=1.0):
        return rng.uniform(lo, hi, c_out) if flag else None

    kwargs = dict(
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        training=training,
        momentum=momentum,
        eps=eps,
        form=form,
    )
    conv_kw = {k: kwargs[k] for k in ("stride", "padding", "dilation")}
    out_shape = reference.conv2d_output_shape(x.shape, weight.shape, **conv_kw)
    return Case(
        x=x,
        weight=weight,
        bias=vec(bias),
        bn_weight=vec(bn_weight, 0.5, 2.0),
        bn_bias=vec(bn_bias),
        running_mean=vec(running_stats),
        running_var=vec(running_stats, 0.5, 2.0),
        grad_out=rng.standard_normal(out_shape),
        kwargs=kwargs,
    )


# A handful of fixed cases that between them use every feature in both forms and both modes;
# used where a test must run quickly and deterministically (planted-bug checks).
FIXED_CASES = [
    make_case(
        1,
        form=form,
        training=training,
        padding=pad,
        stride=stride,
        dilation=dil,
        groups=groups,
        bias=bias,
        bn_weight=affine,
        bn_bias=affine,
        momentum=0.3,
        eps=eps,
        running_stats=running or not training,
    )
    for form in reference.FORMS
    for training in (True, False)
    for pad, stride, dil, groups, bias, affine, running, eps in (
        (0, 1, 1, 1, False, False, False, 1e-3),
        ((1, 2), (2, 1), (1, 2), 2, True, True, True, 1e-2),
    )
]


@st.composite
def cases(draw, *, forms=None, training=None, x_offsets=(0.0, 3.0, 100.0)):
    """Hypothesis strategy over every feature: shapes, stride/padding/dilation (int or pair),
    groups, optional bias/affine/running stats, momentum, eps, form, mode. A large x offset
    (|mean| >> std) exercises the two-pass variance."""
    form = draw(st.sampled_from(forms or reference.FORMS))
    training = draw(st.booleans()) if training is None else training
    groups = draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))

    def int_or_pair(lo, hi):
        return draw(
            st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi)))
        )

    stride, padding, dilation = int_or_pair(1, 3), int_or_pair(0, 2), int_or_pair(1, 2)
    p, d = reference.as_pair(padding, "padding"), reference.as_pair(dilation, "dilation")
    # Smallest input size with a non-empty output, plus a few.
    hw = tuple(
        max(1, d[i] * (kernel[i] - 1) + 1 - 2 * p[i]) + draw(st.integers(0, 4)) for i in range(2)
    )
    running = True if not training else draw(st.booleans())
    case = make_case(
        draw(st.integers(0, 2**32 - 1)),
        n=draw(st.integers(1, 3)),
        groups=groups,
        c_in_per_group=draw(st.integers(1, 2)),
        c_out_per_group=draw(st.integers(1, 2)),
        hw=hw,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=draw(st.booleans()),
        bn_weight=draw(st.booleans()),
        bn_bias=draw(st.booleans()),
        running_stats=running,
        training=training,
        momentum=draw(st.floats(0.0, 1.0)),
        eps=draw(st.sampled_from([1e-5, 1e-3, 0.1, 1.0])),
        form=form,
        x_offset=draw(st.sampled_from(x_offsets)),
    )
    n, _, h_out, w_out = case.grad_out.shape
    assume(not training or n * h_out * w_out >= 2)
    return case


# ---------------------------------------------------------------------------------------------
# PyTorch float64 re-derivation (independent of the oracle's code)


def _c(v):
    return v[None, :, None, None]


@contextlib.contextmanager
def torch_single_thread():
    """Tiny tensors: torch's intra-op thread pool only adds wake-up latency (tens of ms per
    call on a busy 2-core machine). The previous setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_conv_bn(case):
    with torch_single_thread():
        return _torch_conv_bn(case)


def _torch_conv_bn(case):
    """Forward, running stats and the five gradients by F.conv2d, F.batch_norm (standard form)
    or the tutorial formula written out, and autograd; plus ``scales`` for the error bounds."""
    kw = case.kwargs
    conv_kw = dict(
        stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"], groups=kw["groups"]
    )

    def leaf(a):
        return None if a is None else torch.tensor(a, dtype=torch.float64, requires_grad=True)

    x, weight, bias, bn_weight, bn_bias = (leaf(getattr(case, p)) for p in PARAMS)
    rm = None if case.running_mean is None else torch.tensor(case.running_mean)
    rv = None if case.running_var is None else torch.tensor(case.running_var)
    y = F.conv2d(x, weight, bias, **conv_kw)
    eps, momentum, training = kw["eps"], kw["momentum"], kw["training"]
    if training:
        var_u = y.detach().var(dim=(0, 2, 3), unbiased=True)
        var_b = y.detach().var(dim=(0, 2, 3), unbiased=False)
    if kw["form"] == "standard":
        denom = (var_b if training else rv).add(eps).sqrt()
        out = F.batch_norm(
            y, rm, rv, bn_weight, bn_bias, training=training, momentum=momentum, eps=eps
        )  # updates rm, rv in place
    else:
        denom = (var_u if training else rv).sqrt() + eps
        if training:
            mean = y.mean(dim=(0, 2, 3))
            var = y.var(dim=(0, 2, 3), unbiased=True)
            out = (y - _c(mean)) / (_c(var.sqrt()) + eps)
            if rm is not None:
                rm = (1 - momentum) * rm + momentum * mean.detach()
                rv = (1 - momentum) * rv + momentum * var.detach()
        else:
            out = (y - _c(rm)) / (_c(rv.sqrt()) + eps)
        if bn_weight is not None:
            out = out * _c(bn_weight)
        if bn_bias is not None:
            out = out + _c(bn_bias)
    g = torch.tensor(case.grad_out)
    out.backward(g)

    def np_(t):
        return None if t is None else t.detach().numpy()

    # Size of the terms each gradient is summed from, for bounds that do not demand more
    # digits than a result built by cancellation can have. Per channel, every term of the
    # batch-norm gradient at y is at most t_c = (max|gh| + |gh|_2) / denom (Cauchy-Schwarz on
    # the variance term); the conv gradients then sum t_c times |x| or |weight|.
    gh = g.abs() * (1 if bn_weight is None else _c(bn_weight.detach().abs()))
    t = (gh.amax(dim=(0, 2, 3)) + gh.pow(2).sum(dim=(0, 2, 3)).sqrt()) / denom
    t_map = _c(t).expand_as(g)
    ax = x.detach().abs().requires_grad_()
    aw = weight.detach().abs().requires_grad_()
    F.conv2d(ax, aw, **conv_kw).backward(t_map)
    scales = dict(
        x=ax.grad.abs().max().item(),
        weight=aw.grad.abs().max().item(),
        bias=t_map.sum(dim=(0, 2, 3)).max().item(),
        bn_weight=(g.abs() * (y.detach() - _c(y.detach().mean(dim=(0, 2, 3)))).abs() / _c(denom))
        .sum(dim=(0, 2, 3))
        .max()
        .item(),
        bn_bias=g.abs().sum(dim=(0, 2, 3)).max().item(),
    )
    grads = tuple(None if p is None else np_(p.grad) for p in (x, weight, bias, bn_weight, bn_bias))
    centre = y.detach().mean(dim=(0, 2, 3)) if training else torch.tensor(case.running_mean)
    # Forward rounding: out = (y - centre) / denom * bn_weight + bn_bias is computed with an
    # absolute error of a few eps_mach times this per element.
    bn_w = 1 if bn_weight is None else _c(bn_weight.detach().abs())
    bn_b = 0 if bn_bias is None else _c(bn_bias.detach().abs())
    out_rounding = (y.detach().abs() + _c(centre.abs())) / _c(denom) * bn_w + bn_b
    return dict(
        out=np_(out),
        running_mean=np_(rm),
        running_var=np_(rv),
        grads=grads,
        scales=scales,
        out_rounding=np_(out_rounding),
    )


def channels_well_spread(case):
    """False for a training case with a (nearly) constant conv-output channel, e.g. one whose
    outputs only read padding. There torch's autograd of the tutorial form is NaN (sqrt'(0) is
    inf), both implementations lose the digits of y - mean, and the tutorial form's loss has a
    kink that finite differences cannot resolve. The hand cases cover that channel instead."""
    if not case.kwargs["training"]:
        return True
    x, w = torch.tensor(case.x), torch.tensor(case.weight)
    kw = case.kwargs
    with torch_single_thread():
        y = F.conv2d(
            x,
            w,
            stride=kw["stride"],
            padding=kw["padding"],
            dilation=kw["dilation"],
            groups=kw["groups"],
        ).numpy()
    spread = y.std(axis=(0, 2, 3))
    scale = np.abs(y).max(axis=(0, 2, 3)) + 1.0
    return bool(np.all(spread > 1e-4 * scale))


def norm_rel_error(got, want, floor=0.0):
    """max|got - want| / max(max|want|, floor): the error relative to the tensor's size."""
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.max(np.abs(got - want)) if got.size else 0.0
    return err / max(np.max(np.abs(want)) if want.size else 0.0, floor, np.finfo(float).tiny)


RTOL = 1e-9


def check_against_torch(case, rtol=RTOL):
    """Assert the oracle agrees with torch float64 on every output; returns the errors.

    Bound, per tensor: max|oracle - torch| <= rtol * max(max|torch|, scale). Norm-relative,
    because an elementwise relative bound fails on entries that are near zero by cancellation,
    whose absolute error is still ~eps_mach times the tensor's scale. For the gradients the
    scale also includes the size of the terms they are summed from (see torch_conv_bn): e.g.
    the conv-bias gradient in training is exactly zero in exact arithmetic, so both sides
    return rounding noise of size eps_mach * sum|dL/dy|, and with two values per channel
    dL/dy itself is a near-total cancellation. Two float64 implementations agree to
    ~1e-15..1e-13 in this measure; rtol = 1e-9 leaves room for conditioning, while formula
    errors (biased vs unbiased variance, eps placement, a dropped term) are >= 1e-6.
    """
    want = torch_conv_bn(case)
    out, new_rm, new_rv = case.forward()
    grads = case.backward()
    errors = {"out": norm_rel_error(out, want["out"])}
    for name, got in (("running_mean", new_rm), ("running_var", new_rv)):
        if want[name] is None:
            assert got is None, f"{name}: expected None"
        else:
            errors[name] = norm_rel_error(got, want[name])
    for name, got, ref in zip(PARAMS, grads, want["grads"], strict=True):
        if ref is None:
            assert got is None, f"grad_{name}: expected None for an absent input"
            continue
        errors["grad_" + name] = norm_rel_error(got, ref, want["scales"][name])
    bad = {k: v for k, v in errors.items() if not v <= rtol}
    assert not bad, f"oracle vs torch float64, norm-relative errors above {rtol}: {bad}"
    return errors


# ---------------------------------------------------------------------------------------------
# Finite differences on the oracle's own forward


def directional_fd(f, p, v, h):
    """Fourth-order central difference of f along v: error O(h^4 f^(5)) + O(eps_mach f / h)."""
    return (8 * (f(p + h * v) - f(p - h * v)) - (f(p + 2 * h * v) - f(p - 2 * h * v))) / (12 * h)


def check_finite_differences(case, rtol=1e-6, seed=0):
    """Assert <grad_p, v> matches the derivative of L = sum(grad_out * out) along a random
    direction v, for every differentiable input p present.

    Direction and step: v_i = r_i (|p_i| + 1e-3 rms(p)) with r ~ N(0, 1), so that each entry
    moves in proportion to its own size (a weight channel of 0.004 against eps = 1e-5
    normalises on the scale of that channel's weights, not of the largest), and
    h = 1e-3, then 1e-4, then 1e-5 until one agrees: the 5-point stencil's O(h^4) truncation
    is relative to the scale on which the loss bends, which is the spread of each channel of
    y = conv(x) and can sit well below |y| (two nearly equal values in a channel); its rounding
    error is about eps_mach * sum(|grad_out| * out_rounding) / h (out_rounding: torch_conv_bn's
    forward error scale). A wrong gradient disagrees at every step.
    Bound: |fd - <g, v>| <= rtol |g|_2 |v|_2 + 10 * that rounding. |g|_2 |v|_2 is the
    Cauchy-Schwarz size of the directional derivative, so a direction nearly orthogonal to g is
    not over-demanding; the rounding term covers gradients that are exactly zero (the conv bias
    in training), where fd is pure rounding noise.
    """
    rng = np.random.default_rng(seed)
    grads = case.backward()
    out_rounding = torch_conv_bn(case)["out_rounding"]
    noise = 2 * np.finfo(float).eps * np.sum(np.abs(case.grad_out) * out_rounding)

    def loss(name):
        def f(p):
            return float(np.sum(case.grad_out * case.forward(**{name: p})[0]))

        return f

    failures = {}
    for name, g in zip(PARAMS, grads, strict=True):
        p = getattr(case, name)
        if p is None:
            assert g is None, f"grad_{name}: expected None for an absent input"
            continue
        rms = np.sqrt(np.mean(p**2))
        v = rng.standard_normal(p.shape) * (np.abs(p) + 1e-3 * rms + 1e-300)
        analytic = float(np.sum(g * v))
        size = np.linalg.norm(g) * np.linalg.norm(v)
        tried = []
        for h in (1e-3, 1e-4, 1e-5):
            tried.append(directional_fd(loss(name), p, v, h))
            if abs(tried[-1] - analytic) <= rtol * size + 10 * noise / h:
                break
        else:
            failures[name] = (tried, analytic)
    assert not failures, f"finite differences ([fd per step], analytic gradient): {failures}"


def no_warnings(fn, *args, **kwargs):
    """Call fn, turning any warning into an error (independent of the pytest config)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)
