"""Bad inputs raise ValueError naming the problem; inputs are never modified."""

import numpy as np
import pytest

import reference
from tests.reference.helpers import FIXED_CASES, make_case

BASE = make_case(0, c_out_per_group=4)  # x (2, 2, 5, 5), weight (4, 2, 3, 3) -> 3x3 output


def _call(fn="forward", **changes):
    args = dict(
        zip(
            ("x", "weight", "bias", "bn_weight", "bn_bias", "running_mean", "running_var"),
            BASE.args(),
            strict=True,
        )
    )
    kwargs = dict(BASE.kwargs)
    for k, v in changes.items():
        (kwargs if k in kwargs else args)[k] = v
    if fn == "forward":
        return reference.conv_bn(**args, **kwargs)
    return reference.conv_bn_backward(BASE.grad_out, **args, **kwargs)


BAD = [
    # (id, changes, words the message must contain)
    ("x-3d", dict(x=np.zeros((4, 5, 5))), ["x must be 4-D", "(4, 5, 5)"]),
    ("weight-5d", dict(weight=np.zeros((4, 2, 3, 3, 1))), ["weight must be 4-D"]),
    ("channels", dict(x=np.zeros((2, 3, 5, 5))), ["3 channels", "weight.shape[1] * groups"]),
    ("groups-divide", dict(groups=3), ["groups=3 must divide"]),
    ("groups-zero", dict(groups=0), ["groups must be positive"]),
    ("groups-float", dict(groups=1.5), ["groups must be a positive int"]),
    ("stride-zero", dict(stride=0), ["stride must be >= 1"]),
    ("stride-pair", dict(stride=(1, 0)), ["stride must be >= 1"]),
    ("stride-triple", dict(stride=(1, 1, 1)), ["stride must be an int or a pair"]),
    ("dilation-zero", dict(dilation=(0, 1)), ["dilation must be >= 1"]),
    ("padding-negative", dict(padding=-1), ["padding must be >= 0"]),
    ("padding-float", dict(padding=0.5), ["padding must be an int or a pair"]),
    ("empty-output", dict(x=np.zeros((2, 2, 2, 5))), ["empty output", "height"]),
    ("empty-output-dilated", dict(dilation=(1, 3)), ["empty output", "width"]),
    ("bias-shape", dict(bias=np.zeros(3)), ["bias must have shape (4,)", "(3,)"]),
    ("bn-weight-shape", dict(bn_weight=np.zeros((4, 1))), ["bn_weight must have shape (4,)"]),
    ("bn-bias-shape", dict(bn_bias=np.zeros(5)), ["bn_bias must have shape (4,)"]),
    ("running-mean-shape", dict(running_mean=np.zeros(2)), ["running_mean must have shape"]),
    ("running-var-shape", dict(running_var=np.ones(6)), ["running_var must have shape"]),
    ("running-var-negative", dict(running_var=-np.ones(4)), ["running_var must be non-neg"]),
    ("running-mean-alone", dict(running_var=None), ["must be given together"]),
    ("running-var-alone", dict(running_mean=None), ["must be given together"]),
    ("form", dict(form="batchnorm"), ["form must be one of", "batchnorm"]),
    ("eps-zero", dict(eps=0.0), ["eps must be > 0"]),
    ("eps-nan", dict(eps=float("nan")), ["eps must be > 0"]),
    ("momentum-high", dict(momentum=1.5), ["momentum must be in [0, 1]"]),
    ("momentum-negative", dict(momentum=-0.1), ["momentum must be in [0, 1]"]),
    (
        "eval-without-stats",
        dict(training=False, running_mean=None, running_var=None),
        ["eval mode", "running_mean"],
    ),
    (
        "one-value-per-channel",
        dict(x=np.zeros((1, 2, 3, 3))),
        ["at least two values per channel", "1*1*1 = 1", "(1, 4, 1, 1)"],
    ),
]


@pytest.mark.parametrize("fn", ["forward", "backward"])
@pytest.mark.parametrize("changes,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_raises(fn, changes, words):
    with pytest.raises(ValueError) as info:
        _call(fn, **changes)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_one_value_per_channel_is_fine_in_eval():
    out, _, _ = _call(x=np.zeros((1, 2, 3, 3)), training=False)
    assert out.shape == (1, 4, 1, 1)


def test_grad_out_shape_is_checked():
    with pytest.raises(ValueError, match="grad_out must have the output's shape"):
        reference.conv_bn_backward(np.zeros((2, 4, 2, 2)), *BASE.args(), **BASE.kwargs)


def test_nan_passes_through_without_error():
    x = BASE.x.copy()
    x[0, 0, 0, 0] = np.nan
    out, rm, rv = _call(x=x)
    assert np.isnan(out).any() and np.isnan(rm).any()
    x[0, 0, 0, 0] = np.inf
    assert np.isnan(_call("backward", x=x)[1]).any()


def test_as_pair():
    assert reference.as_pair(2, "stride") == (2, 2)
    assert reference.as_pair((1, np.int64(3)), "stride") == (1, 3)
    for bad in (True, "2", (1,), [1, 2.0], None):
        with pytest.raises(ValueError, match="stride must be an int or a pair"):
            reference.as_pair(bad, "stride")


@pytest.mark.parametrize("case", FIXED_CASES, ids=lambda c: "{form}-{training}".format(**c.kwargs))
def test_inputs_are_never_modified(case):
    arrays = [a for a in (*case.args(), case.grad_out) if a is not None]
    copies = [a.copy() for a in arrays]
    for a in arrays:
        a.setflags(write=False)  # any in-place write now raises
    try:
        case.forward()
        case.backward()
        y = reference.conv2d(
            case.x,
            case.weight,
            case.bias,
            **{k: case.kwargs[k] for k in ("stride", "padding", "dilation", "groups")},
        )
        bn_kw = {k: case.kwargs[k] for k in ("training", "eps", "form")}
        reference.batch_norm(y, *case.args()[3:], momentum=0.5, **bn_kw)
        reference.batch_norm_backward(case.grad_out, y, *case.args()[3:], **bn_kw)
    finally:
        for a in arrays:
            a.setflags(write=True)
    for a, c in zip(arrays, copies, strict=True):
        np.testing.assert_array_equal(a, c)


def test_outputs_do_not_alias_inputs():
    case = make_case(0, training=False)
    results = [*case.forward(), *case.backward()]
    for r in results:
        for a in case.args():
            assert r is None or a is None or not np.shares_memory(r, a)
