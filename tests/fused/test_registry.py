"""fused.registry: every built-in variant does what its `supports` declares, and no more."""

from __future__ import annotations

import pytest
import torch

from fused.registry import BUILTIN_VARIANTS, builtin_variant
from fused.variant import BN_FEATURES, CONV_FEATURES, UnsupportedFeatureError
from tests.fused.helpers import (
    FEATURE_CONFIGS,
    compare_with_reference,
    config,
    make_inputs,
)
from verify.memory import saved_tensor_bytes

CONV_BN = sorted(CONV_FEATURES | BN_FEATURES)
# Variants that can run here (the Triton ones are unavailable without triton installed).
AVAILABLE = tuple(v for v in BUILTIN_VARIANTS if not v.unavailable)
DTYPE_TOL = {"float16": (torch.float16, 2e-2), "bfloat16": (torch.bfloat16, 1e-1)}


def _ids(v):
    return v.name


def _declared(feature_set):
    return [
        pytest.param(v, f, id=f"{v.name}-{f}")
        for v in AVAILABLE
        for f in sorted(v.supports & feature_set)
    ]


def _undeclared(feature_set):
    return [
        pytest.param(v, f, id=f"{v.name}-{f}")
        for v in AVAILABLE
        for f in sorted(feature_set - v.supports)
    ]


def _check(variant, cfg, tol=1e-10, **kw):
    errors = compare_with_reference(variant.fn, cfg, form=variant.form, call=variant, **kw)
    assert max(errors.values()) < tol, errors


def test_names_unique_and_lookup():
    names = [v.name for v in BUILTIN_VARIANTS]
    assert len(set(names)) == len(names)
    assert {
        "tutorial_function",
        "fused_tutorial",
        "fused_standard",
        "custom_op_standard",
        "eager",
        "checkpoint",
    } <= set(names)
    for v in BUILTIN_VARIANTS:
        assert builtin_variant(v.name) is v
    with pytest.raises(KeyError, match="eager"):
        builtin_variant("no_such_variant")


@pytest.mark.parametrize(
    "memory_format",
    [torch.contiguous_format, torch.channels_last],
    ids=["contiguous", "channels_last"],
)
@pytest.mark.parametrize(
    "dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)], ids=["float64", "float32"]
)
@pytest.mark.parametrize("variant", AVAILABLE, ids=_ids)
def test_no_feature_matches_reference(variant, dtype, tol, memory_format):
    _check(variant, config(), tol, dtype=dtype, memory_format=memory_format)


@pytest.mark.parametrize("variant,feature", _declared(CONV_FEATURES | BN_FEATURES))
def test_declared_feature_matches_reference(variant, feature):
    _check(variant, config(features=(feature,)))
    if feature == "running_stats":
        _check(variant, config(features=(feature,), training=False))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("variant", AVAILABLE, ids=_ids)
def test_all_declared_features_together(variant, training):
    features = variant.supports & (CONV_FEATURES | BN_FEATURES)
    if not training and "running_stats" not in features:
        pytest.skip("eval mode needs running_stats")
    for seed in range(2):
        _check(
            variant,
            config(features=features, training=training),
            seed=seed,
            memory_format=torch.channels_last if seed else torch.contiguous_format,
        )


@pytest.mark.parametrize("variant,feature", _undeclared(CONV_FEATURES | BN_FEATURES))
def test_undeclared_feature_raises(variant, feature):
    cfg = config(features=(feature,))
    x, w, b, g, bb, rm, rv = make_inputs(cfg)
    kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups", "momentum")}
    with pytest.raises(UnsupportedFeatureError):
        variant(x, w, b, g, bb, rm, rv, **kw)
    if feature == "running_stats":
        with pytest.raises(UnsupportedFeatureError):
            variant(x, w, training=False)


@pytest.mark.parametrize("variant,feature", _declared(set(DTYPE_TOL)))
def test_declared_dtype_runs_and_is_accurate(variant, feature):
    dtype, tol = DTYPE_TOL[feature]
    features = variant.supports & (CONV_FEATURES | BN_FEATURES)
    cfg = config(features=features, N=4, H=8, W=8)
    errors = compare_with_reference(variant.fn, cfg, form=variant.form, call=variant, dtype=dtype)
    assert max(errors.values()) < tol, errors
    # Output dtype and the running stats' dtype are kept.
    x, w, b, g, bb, rm, rv = make_inputs(cfg, dtype=dtype)
    kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}
    out = variant(x, w, b, g, bb, rm, rv, **kw)
    assert out.dtype == dtype
    assert rm is None or rm.dtype == dtype


@pytest.mark.parametrize(
    "variant", [v for v in AVAILABLE if "double_backward" in v.supports], ids=_ids
)
def test_declared_double_backward(variant):
    features = variant.supports & (CONV_FEATURES | BN_FEATURES)
    cfg = config(features=features, N=2, C_in=2, C_out=2, H=4, W=4, k=(2, 2))
    for training in (True, False):
        if not training and "running_stats" not in features:
            continue
        x, w, b, g, bb, rm, rv = make_inputs(dict(cfg, training=training))
        present = [t is not None for t in (x, w, b, g, bb)]
        args = [t.requires_grad_() for t in (x, w, b, g, bb) if t is not None]
        kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}

        def f(*diff, present=present, rm=rm, rv=rv, training=training, kw=kw):
            it = iter(diff)
            full = [next(it) if p else None for p in present]
            return variant(*full, rm, rv, training=training, momentum=0.0, **kw)

        assert torch.autograd.gradgradcheck(f, args, fast_mode=True)


@pytest.mark.cuda
@pytest.mark.parametrize("variant", [v for v in AVAILABLE if "cuda" in v.supports], ids=_ids)
def test_declared_cuda(variant):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    features = variant.supports & (CONV_FEATURES | BN_FEATURES)
    cfg = config(features=features)
    cpu = make_inputs(cfg)
    dev = [None if t is None else t.cuda() for t in cpu]
    kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups", "momentum")}
    leaves_c = [None if t is None else t.clone().requires_grad_() for t in cpu[:5]]
    leaves_d = [None if t is None else t.clone().requires_grad_() for t in dev[:5]]
    out_c = variant(*leaves_c, cpu[5], cpu[6], **kw)
    out_d = variant(*leaves_d, dev[5], dev[6], **kw)
    assert out_d.is_cuda
    torch.testing.assert_close(out_d.cpu(), out_c)
    out_c.square().sum().backward()
    out_d.square().sum().backward()
    for a, b in zip(leaves_c, leaves_d, strict=True):
        if a is not None:
            torch.testing.assert_close(b.grad.cpu(), a.grad)
    torch.testing.assert_close(dev[5].cpu(), cpu[5])


@pytest.mark.parametrize("variant", [v for v in AVAILABLE if v.memory_saving], ids=_ids)
def test_memory_saving_variants_save_fewer_bytes_than_eager(variant):
    eager = builtin_variant("eager")
    features = variant.supports & (CONV_FEATURES | BN_FEATURES)
    cfg = config(features=features, N=8, C_in=4, C_out=8, H=16, W=16, k=(3, 3))
    kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}

    def saved_bytes(v):
        inputs = list(make_inputs(cfg))
        for t in inputs[:5]:
            if t is not None:
                t.requires_grad_()
        return saved_tensor_bytes(lambda: v(*inputs, **kw))

    assert saved_bytes(variant) < saved_bytes(eager)


def test_feature_configs_cover_all_conv_bn_features():
    assert set(FEATURE_CONFIGS) == CONV_FEATURES | BN_FEATURES


def test_builtins_declare_no_limitation():
    # verify.plugin names declared limitations from the variants it has loaded, which on an xdist
    # controller are --variant's only: a built-in with a limitation would go unnamed.
    assert not [v.name for v in BUILTIN_VARIANTS if v.limitations]
