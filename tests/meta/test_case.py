"""verify.case.Case: JSON round trip, derived sizes, features, and the arrays it regenerates."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

import reference
from fused.variant import BN_FEATURES, CONV_FEATURES, requested_features
from verify import oracle
from verify.case import Case
from verify.dtypes import unit_roundoff
from verify.values import VALUE_FAMILIES

FULL = Case(
    batch=2,
    in_channels=4,
    out_channels=6,
    height=7,
    width=5,
    kernel=(3, 2),
    stride=(2, 1),
    padding=(1, 0),
    dilation=(1, 2),
    groups=2,
    bias=True,
    affine=True,
    running_stats=True,
    training=True,
    momentum=0.37,
    eps=1e-5,
    form="standard",
    dtype="float32",
    layout="strided",
    values="offset",
    seed=2**32 - 1,
    steps=3,
    defect="wrong_dtype",
)
MINIMAL = Case(batch=1, in_channels=1, out_channels=1, height=1, width=1, kernel=(1, 1))
EVAL = FULL.replace(training=False, values="normal", dtype="float64", layout="channels_last")

GEOMETRIES = [
    dict(height=1, width=1, kernel=(1, 1)),
    dict(height=7, width=5, kernel=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    dict(height=9, width=4, kernel=(2, 3), stride=(3, 2), padding=(2, 1), dilation=(2, 1)),
    dict(height=5, width=6, kernel=(3, 3), stride=(1, 3), padding=(0, 2), dilation=(2, 2)),
    dict(height=2, width=8, kernel=(1, 3), stride=(2, 2), padding=(1, 1)),
]


# -- JSON --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [FULL, MINIMAL, EVAL], ids=["full", "minimal", "eval"])
def test_json_round_trip(case):
    text = case.to_json()
    assert "\n" not in text  # one line, so a replay command can carry it
    again = Case.from_json(text)
    assert again == case
    assert again.to_json() == text
    assert isinstance(again.kernel, tuple) and isinstance(again.stride, tuple)


def test_json_names_every_field():
    fields = json.loads(FULL.to_json())
    assert fields["defect"] == "wrong_dtype" and fields["steps"] == 3
    assert fields["seed"] == 2**32 - 1
    assert fields["momentum"] == 0.37 and fields["eps"] == 1e-5


def test_unknown_field_is_an_error():
    fields = json.loads(MINIMAL.to_json())
    fields["colour"] = "blue"
    with pytest.raises(ValueError, match="colour"):
        Case.from_json(json.dumps(fields))


def test_lists_become_tuples():
    case = Case(
        batch=1, in_channels=1, out_channels=1, height=3, width=3, kernel=[2, 2], stride=[1, 2]
    )
    assert case.kernel == (2, 2) and case.stride == (1, 2)
    assert hash(case) == hash(case.replace())  # still hashable and equal to its copy


# -- derived sizes -----------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_derived_sizes_match_reference(geometry, groups, bias):
    case = Case(
        batch=3, in_channels=4, out_channels=2 * groups, groups=groups, bias=bias, **geometry
    )
    expected = reference.conv2d_output_shape(
        case.x_shape,
        case.weight_shape,
        stride=case.stride,
        padding=case.padding,
        dilation=case.dilation,
    )
    assert case.out_shape == tuple(expected)
    assert case.output_hw == tuple(expected[2:])
    assert case.values_per_channel == 3 * expected[2] * expected[3]
    assert case.weight_shape == (2 * groups, 4 // groups) + case.kernel
    assert case.conv_reduction == 4 // groups * case.kernel[0] * case.kernel[1] + int(bias)
    # The arrays have these shapes, and the oracle accepts them.
    arrays = case.replace(training=False, running_stats=True).arrays()
    assert arrays["x"].shape == case.x_shape and arrays["weight"].shape == case.weight_shape
    assert arrays["grad_out"].shape == case.out_shape
    out, _, _ = reference.conv_bn(
        arrays["x"],
        arrays["weight"],
        arrays["bias"],
        running_mean=arrays["running_mean"],
        running_var=arrays["running_var"],
        training=False,
        groups=groups,
        stride=case.stride,
        padding=case.padding,
        dilation=case.dilation,
    )
    assert out.shape == case.out_shape


# -- features ----------------------------------------------------------------------------------
TOGGLES = dict(
    stride=dict(stride=(1, 2)),
    padding=dict(padding=(1, 0)),
    dilation=dict(dilation=(2, 1)),
    groups=dict(groups=2),
    bias=dict(bias=True),
    affine=dict(affine=True),
    running_stats=dict(running_stats=True),
)


def _combinations():
    names = sorted(TOGGLES)
    for r in (0, 1, 2, len(names)):
        yield from itertools.combinations(names, r)


@pytest.mark.parametrize("training", [True, False])
def test_features_match_requested_features(training):
    seen = 0
    for combo in _combinations():
        changes = {}
        for name in combo:
            changes.update(TOGGLES[name])
        case = Case(
            batch=2,
            in_channels=2,
            out_channels=2,
            height=5,
            width=5,
            kernel=(2, 2),
            training=training,
            **changes,
        )
        arrays = case.arrays()
        call_args = dict(
            bias=arrays["bias"],
            bn_weight=arrays["bn_weight"],
            bn_bias=arrays["bn_bias"],
            running_mean=arrays["running_mean"],
            running_var=arrays["running_var"],
            **case.kwargs(),
        )
        requested = requested_features(**call_args)
        assert case.features() & (CONV_FEATURES | BN_FEATURES) == requested, case
        expected = set(combo) | ({"running_stats"} if not training else set())
        assert requested == expected
        seen += 1
    assert seen > 20


def test_features_name_dtypes_and_devices():
    assert MINIMAL.features() == frozenset()
    assert MINIMAL.replace(dtype="float32").features() == frozenset()
    assert MINIMAL.replace(dtype="float16").features() == {"float16"}
    assert MINIMAL.replace(dtype="bfloat16").features() == {"bfloat16"}
    assert MINIMAL.replace(device="cuda").features() == {"cuda"}
    # A layout is never a feature: every variant must take every layout.
    assert MINIMAL.replace(layout="strided").features() == frozenset()


# -- arrays ------------------------------------------------------------------------------------
NAMES = ("x", "weight", "bias", "bn_weight", "bn_bias", "running_mean", "running_var", "grad_out")


def _equal(a, b):
    return all((a[n] is None and b[n] is None) or np.array_equal(a[n], b[n]) for n in NAMES)


def test_arrays_deterministic_per_seed_and_step():
    first, again = FULL.arrays(), FULL.arrays()
    assert _equal(first, again)
    assert _equal(FULL.arrays(step=2), FULL.arrays(step=2))
    step1 = FULL.arrays(step=1)
    seed1 = FULL.replace(seed=1).arrays()
    for name in NAMES:
        assert not np.array_equal(first[name], step1[name]), name
        assert not np.array_equal(first[name], seed1[name]), name
    # Unrelated fields (layout, eps, momentum) do not change the numbers.
    assert _equal(first, FULL.replace(layout="contiguous", eps=1e-1, momentum=0.5).arrays())


def test_arrays_absent_inputs_are_none():
    arrays = MINIMAL.arrays()
    assert set(arrays) == set(NAMES)
    for name in ("bias", "bn_weight", "bn_bias", "running_mean", "running_var"):
        assert arrays[name] is None, name
    full = FULL.arrays()
    assert all(full[name] is not None for name in NAMES)
    assert full["bias"].shape == full["bn_weight"].shape == full["running_var"].shape == (6,)
    assert np.all(full["running_var"] > 0)


def _bfloat16(a):
    return torch.from_numpy(a).to(torch.bfloat16).to(torch.float64).numpy()


ROUNDINGS = {
    "float32": lambda a: a.astype(np.float32).astype(np.float64),
    "float16": lambda a: a.astype(np.float16).astype(np.float64),
    "bfloat16": _bfloat16,
}


@pytest.mark.parametrize("dtype", sorted(ROUNDINGS))
@pytest.mark.parametrize("values", VALUE_FAMILIES)
def test_arrays_rounded_to_dtype_and_finite(dtype, values):
    case = FULL.replace(dtype=dtype, values=values)
    arrays = case.arrays()
    for name in NAMES:
        a = arrays[name]
        assert a.dtype == np.float64, name
        assert np.all(np.isfinite(a)), (name, values, dtype)
        np.testing.assert_array_equal(ROUNDINGS[dtype](a), a, err_msg=f"{name} not {dtype}")
    if values == "normal":
        # Rounded to the case's dtype, not to a coarser one.
        finer = {"float32": "float16", "float16": "bfloat16", "bfloat16": None}[dtype]
        if finer is not None:
            assert not np.array_equal(ROUNDINGS[finer](arrays["x"]), arrays["x"])


@pytest.mark.parametrize("values", VALUE_FAMILIES)
def test_float64_arrays_are_not_rounded(values):
    x = FULL.replace(dtype="float64", values=values).arrays()["grad_out"]
    assert not np.array_equal(ROUNDINGS["float32"](x), x)


GEOMETRY = dict(batch=2, in_channels=3, out_channels=4, height=6, width=6, kernel=(3, 3))


@pytest.mark.parametrize("seed", range(4))
def test_constant_family_has_zero_variance_channel(seed):
    case = Case(**GEOMETRY, values="constant", seed=seed)
    arrays = case.arrays()
    x = arrays["x"]
    assert np.any(np.ptp(x, axis=(0, 2, 3)) == 0), "no constant input channel"
    spread = np.ptp(oracle.conv_output(case, arrays), axis=(0, 2, 3))
    assert np.any(spread == 0), "no zero-variance output channel"
    assert np.any(spread > 0.1), "every output channel is constant"


@pytest.mark.parametrize("seed", range(4))
def test_offset_family_is_offset(seed):
    x = Case(**GEOMETRY, values="offset", seed=seed).arrays()["x"]
    assert abs(x.mean()) >= 5 * x.std() and abs(x.mean()) >= 10
    assert x.std() > 0


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_integer_family_is_integral(dtype):
    arrays = Case(**GEOMETRY, values="integers", bias=True, dtype=dtype, seed=3).arrays()
    for name in ("x", "weight", "bias"):
        assert np.array_equal(np.round(arrays[name]), arrays[name]), name
    assert len(np.unique(arrays["x"])) > 3


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_tiny_and_huge_families_scale(dtype):
    tiny = Case(**GEOMETRY, values="tiny", dtype=dtype).arrays()["x"]
    huge = Case(**GEOMETRY, values="huge", dtype=dtype).arrays()["x"]
    assert np.abs(tiny).max() < 1e-10 and np.abs(tiny).max() > 0
    assert np.abs(huge).max() > 1e10
    info = np.finfo(np.float64 if dtype == "float64" else np.float32)
    # Squares stay finite and normal in the dtype's own (or float32's) range.
    assert np.abs(huge).max() ** 2 * tiny.size < info.max
    assert np.abs(tiny[tiny != 0]).min() ** 2 > info.tiny * 1e-3 or dtype != "float64"


def test_positive_family_is_positive():
    arrays = Case(**GEOMETRY, values="positive").arrays()
    assert np.all(arrays["x"] >= 0) and np.all(arrays["weight"] >= 0)


def test_unit_roundoff():
    assert unit_roundoff("float64") == 2.0**-53 == np.finfo(np.float64).eps / 2
    assert unit_roundoff("float32") == np.finfo(np.float32).eps / 2
    assert unit_roundoff("float16") == np.finfo(np.float16).eps / 2
    assert unit_roundoff("bfloat16") == torch.finfo(torch.bfloat16).eps / 2
