"""The helpers of tests/fused: configs and inputs compared with the NumPy oracle, the calls the
argument validator rejects, float64 cases of the fused op with the oracle's expected results,
and small models for fuse_conv_bn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import reference

# --- comparing a variant fn with the NumPy oracle ---------------------------------------------

FEATURE_CONFIGS = {
    # feature -> keyword overrides of BASE_CONFIG that exercise it
    "stride": dict(stride=(2, 1)),
    "padding": dict(padding=(1, 2)),
    "dilation": dict(dilation=(2, 1), H=8, W=7),
    "groups": dict(groups=2, C_in=4, C_out=6),
    "bias": dict(bias=True),
    "affine": dict(affine=True),
    "running_stats": dict(running_stats=True, momentum=0.3),
}
BASE_CONFIG = dict(
    N=3,
    C_in=2,
    H=6,
    W=5,
    C_out=4,
    k=(3, 2),
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    bias=False,
    affine=False,
    running_stats=False,
    training=True,
    momentum=0.1,
    eps=1e-3,
)


def make_inputs(cfg, *, dtype=torch.float64, seed=0, memory_format=torch.contiguous_format):
    """Random tensors for a config; returns (x, weight, bias, bn_weight, bn_bias, rm, rv)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, positive=False):
        t = (
            torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
            if positive
            else torch.randn(shape, generator=g, dtype=torch.float64)
        )
        return t.to(dtype)

    kh, kw = cfg["k"]
    x = rnd(cfg["N"], cfg["C_in"], cfg["H"], cfg["W"]).contiguous(memory_format=memory_format)
    weight = rnd(cfg["C_out"], cfg["C_in"] // cfg["groups"], kh, kw).contiguous(
        memory_format=memory_format
    )
    bias = rnd(cfg["C_out"]) if cfg["bias"] else None
    bn_weight = rnd(cfg["C_out"], positive=True) if cfg["affine"] else None
    bn_bias = rnd(cfg["C_out"]) if cfg["affine"] else None
    if cfg["running_stats"] or not cfg["training"]:
        rm, rv = rnd(cfg["C_out"]), rnd(cfg["C_out"], positive=True)
    else:
        rm = rv = None
    return x, weight, bias, bn_weight, bn_bias, rm, rv


def config(**overrides):
    cfg = dict(BASE_CONFIG)
    for feature in overrides.pop("features", ()):
        cfg.update(FEATURE_CONFIGS[feature])
    cfg.update(overrides)
    return cfg


def _np(t):
    return None if t is None else t.detach().to(torch.float64).cpu().numpy()


def compare_with_reference(
    fn, cfg, *, form, dtype=torch.float64, seed=0, memory_format=torch.contiguous_format, call=None
):
    """Run `fn` (Variant fn signature) on cfg's inputs, forward + backward, against the oracle.

    Returns a dict name -> max abs error (relative to max(1, |ref|)) over the output, the updated
    running stats and the five gradients. `call` (default: fn itself) allows calling through a
    `Variant` object.
    """
    call = call or fn
    inputs = make_inputs(cfg, dtype=dtype, seed=seed, memory_format=memory_format)
    x, weight, bias, bn_weight, bn_bias, rm, rv = inputs
    kw = dict(
        stride=cfg["stride"],
        padding=cfg["padding"],
        dilation=cfg["dilation"],
        groups=cfg["groups"],
        training=cfg["training"],
        momentum=cfg["momentum"],
        eps=cfg["eps"],
    )
    np_in = [_np(t) for t in inputs]
    ref_out, ref_rm, ref_rv = reference.conv_bn(*np_in, form=form, **kw)
    g = torch.Generator().manual_seed(seed + 1)
    grad_out = torch.randn(ref_out.shape, generator=g, dtype=torch.float64)
    ref_grads = reference.conv_bn_backward(grad_out.numpy(), *np_in, form=form, **kw)

    leaves = [
        t.clone().requires_grad_() if t is not None else None
        for t in (x, weight, bias, bn_weight, bn_bias)
    ]
    rm_t = None if rm is None else rm.clone()
    rv_t = None if rv is None else rv.clone()
    out = call(*leaves, rm_t, rv_t, **kw)
    diff_in = [t for t in leaves if t is not None]
    grads = torch.autograd.grad(out, diff_in, grad_out.to(out.dtype))
    grads = iter(grads)
    got_grads = [None if t is None else next(grads) for t in leaves]

    def err(got, ref):
        if ref is None:
            assert got is None or got is rm_t or got is rv_t
            return 0.0
        got = _np(got)
        assert got.shape == ref.shape, (got.shape, ref.shape)
        return float(np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref)), initial=0.0))

    errors = {"out": err(out, ref_out)}
    if rm is not None:
        errors["running_mean"] = err(
            rm_t, ref_rm if cfg["training"] or ref_rm is not None else np_in[5]
        )
        errors["running_var"] = err(
            rv_t, ref_rv if cfg["training"] or ref_rv is not None else np_in[6]
        )
    for name, got, ref in zip(
        ("grad_x", "grad_weight", "grad_bias", "grad_bn_weight", "grad_bn_bias"),
        got_grads,
        ref_grads,
        strict=True,
    ):
        errors[name] = err(got, ref)
    return errors


# --- calls the one argument validator (fused.arguments.check_conv_bn_arguments) rejects -------
# name -> (changes to a valid float64 call, regex of the ValueError's message). The valid call:
# x (2, 4, 5, 5), weight (6, 4, 3, 3), running statistics of 6 channels, training. In the changes
# a tensor is given by its shape (None: not passed).
_VALID_CALL = dict(
    x=(2, 4, 5, 5),
    weight=(6, 4, 3, 3),
    bias=None,
    bn_weight=None,
    bn_bias=None,
    running_mean=(6,),
    running_var=(6,),
)
BAD_CALLS = {
    "channels": (dict(x=(2, 3, 5, 5)), "x has 3 channels"),
    "groups_div": (dict(groups=4, weight=(6, 1, 3, 3)), "divisible"),
    "groups_zero": (dict(groups=0), "groups must be a positive int"),
    "stride0": (dict(stride=0), "stride must be positive"),
    "dilation0": (dict(dilation=(1, 0)), "dilation must be positive"),
    "neg_padding": (dict(padding=-1), "padding must be non-negative"),
    "kernel_too_big": (dict(x=(2, 4, 2, 2)), "larger than the padded input"),
    "single_value": (dict(x=(1, 4, 3, 3)), r"more than 1 value per channel .*\(1, 6, 1, 1\)"),
    "eval_no_stats": (dict(training=False, running_mean=None, running_var=None), "eval mode"),
    "half_stats": (dict(running_var=None), "together"),
    "bn_weight_shape": (dict(bn_weight=(5,)), "bn_weight"),
    "running_mean_shape": (dict(running_mean=(5,)), "running_mean"),
    "running_var_shape": (dict(running_var=(7,)), "running_var"),
    "bias_shape": (dict(bias=(2,)), "bias"),
    "x_rank": (dict(x=(4, 5, 5)), "x must be 4-D"),
    "weight_rank": (dict(weight=(6, 36)), "weight must be 4-D"),
    "dtype_mismatch": (dict(weight_dtype=torch.float32), "dtype"),
    "momentum_none_no_counter": (dict(momentum=None), "num_batches_tracked"),
}


def bad_call(name: str) -> tuple[dict, str]:
    """The keyword arguments of the call `BAD_CALLS[name]`, and the regex its message must match."""
    changes, message = BAD_CALLS[name]
    changes = dict(changes)
    weight_dtype = changes.pop("weight_dtype", torch.float64)
    g = torch.Generator().manual_seed(0)
    call = {}
    for key, valid_shape in _VALID_CALL.items():
        shape = changes.pop(key, valid_shape)
        if shape is not None:
            t = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
            call[key] = t.to(weight_dtype) if key == "weight" else t
        else:
            call[key] = None
    return dict(call, **changes), message


def assert_rejected(fn, name: str) -> None:
    """`fn(**call)` for `BAD_CALLS[name]` raises ValueError with its message before touching the
    running statistics."""
    call, message = bad_call(name)
    stats = ("running_mean", "running_var")
    before = {k: call[k].clone() for k in stats if call[k] is not None}
    with pytest.raises(ValueError, match=message):
        fn(**call)
    for key, old in before.items():
        assert torch.equal(call[key], old), f"{name}: a rejected call changed {key}"


# --- float64 cases of the fused op and the oracle's results for them (test_functional,
# test_tutorial_function, test_custom_op) ------------------------------------------------------
DT = torch.float64
KW = ("stride", "padding", "dilation", "groups", "training", "momentum", "eps", "form")


def make_case(
    *,
    N=3,
    C_in=4,
    H=7,
    W=6,
    C_out=6,
    k=(3, 2),
    groups=1,
    bias=False,
    affine=False,
    running=False,
    seed=0,
    dtype=DT,
    **kwargs,
):
    """(tensors, kwargs): tensors = [x, weight, bias, bn_weight, bn_bias, running_mean,
    running_var] from `make_inputs`, with None for absent ones; x/weight/bias/bn params require
    grad. kwargs: the call's options (groups and the given ones)."""
    cfg = config(
        N=N, C_in=C_in, H=H, W=W, C_out=C_out, k=k, groups=groups, bias=bias, affine=affine
    )
    tensors = list(make_inputs(dict(cfg, running_stats=running), dtype=dtype, seed=seed))
    for t in tensors[:5]:
        if t is not None:
            t.requires_grad_()
    kwargs.setdefault("groups", groups)
    return tensors, kwargs


def clone_tensors(tensors):
    return [
        None if t is None else t.detach().clone().requires_grad_(t.requires_grad) for t in tensors
    ]


def expected(tensors, grad_out, **kw):
    """(out, new_running_mean, new_running_var, grads[5]) for float64 tensors."""
    kw = {k: v for k, v in kw.items() if k in KW}
    kw.setdefault("form", "standard")
    args = [_np(t) for t in tensors]
    out, rm, rv = reference.conv_bn(*args, **kw)
    grads = reference.conv_bn_backward(_np(grad_out), *args, **kw)
    as_t = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
    return as_t(out), as_t(rm), as_t(rv), [as_t(gr) for gr in grads]


def assert_close(actual, expected_, *, rtol=1e-10, atol=1e-10, what=""):
    if expected_ is None:
        assert actual is None, f"{what}: expected None"
        return
    assert actual is not None, f"{what}: got None"
    torch.testing.assert_close(
        actual.detach().to(expected_.dtype),
        expected_,
        rtol=rtol,
        atol=atol,
        msg=lambda m: f"{what}: {m}",
    )


# --- small models for fuse_conv_bn --------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet basic block: conv(bias, stride)-BN-ReLU, grouped conv-BN(momentum=None), shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, groups=2, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, momentum=None)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                nn.BatchNorm2d(cout, eps=1e-5, momentum=0.2),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """Traceable by torch.fx. Fusable pairs: stem, block1 (conv1/bn1, conv2/bn2), block2 (the
    same plus its shortcut), dilated/affine-free pair = 7. Not fusable: `side` (output also used
    elsewhere), `head` (no BN after it), `pad_conv` (reflect padding)."""

    n_fusable = 7

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=True), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.block1 = BasicBlock(8, 8, 1)
        self.block2 = BasicBlock(8, 12, 2)
        self.dil_conv = nn.Conv2d(12, 12, 3, padding=2, dilation=2, bias=False)
        self.dil_bn = nn.BatchNorm2d(12, affine=False, track_running_stats=False)
        self.side_conv = nn.Conv2d(12, 12, 1)
        self.side_bn = nn.BatchNorm2d(12)
        self.pad_conv = nn.Conv2d(12, 12, 3, padding=1, padding_mode="reflect")
        self.pad_bn = nn.BatchNorm2d(12)
        self.head = nn.Conv2d(12, 5, 1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = self.stem(x)
        x = self.block2(self.block1(x))
        x = F.relu(self.dil_bn(self.dil_conv(x)))
        y = self.side_conv(x)
        x = self.side_bn(y) + y  # conv output used twice: must not be fused
        x = self.pad_bn(self.pad_conv(x))
        x = self.head(x)
        return self.fc(x.mean(dim=(2, 3)))


class Flip(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace this, nor any module that calls it."""

    def forward(self, x):
        return x if x.sum() > 0 else -x


class Gate(nn.Module):
    """Untraceable (data-dependent control flow in its forward and in `features`), so
    fuse_conv_bn falls back to adjacent children of `features`, and traces `block` on its own.
    Fusable pairs: features[0]/[1], features[4] (a traceable Sequential), block's two = 4."""

    n_fusable = 4

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            Flip(),
            nn.Sequential(
                nn.Conv2d(6, 6, 3, stride=2, bias=False), nn.BatchNorm2d(6, momentum=None)
            ),
            nn.Conv2d(6, 6, 1),
            nn.ReLU(),
            nn.BatchNorm2d(6),  # not adjacent: no fusion
        )
        self.block = BasicBlock(6, 6, 1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        x = self.features(x)
        if x.mean() > 0:  # data-dependent: symbolic tracing fails here
            x = self.block(x)
        else:
            x = self.block(x * 0.5)
        return self.fc(x.mean(dim=(2, 3)))
