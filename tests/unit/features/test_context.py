"""The request-time seasonal context shared by Feast's on-demand view."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from seasonrec import schema as s
from seasonrec.features.context import PRIOR_UNITS, seasonal_context, week_demand


def test_context_for_a_december_request_in_two_hemispheres():
    at = int(datetime(2024, 12, 20, 12, tzinfo=UTC).timestamp())
    demand = [0.0] * s.WEEKS_PER_YEAR
    demand[50] = 0.5  # ISO week 51 holds half the item's sales
    out = seasonal_context(
        {
            s.REQUEST_TS: [at, at],
            s.REGION: ["GB", "CN"],
            s.DEMAND_BY_WEEK: [demand, None],
            s.TOTAL_SALES: [10_000, None],
            s.LAUNCH_TS: [at - 10 * 86400, None],
            s.HISTORY_TS: [[at - 3600, at - 7200], None],
        }
    )
    assert out["week_sin"][0] == math.sin(2 * math.pi * 50 / s.WEEKS_PER_YEAR)
    assert out["days_to_holiday"][0] == 5  # Christmas Day in GB
    # 10,000 units all over the world: the flat prior's 53 units barely move the share.
    assert out["item_week_demand"][0] == pytest.approx(0.5 * s.WEEKS_PER_YEAR, rel=0.01)
    assert out["item_week_demand"][1] is None
    assert out[s.DEMAND_LEVEL] == ["global", None]
    assert out["item_age_days"] == [10.0, None]
    assert out[s.HISTORY_AGE_HOURS] == [[1.0, 2.0], []]


def test_spring_festival_is_near_in_china_but_not_in_britain():
    at = int(datetime(2025, 1, 20, tzinfo=UTC).timestamp())
    empty = [None, None]
    out = seasonal_context(
        {
            s.REQUEST_TS: [at, at],
            s.REGION: ["CN", "GB"],
            s.DEMAND_BY_WEEK: empty,
            s.LAUNCH_TS: empty,
            s.HISTORY_TS: empty,
        }
    )
    china, britain = out["days_to_holiday"]
    assert china <= 9 < britain


def _profile(week: int, share: float = 1.0) -> list[float]:
    """A week-of-year profile with `share` of the units in ISO `week` and the rest spread evenly."""
    rest = (1.0 - share) / (s.WEEKS_PER_YEAR - 1)
    return [share if w == week else rest for w in range(1, s.WEEKS_PER_YEAR + 1)]


SUMMER_NORTH, SUMMER_SOUTH, CHRISTMAS = 28, 2, 51


def test_a_region_with_many_sales_follows_its_own_season():
    """Australia's own sales of a summer line peak in January, although the world's peak in July."""
    world = (_profile(SUMMER_NORTH, 0.8), 100_000)
    south = (_profile(SUMMER_SOUTH, 0.8), 5_000)
    australia = (_profile(SUMMER_SOUTH, 0.8), 5_000)
    january, level = week_demand(SUMMER_SOUTH, australia, south, world)
    july, _ = week_demand(SUMMER_NORTH, australia, south, world)
    assert level == "region"
    assert january > 40 > 1 > july


def test_a_region_without_sales_falls_back_to_its_hemisphere_then_to_all_regions():
    world = (_profile(SUMMER_NORTH, 0.8), 100_000)
    south = (_profile(SUMMER_SOUTH, 0.8), 5_000)
    new_region, level = week_demand(SUMMER_SOUTH, (None, None), south, world)
    assert level == "hemisphere" and new_region > 40
    nothing_south, level = week_demand(SUMMER_NORTH, (None, None), (None, None), world)
    assert level == "global" and nothing_south > 40


def test_christmas_stays_in_december_in_both_hemispheres():
    """A calendar season is in each hemisphere's own data on the same dates: nothing flips it."""
    world = (_profile(CHRISTMAS, 0.6), 50_000)
    for half in ("north", "south"):
        own = (_profile(CHRISTMAS, 0.6), 2_000)
        december, level = week_demand(CHRISTMAS, own, own, world)
        june, _ = week_demand(26, own, own, world)
        assert level == "region" and december > 20 > 1 > june, half


def test_a_few_regional_sales_are_shrunk_towards_the_hemisphere_by_their_weight():
    """Empirical Bayes: N units weigh N / (N + PRIOR_UNITS) against the level above."""
    week = 10
    world = (_profile(week, 0.0), 1_000_000)  # large: the global level is its own share
    south = (_profile(week, 0.2), 1_000_000)
    region = (_profile(week, 0.6), int(PRIOR_UNITS))  # as many units as the prior: half and half
    index, level = week_demand(week, region, south, world)
    assert level == "region"
    assert index / s.WEEKS_PER_YEAR == pytest.approx(0.5 * 0.6 + 0.5 * 0.2, rel=1e-3)
    few, level = week_demand(week, (_profile(week, 0.6), 1), south, world)  # 1 unit: a sixth of the weight
    assert level == "hemisphere"
    assert few / s.WEEKS_PER_YEAR == pytest.approx((0.6 * 1 + 0.2 * PRIOR_UNITS) / (1 + PRIOR_UNITS), rel=1e-3)
