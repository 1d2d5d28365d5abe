"""Bad input gets a clear exception, and nothing is half-updated: the running statistics are
bit-for-bit unchanged after the error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from fused.variant import BN_FEATURES, CONV_FEATURES, UnsupportedFeatureError
from verify import runner
from verify.case import Case
from verify.properties.checks import fail
from verify.strategies.configs import cases

NAME = "bad_inputs"
APPLIES_TO = "every variant"
EXAMPLE_SHARE = 1.0
# Contract rules do not depend on size.
SIZE_TIERS = ("small",)
# Exceptions that name a problem. A crash of another kind (IndexError deep in a kernel, a segfault)
# or no exception at all is a failure.
CLEAR_ERRORS = (ValueError, RuntimeError, TypeError, NotImplementedError)


def _one_pixel(case):
    # One sample whose output is a single pixel: no padding, input as large as the kernel.
    extent = [d * (k - 1) + 1 for k, d in zip(case.kernel, case.dilation, strict=True)]
    return case.replace(batch=1, height=extent[0], width=extent[1], padding=(0, 0))


def _extra_channel(case, t: dict, supports: frozenset) -> dict:
    t["x"] = torch.cat([t["x"], t["x"][:, :1]], dim=1)
    return {}


def _flat_weight(case, t: dict, supports: frozenset) -> dict:
    t["weight"] = t["weight"].flatten(1)
    return {}


def _long_bn_weight(case, t: dict, supports: frozenset) -> dict:
    t["bn_weight"] = torch.ones(case.out_channels + 1, dtype=t["x"].dtype)
    return {}


def _eval_without_stats(case, t: dict, supports: frozenset) -> dict:
    t["running_mean"] = t["running_var"] = None
    return {"training": False}


def _long_running_var(case, t: dict, supports: frozenset) -> dict:
    t["running_var"] = torch.ones(case.out_channels + 1, dtype=t["x"].dtype)
    return {}


# How a call uses each feature a variant may not declare (the first one it lacks is used).
_FEATURE_OPTIONS = {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}


def _undeclared_feature(case, t: dict, supports: frozenset) -> dict:
    missing = sorted((CONV_FEATURES | BN_FEATURES) - supports)[0]
    dtype, channels = t["x"].dtype, case.out_channels
    if missing == "bias":
        t["bias"] = torch.zeros(channels, dtype=dtype)
    elif missing == "affine":
        t["bn_weight"] = torch.ones(channels, dtype=dtype)
    elif missing == "running_stats":
        t["running_mean"] = torch.zeros(channels, dtype=dtype)
        t["running_var"] = torch.ones(channels, dtype=dtype)
    return {missing: _FEATURE_OPTIONS[missing]} if missing in _FEATURE_OPTIONS else {}


@dataclass(frozen=True)
class _Scenario:
    """One kind of bad call: which variants it applies to (by their declared features), the case
    it needs, how the call is broken, and the exceptions that count as a clear refusal."""

    name: str
    applies: Callable[[frozenset], bool] = lambda supports: True
    shape: Callable[[Case], Case] = lambda case: case
    # Breaks the call's tensors (in place, given the variant's declared features); returns the
    # keyword arguments that override the case's.
    breaks: Callable[[Case, dict, frozenset], dict] = lambda case, tensors, supports: {}
    expected: tuple[type[Exception], ...] = CLEAR_ERRORS


def _needing(feature: str) -> dict:
    """A scenario for variants that declare `feature`, on cases that use it."""
    return {
        "applies": lambda supports: feature in supports,
        "shape": lambda case: case.replace(**{feature: True}),
    }


SCENARIOS = {
    s.name: s
    for s in (
        _Scenario("single_value_per_channel", shape=_one_pixel),
        _Scenario("channel_mismatch", breaks=_extra_channel),
        _Scenario("weight_not_4d", breaks=_flat_weight),
        _Scenario("bn_weight_length", breaks=_long_bn_weight, **_needing("affine")),
        _Scenario(
            "eval_without_running_stats", breaks=_eval_without_stats, **_needing("running_stats")
        ),
        _Scenario("running_stats_length", breaks=_long_running_var, **_needing("running_stats")),
        _Scenario(
            "undeclared_feature",
            applies=lambda supports: bool((CONV_FEATURES | BN_FEATURES) - supports),
            breaks=_undeclared_feature,
            expected=(UnsupportedFeatureError,),
        ),
    )
}


@st.composite
def _bad_case(draw, variant):
    names = [name for name, s in SCENARIOS.items() if s.applies(variant.supports)]
    scenario = SCENARIOS[draw(st.sampled_from(names))]
    case = draw(cases(variant.supports, variant.form, training=True))
    return scenario.shape(case).replace(values="normal", defect=scenario.name)


def strategy(variant, tier: str = "small"):
    return _bad_case(variant)


def check(variant, case) -> float:
    scenario = case.defect
    tensors = dict(runner.make_inputs(case, case.arrays(), requires_grad=True))
    overrides = SCENARIOS[scenario].breaks(case, tensors, variant.supports)
    before = {
        n: None if tensors[n] is None else tensors[n].clone()
        for n in ("running_mean", "running_var")
    }
    expected = SCENARIOS[scenario].expected
    kwargs = dict(case.kwargs(), **overrides)
    try:
        out = variant(*runner.positional(tensors), **kwargs)
    except expected:
        pass
    except Exception as error:  # noqa: BLE001 - any other exception is the finding
        fail(
            variant,
            NAME,
            case,
            [
                f"scenario {scenario!r}: raised {type(error).__name__}: "
                f"{error} (expected one of {_names(expected)})"
            ],
        )
    else:
        summary = "NaN" if torch.isnan(out).any() else "a tensor"
        fail(
            variant,
            NAME,
            case,
            [
                f"scenario {scenario!r}: no exception; returned {summary} of "
                f"shape {tuple(out.shape)} (expected {_names(expected)})"
            ],
        )
    for name, old in before.items():
        if old is not None and tensors[name] is not None and not torch.equal(old, tensors[name]):
            fail(
                variant,
                NAME,
                case,
                [
                    f"scenario {scenario!r}: {name} was modified although "
                    "the call raised (half-updated state)"
                ],
            )
    return 0.0


def _names(expected: tuple) -> str:
    return "/".join(c.__name__ for c in expected)
