"""Helpers for tests/fused/test_{functional,tutorial_function,layer,custom_op}.py: float64 inputs
for a config and the expected results from the NumPy oracle (`reference`), falling back to eager
torch float64 when the oracle is not importable."""
from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # the NumPy oracle (float64); eager torch float64 otherwise
    import reference as _reference
except ImportError:  # pragma: no cover - depends on the checkout
    _reference = None

DT = torch.float64
KW = ("stride", "padding", "dilation", "groups", "training", "momentum", "eps", "form")


def make_case(*, N=3, C_in=4, H=7, W=6, C_out=6, k=(3, 2), groups=1, bias=False, affine=False,
              running=False, seed=0, dtype=DT, **kwargs):
    """(tensors, kwargs): tensors = [x, weight, bias, bn_weight, bn_bias, running_mean,
    running_var] with None for absent ones; x/weight/bias/bn params require grad."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, offset=0.0):
        return (torch.randn(*shape, generator=g, dtype=DT) * scale + offset).to(dtype)

    x = rnd(N, C_in, H, W).requires_grad_()
    w = rnd(C_out, C_in // groups, *k, scale=0.5).requires_grad_()
    b = rnd(C_out).requires_grad_() if bias else None
    bw = rnd(C_out, scale=0.5, offset=1.0).requires_grad_() if affine else None
    bb = rnd(C_out).requires_grad_() if affine else None
    rm = rnd(C_out) if running else None
    rv = (torch.rand(C_out, generator=g, dtype=DT) + 0.5).to(dtype) if running else None
    kwargs.setdefault("groups", groups)
    return [x, w, b, bw, bb, rm, rv], kwargs


def clone_tensors(tensors):
    return [None if t is None else t.detach().clone().requires_grad_(t.requires_grad)
            for t in tensors]


def _np(t):
    return None if t is None else t.detach().numpy()


def expected(tensors, grad_out, **kw):
    """(out, new_running_mean, new_running_var, grads[5]) for float64 tensors."""
    kw = {k: v for k, v in kw.items() if k in KW}
    kw.setdefault("form", "standard")
    if _reference is not None:
        args = [_np(t) for t in tensors]
        out, rm, rv = _reference.conv_bn(*args, **kw)
        grads = _reference.conv_bn_backward(_np(grad_out), *args, **kw)
        as_t = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
        return as_t(out), as_t(rm), as_t(rv), [as_t(gr) for gr in grads]
    return _eager_expected(tensors, grad_out, **kw)


def _eager_expected(tensors, grad_out, *, stride=1, padding=0, dilation=1, groups=1,
                    training=True, momentum=0.1, eps=1e-3, form="standard"):
    x, w, b, bw, bb, rm, rv = clone_tensors(tensors)
    y = F.conv2d(x, w, b, stride, padding, dilation, groups)
    if form == "standard":
        out = F.batch_norm(y, rm, rv, bw, bb, training, momentum, eps)
    else:
        if training:
            mean, var = y.mean((0, 2, 3)), y.var((0, 2, 3))
            if rm is not None:
                with torch.no_grad():
                    rm.mul_(1 - momentum).add_(momentum * mean)
                    rv.mul_(1 - momentum).add_(momentum * var)
        else:
            mean, var = rm, rv
        out = (y - mean[:, None, None]) / (var.sqrt() + eps)[:, None, None]
        if bw is not None:
            out = out * bw[:, None, None] + bb[:, None, None]
    inputs = [t for t in (x, w, b, bw, bb) if t is not None and t.requires_grad]
    got = iter(torch.autograd.grad(out, inputs, grad_out))
    grads = [next(got) if (t is not None and t.requires_grad) else None for t in (x, w, b, bw, bb)]
    return out.detach(), rm, rv, grads


def assert_close(actual, expected_, *, rtol=1e-10, atol=1e-10, what=""):
    if expected_ is None:
        assert actual is None, f"{what}: expected None"
        return
    assert actual is not None, f"{what}: got None"
    torch.testing.assert_close(actual.detach().to(expected_.dtype), expected_, rtol=rtol,
                               atol=atol, msg=lambda m: f"{what}: {m}")


def saved_bytes(fn):
    """Bytes saved for backward while running fn(), deduplicated by untyped storage, plus the
    list of saved tensors' shapes."""
    storages, shapes = {}, []

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(storages.values()), shapes, out
