"""Bad input gets a clear exception, and nothing is half-updated: the running statistics are
bit-for-bit unchanged after the error."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st

from fused.variant import BN_FEATURES, CONV_FEATURES, UnsupportedFeatureError
from verify import runner
from verify.properties.checks import fail
from verify.strategies.configs import cases

NAME = "bad_inputs"
# Contract rules do not depend on size.
SIZE_TIERS = ("small",)
# Exceptions that name a problem. A crash of another kind (IndexError deep in a kernel, a segfault)
# or no exception at all is a failure.
CLEAR_ERRORS = (ValueError, RuntimeError, TypeError, NotImplementedError)


def _scenarios(supports: frozenset) -> list[str]:
    names = ["single_value_per_channel", "channel_mismatch", "weight_not_4d"]
    if "affine" in supports:
        names.append("bn_weight_length")
    if "running_stats" in supports:
        names += ["eval_without_running_stats", "running_stats_length"]
    if (CONV_FEATURES | BN_FEATURES) - supports:
        names.append("undeclared_feature")
    return names


@st.composite
def _bad_case(draw, variant):
    scenario = draw(st.sampled_from(_scenarios(variant.supports)))
    case = draw(cases(variant.supports, variant.form, training=True))
    if scenario == "single_value_per_channel":
        # One sample whose output is a single pixel: no padding, input as large as the kernel.
        extent = [d * (k - 1) + 1 for k, d in zip(case.kernel, case.dilation, strict=True)]
        case = case.replace(batch=1, height=extent[0], width=extent[1], padding=(0, 0))
    if scenario in ("running_stats_length", "eval_without_running_stats"):
        case = case.replace(running_stats=True)
    if scenario == "bn_weight_length":
        case = case.replace(affine=True)
    return case.replace(values="normal", defect=scenario)


def strategy(variant, tier: str = "small"):
    return _bad_case(variant)


def _break(scenario: str, case, tensors: dict, supports: frozenset) -> tuple[dict, dict]:
    """Return (tensors, extra kwargs) with the scenario's defect applied."""
    kwargs: dict[str, Any] = {}
    t = dict(tensors)
    dtype = t["x"].dtype
    if scenario == "channel_mismatch":
        t["x"] = torch.cat([t["x"], t["x"][:, :1]], dim=1)
    elif scenario == "weight_not_4d":
        t["weight"] = t["weight"].flatten(1)
    elif scenario == "bn_weight_length":
        t["bn_weight"] = torch.ones(case.out_channels + 1, dtype=dtype)
    elif scenario == "eval_without_running_stats":
        kwargs["training"] = False
        t["running_mean"] = t["running_var"] = None
    elif scenario == "running_stats_length":
        t["running_var"] = torch.ones(case.out_channels + 1, dtype=dtype)
    elif scenario == "undeclared_feature":
        missing = sorted((CONV_FEATURES | BN_FEATURES) - supports)[0]
        kwargs.update(
            {
                "stride": {"stride": 2},
                "padding": {"padding": 1},
                "dilation": {"dilation": 2},
                "groups": {"groups": 2},
            }.get(missing, {})
        )
        if missing == "bias":
            t["bias"] = torch.zeros(case.out_channels, dtype=dtype)
        elif missing == "affine":
            t["bn_weight"] = torch.ones(case.out_channels, dtype=dtype)
        elif missing == "running_stats":
            t["running_mean"] = torch.zeros(case.out_channels, dtype=dtype)
            t["running_var"] = torch.ones(case.out_channels, dtype=dtype)
    return t, kwargs


def check(variant, case) -> float:
    scenario = case.defect
    tensors = runner.make_inputs(case, case.arrays(), requires_grad=True)
    tensors, overrides = _break(scenario, case, tensors, variant.supports)
    before = {
        n: None if tensors[n] is None else tensors[n].clone()
        for n in ("running_mean", "running_var")
    }
    expected = UnsupportedFeatureError if scenario == "undeclared_feature" else CLEAR_ERRORS
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


def _names(expected) -> str:
    classes = expected if isinstance(expected, tuple) else (expected,)
    return "/".join(c.__name__ for c in classes)
