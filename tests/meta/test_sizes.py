"""verify.strategies.sizes and the tiers of `cases`: every tier's cases are legal and sized as
the tier promises, every boundary is reachable on both sides, a size failure shrinks to the
smallest failing size, and every property test runs at the tiers it declares."""

from __future__ import annotations

import math

import pytest
from hypothesis import Phase, find, given, settings

from fused.variant import BN_FEATURES, CONV_FEATURES
from tests.meta.helpers import derandomised
from verify import legality
from verify.hunt import TIER_SHARE, examples_for
from verify.properties import PROPERTIES
from verify.strategies import sizes
from verify.strategies.configs import cases

ALL = frozenset(CONV_FEATURES | BN_FEATURES)
FAST = derandomised(40)


def _depthwise(case) -> bool:
    return case.groups == case.in_channels == case.out_channels


@pytest.mark.parametrize("tier", sizes.ALL_TIERS)
@pytest.mark.parametrize("supports", [frozenset(), ALL], ids=["none", "all"])
def test_tier_cases_are_legal_and_sized_as_promised(tier, supports):
    @FAST
    @given(case=cases(supports, "standard", tier=tier))
    def check(case):
        assert legality.problems(case) == []
        assert case.features() <= supports
        m = case.values_per_channel
        if tier == "grid":
            h, w = case.output_hw
            grid = sizes.offsets_around(sizes.GRID_BOUNDARY)
            assert (case.batch in grid and h * w <= 2) or (h * w in grid and case.batch <= 2)
        elif tier in sizes.REDUCTION_BOUNDARIES:
            assert m in sizes.reduction_sizes(tier), f"{m} values per channel: not a {tier} size"
        elif tier in ("wide", "channels"):
            near = any(abs(case.out_channels - b) <= 1 for b in sizes.channel_boundaries(tier))
            assert near or (_depthwise(case) and case.groups in sizes.depthwise_widths(tier))
        else:
            assert m <= 48 * 9 and case.out_channels <= 9
        if tier == "crowd":
            assert any(abs(case.out_channels - b) <= 1 for b in sizes.channel_boundaries(tier))
        if tier in sizes.NETWORK_TIERS:
            largest = max(math.prod(s) for s in (case.x_shape, case.weight_shape, case.out_shape))
            assert largest <= sizes.MAX_NETWORK_ELEMENTS
        elif tier != "grid":
            assert case.batch <= sizes.MAX_BATCH[tier] or m < 2 * case.batch
        if case.groups > 4:
            assert _depthwise(case) and case.groups in sizes.depthwise_widths(tier)

    check()


def test_offsets_straddle_each_power_of_two():
    for boundary in (32, 64, 4096, 16384):
        offsets = sizes.offsets_around(boundary)
        assert {boundary - 1, boundary, boundary + 1} <= set(offsets)
        assert list(offsets) == sorted(offsets)
    assert max(sizes.offsets_around(16384)) >= 16385


@pytest.mark.parametrize(
    "tier,values",
    [
        ("tile", 255),
        ("tile", 33),
        ("split", 4097),
        ("large", 16385),
        ("large", 16383),
        ("long", 65535),
        ("long", 2**20 + 1),
        ("long", 2**21),
        ("long", 2**21 + 3),
        ("crowd", 10000),
    ],
)
def test_every_boundary_value_is_reachable(tier, values):
    found = find(
        cases(ALL, "standard", tier=tier),
        lambda c: c.values_per_channel == values,
        settings=derandomised(3000),
    )
    assert found.values_per_channel == values


def test_channel_and_batch_edges_are_reachable():
    quiet = derandomised(3000)
    assert (
        find(
            cases(ALL, "standard", tier="wide"), lambda c: c.out_channels == 129, settings=quiet
        ).out_channels
        == 129
    )
    assert (
        find(cases(ALL, "standard", tier="large"), lambda c: c.batch == 16, settings=quiet).batch
        == 16
    )
    big = find(
        cases(frozenset(), "standard", tier="split"),
        lambda c: c.output_hw[0] * c.output_hw[1] > 1024,
        settings=quiet,
    )
    assert big.output_hw[0] * big.output_hw[1] > 1024


QUIET = derandomised(3000)


@pytest.mark.parametrize(
    "tier,condition",
    [
        ("channels", lambda c: c.out_channels == 4097),
        ("channels", lambda c: c.out_channels == 2047),
        ("channels", lambda c: _depthwise(c) and c.groups == 1024),
        ("channels", lambda c: _depthwise(c) and c.groups == 255),
        ("channels", lambda c: _depthwise(c) and c.groups == 8),
        ("channels", lambda c: _depthwise(c) and c.groups == 129),
        ("crowd", lambda c: _depthwise(c) and c.groups == 65),
        ("grid", lambda c: c.batch == 65537),
        ("grid", lambda c: c.output_hw[0] * c.output_hw[1] == 98305 and c.output_hw[0] > 1),
        ("crowd", lambda c: c.layout == "channels_last" and c.out_channels == 65),
    ],
)
def test_network_edges_are_reachable(tier, condition):
    assert condition(find(cases(ALL, "standard", tier=tier), condition, settings=QUIET))


@pytest.mark.parametrize("tier", sizes.ALL_TIERS)
def test_depthwise_is_drawn_where_its_tiers_declare_it(tier):
    """Where `groups` is declared, the wide, channels and crowd tiers draw depthwise convolutions
    of at least 8 channels; none is drawn where it is not declared."""
    widths = sizes.depthwise_widths(tier)
    assert (widths != ()) == (tier in ("wide", "channels", "crowd"))
    if not widths:
        return

    def wide_depthwise(c):
        return _depthwise(c) and c.groups >= 8

    assert wide_depthwise(find(cases(ALL, "standard", tier=tier), wide_depthwise, settings=QUIET))

    @FAST
    @given(case=cases(ALL - {"groups"}, "standard", tier=tier))
    def never_undeclared(case):
        assert case.groups == 1

    never_undeclared()


@pytest.mark.parametrize(
    "tier,expected",
    [
        ("channels", "257 channels"),
        ("long", "65537 values per channel (N=1 x H_out*W_out=1x65537), 1 channels"),
        ("grid", "65536 values per channel (N=65536 x H_out*W_out=1x1), 1 channels"),
        ("crowd", "8193 values per channel (N=1 x H_out*W_out=3x2731), 65 channels"),
    ],
)
def test_the_simplest_network_case_crosses_the_first_boundary(tier, expected):
    """One example per tier (all the ci profile may afford) is the simplest one: it must already
    sit past the tier's first boundary."""
    first = []

    @settings(QUIET, max_examples=1, phases=[Phase.generate])
    @given(case=cases(frozenset(), "standard", tier=tier))
    def run(case):
        first.append(case)

    run()
    assert first[0].size().endswith(expected)


@pytest.mark.parametrize(
    "tier,fails,smallest",
    [
        ("long", lambda c: c.values_per_channel > 2**20, "1048577 values per channel"),
        ("channels", lambda c: c.out_channels > 2048, "2049 channels"),
        ("grid", lambda c: c.batch > 65535, "(N=65536 x"),
        ("grid", lambda c: c.values_per_channel > 65536 and c.batch == 1, "65537 values"),
    ],
)
def test_a_network_size_failure_shrinks_to_the_smallest_failing_size(tier, fails, smallest):
    minimal = find(cases(frozenset(), "standard", tier=tier), fails, settings=QUIET)
    assert smallest in minimal.size()


def test_triton_on_the_interpreter_skips_the_network_tiers(monkeypatch):
    import fused.triton_support
    from verify import hunt

    class Interpreted:
        triton = True

    monkeypatch.setattr(fused.triton_support, "interpreting", lambda: True)
    for tier in sizes.NETWORK_TIERS:
        assert "too large for Triton's CPU interpreter" in hunt.tier_unavailable(
            Interpreted(), tier
        )
    assert hunt.tier_unavailable(Interpreted(), "large") == ""
    monkeypatch.setattr(fused.triton_support, "interpreting", lambda: False)
    assert hunt.tier_unavailable(Interpreted(), "long") == ""


def test_a_size_failure_shrinks_to_the_smallest_failing_size():
    """A kernel wrong past 64 values per channel (a tail bug of a 64-wide block) is reported at 65,
    the smallest failing size, not at whatever size the search first hit."""
    minimal = find(
        cases(frozenset(), "standard", tier="tile"),
        lambda c: c.values_per_channel > 64 and c.values_per_channel % 64,
        settings=derandomised(2000),
    )
    assert minimal.values_per_channel == 65
    assert minimal.size().startswith("65 values per channel")


def test_tier_budgets():
    assert [examples_for(t, 25) for t in sizes.ALL_TIERS] == [25, 5, 3, 2, 3, 3, 2, 3, 2]
    assert examples_for("large", 2000) == 160
    assert examples_for("long", 2000) == 160
    assert set(TIER_SHARE) == set(sizes.ALL_TIERS + (sizes.INT32_TIER,))
    assert examples_for(sizes.INT32_TIER, 25) == 1


def test_tiers_of_every_property_are_known():
    for module in PROPERTIES.values():
        known = sizes.ALL_TIERS + (sizes.INT32_TIER,)
        assert set(module.SIZE_TIERS) <= set(known)
        assert "small" in module.SIZE_TIERS
    # The network tiers are opted into by the numeric checks only (their cost per example).
    network = {
        name
        for name, module in PROPERTIES.items()
        if set(sizes.NETWORK_TIERS) & set(module.SIZE_TIERS)
    }
    assert network == {"forward", "gradients", "cuda"}
    int32 = {n for n, m in PROPERTIES.items() if sizes.INT32_TIER in getattr(m, "SIZE_TIERS", ())}
    assert int32 == {"cuda"}


def test_the_int32_tier_is_past_two_to_the_31_elements():
    from fused.registry import builtin_variant
    from verify.properties import cuda

    @FAST
    @given(case=cuda.strategy(builtin_variant("eager"), sizes.INT32_TIER))
    def check(case):
        assert legality.problems(case) == []
        assert math.prod(case.out_shape) >= 2**31 and case.training
        assert case.dtype != "float64" and case.device == "cuda"
        # No float64 NumPy copy is ever made: the cuda property draws the values on the GPU.
        assert case.values_per_channel >= 2**30

    check()


def test_the_hypothesis_test_function_keeps_its_source():
    """Hypothesis derives the derandomised `ci` draws and the example-database key from the test
    function's source: an edit of `search` in `hunt` would silently redraw every case (the
    gallery's calibrated margins) and orphan every saved example."""
    import inspect

    from verify import hunt

    assert (
        "    def search(data):\n        run_example(prop_module, variant, data, tier)\n"
        in inspect.getsource(hunt.hunt)
    )


def test_a_property_module_without_the_full_shape_is_refused():
    import types

    from verify.properties import SHAPE, check_shape

    for module in PROPERTIES.values():
        check_shape(module)
        assert isinstance(module.APPLIES_TO, str) and module.EXAMPLE_SHARE > 0
    partial = types.ModuleType("verify.properties.partial")
    partial.NAME, partial.strategy, partial.check = "partial", None, None
    with pytest.raises(TypeError, match="partial lacks APPLIES_TO, SIZE_TIERS, EXAMPLE_SHARE"):
        check_shape(partial)
    assert SHAPE[0] == "NAME"
