"""The request-time seasonal context shared by Feast's on-demand view."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from seasonrec import schema as s
from seasonrec.features.context import PRIOR_UNITS, WEEK_KERNEL, seasonal_context, week_demand, week_units


def test_context_for_a_december_request_in_two_hemispheres():
    at = int(datetime(2024, 12, 20, 12, tzinfo=UTC).timestamp())
    demand = [0.0] * s.WEEKS_PER_YEAR
    demand[50] = 0.5  # ISO week 51 holds half the item's sales
    out = seasonal_context(
        {
            s.REQUEST_TS: [at, at],
            s.REGION: ["GB", "CN"],
            s.DEMAND_BY_WEEK: [demand, None],
            s.TOTAL_DEMAND: [10_000, None],
            s.LAUNCH_TS: [at - 10 * 86400, None],
            s.HISTORY_TS: [[at - 3600, at - 7200], None],
        }
    )
    assert out["week_sin"][0] == math.sin(2 * math.pi * 50 / s.WEEKS_PER_YEAR)
    assert out["days_to_holiday"][0] == 5  # Christmas Day in GB
    # 10,000 units all over the world: the flat prior barely moves the share. Half of them in week 51 and none
    # in the weeks around it: the kernel keeps its middle weight of that half there.
    assert out["item_week_demand"][0] == pytest.approx(WEEK_KERNEL[2][1] * 0.5 * s.WEEKS_PER_YEAR, rel=0.01)
    assert out[s.WEEK_UNITS] == [0.0, 0.0]  # neither region has sold it itself
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
    assert january > 10 > 1 > july  # a one-week spike, spread over five weeks by the kernel


def test_a_region_without_sales_falls_back_to_its_hemisphere_then_to_all_regions():
    world = (_profile(SUMMER_NORTH, 0.8), 100_000)
    south = (_profile(SUMMER_SOUTH, 0.8), 5_000)
    new_region, level = week_demand(SUMMER_SOUTH, (None, None), south, world)
    assert level == "hemisphere" and new_region > 10
    nothing_south, level = week_demand(SUMMER_NORTH, (None, None), (None, None), world)
    assert level == "global" and nothing_south > 10


def test_christmas_stays_in_december_in_both_hemispheres():
    """A calendar season is in each hemisphere's own data on the same dates: nothing flips it."""
    world = (_profile(CHRISTMAS, 0.6), 50_000)
    for half in ("north", "south"):
        own = (_profile(CHRISTMAS, 0.6), 2_000)
        december, level = week_demand(CHRISTMAS, own, own, world)
        june, _ = week_demand(26, own, own, world)
        assert level == "region" and december > 5 > 1 > june, half


def test_a_few_regional_sales_are_shrunk_towards_the_hemisphere_by_their_weight():
    """Empirical Bayes: N units weigh N / (N + PRIOR_UNITS) against the level above."""
    week = 10
    world = (_profile(week, 0.0), 1_000_000)  # large: the global level is its own share
    south = (_profile(week, 0.2), 1_000_000)
    region = (_profile(week, 0.6), int(PRIOR_UNITS))  # as many units as the prior: half and half
    index, level = week_demand(week, region, south, world)
    assert level == "region"
    assert index / s.WEEKS_PER_YEAR == pytest.approx(0.5 * _around(0.6) + 0.5 * _around(0.2), rel=1e-3)
    few, level = week_demand(week, (_profile(week, 0.6), 1), south, world)  # 1 unit: a sixth of the weight
    assert level == "hemisphere"
    expected = (_around(0.6) * 1 + _around(0.2) * PRIOR_UNITS) / (1 + PRIOR_UNITS)
    assert few / s.WEEKS_PER_YEAR == pytest.approx(expected, rel=1e-3)


def _around(share: float) -> float:
    """The kernel's share around the peak week of `_profile(week, share)`."""
    rest = (1.0 - share) / (s.WEEKS_PER_YEAR - 1)
    return sum(w * (share if d == 0 else rest) for d, w in WEEK_KERNEL)


def test_a_season_spreads_to_its_neighbouring_weeks_and_wraps_round_the_year():
    """One Christmas sale counts in the weeks around it, January's first included, and nowhere else; a year's
    indices still average 1.0."""
    spike = [0.0] * s.WEEKS_PER_YEAR
    spike[52 - 1] = 1.0
    world = (spike, 1_000_000)
    index = {week: week_demand(week, (None, None), (None, None), world)[0] for week in range(1, s.WEEKS_PER_YEAR + 1)}
    assert index[52] > index[51] == index[53] > index[50] == index[1] > 0
    assert index[2] == index[49] == pytest.approx(0.0, abs=1e-3)
    assert sum(index.values()) / s.WEEKS_PER_YEAR == pytest.approx(1.0, rel=1e-6)


def test_week_units_are_the_regions_own_sales_around_this_week():
    """Last year's season in volume: the region sold 900 units, a fifth of them in each of weeks 49 to 53."""
    profile = [0.0] * s.WEEKS_PER_YEAR
    for week in (49, 50, 51, 52, 53):
        profile[week - 1] = 0.2
    assert week_units(51, (profile, 900)) == pytest.approx(0.2 * 900)
    assert week_units(26, (profile, 900)) == 0.0
    assert week_units(51, (None, None)) == 0.0


def test_a_line_that_has_not_sold_takes_its_titles_season():
    """A new "Beach Towel" has no sales anywhere: its season is the one its title's words sold in its hemisphere."""
    title_south = (_profile(SUMMER_SOUTH, 0.8), 40)
    january, level = week_demand(SUMMER_SOUTH, (None, None), (None, None), (None, None), title_south)
    july, _ = week_demand(SUMMER_NORTH, (None, None), (None, None), (None, None), title_south)
    assert level == "title"
    assert january > 5 > 1 > july
    # Its own sales, once it has enough, outweigh its title's.
    own = (_profile(SUMMER_NORTH, 0.8), 1_000)
    july, level = week_demand(SUMMER_NORTH, (None, None), own, own, title_south)
    assert level == "hemisphere" and july > 5
