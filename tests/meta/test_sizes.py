"""verify.strategies.sizes and the tiers of `cases`: every tier's cases are legal and sized as
the tier promises, every boundary is reachable on both sides, a size failure shrinks to the
smallest failing size, and every property test runs at the tiers it declares."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, find, given, settings

from fused.variant import BN_FEATURES, CONV_FEATURES
from verify import legality
from verify.hunt import TIER_SHARE, examples_for
from verify.properties import PROPERTIES
from verify.strategies import sizes
from verify.strategies.configs import cases

ALL = frozenset(CONV_FEATURES | BN_FEATURES)
FAST = settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize("tier", sizes.SIZE_TIERS)
@pytest.mark.parametrize("supports", [frozenset(), ALL], ids=["none", "all"])
def test_tier_cases_are_legal_and_sized_as_promised(tier, supports):
    @FAST
    @given(case=cases(supports, "standard", tier=tier))
    def check(case):
        assert legality.problems(case) == []
        assert case.features() <= supports
        m = case.values_per_channel
        if tier in sizes.REDUCTION_BOUNDARIES:
            near = [b for b in sizes.REDUCTION_BOUNDARIES[tier] if m in sizes.offsets_around(b)]
            assert near, f"{m} values per channel is next to no boundary of {tier}"
        elif tier == "wide":
            assert any(abs(case.out_channels - b) <= 1 for b in sizes.CHANNEL_BOUNDARIES)
        else:
            assert m <= 48 * 9 and case.out_channels <= 9
        assert case.batch <= sizes.MAX_BATCH[tier] or case.values_per_channel < 2 * case.batch

    check()


def test_offsets_straddle_each_power_of_two():
    for boundary in (32, 64, 4096, 16384):
        offsets = sizes.offsets_around(boundary)
        assert {boundary - 1, boundary, boundary + 1} <= set(offsets)
        assert list(offsets) == sorted(offsets)
    assert max(sizes.offsets_around(16384)) >= 16385


@pytest.mark.parametrize(
    "tier,values",
    [("tile", 255), ("tile", 33), ("split", 4097), ("large", 16385), ("large", 16383)],
)
def test_every_boundary_value_is_reachable(tier, values):
    found = find(
        cases(ALL, "standard", tier=tier),
        lambda c: c.values_per_channel == values,
        settings=settings(
            max_examples=3000,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert found.values_per_channel == values


def test_channel_and_batch_edges_are_reachable():
    quiet = settings(
        max_examples=3000,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
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


def test_a_size_failure_shrinks_to_the_smallest_failing_size():
    """A kernel wrong past 64 values per channel (a tail bug of a 64-wide block) is reported at 65,
    the smallest failing size, not at whatever size the search first hit."""
    minimal = find(
        cases(frozenset(), "standard", tier="tile"),
        lambda c: c.values_per_channel > 64 and c.values_per_channel % 64,
        settings=settings(
            max_examples=2000,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert minimal.values_per_channel == 65
    assert minimal.size().startswith("65 values per channel")


def test_tier_budgets():
    assert [examples_for(t, 25) for t in sizes.SIZE_TIERS] == [25, 5, 3, 2, 3]
    assert examples_for("large", 2000) == 160
    assert set(TIER_SHARE) == set(sizes.SIZE_TIERS)


def test_tiers_of_every_property_are_known():
    for module in PROPERTIES.values():
        assert set(getattr(module, "SIZE_TIERS", sizes.SIZE_TIERS)) <= set(sizes.SIZE_TIERS)
        assert "small" in getattr(module, "SIZE_TIERS", sizes.SIZE_TIERS)


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
