"""Request-time seasonal context, shared by the Feast on-demand view and offline code.

Kept in the package (not in `feature_repo/`) so the same function serves
online, builds training rows and can be unit-tested without Feast.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache

from seasonrec import schema as s
from seasonrec.data.calendar import days_to_next_holiday

SECONDS_PER_DAY = 86_400.0


@lru_cache(maxsize=4096)
def _request_context(ts: int, region: str | None) -> tuple[int, float, float, int | None]:
    """(ISO week, sin, cos, days to holiday): the same for every candidate of one request."""
    when = datetime.fromtimestamp(ts, tz=UTC)
    week = when.isocalendar().week
    angle = 2.0 * math.pi * (week - 1) / s.WEEKS_PER_YEAR
    days = days_to_next_holiday(region, when.date()) if region else None
    return week, math.sin(angle), math.cos(angle), days


# Regional demand is shrunk towards the hemisphere's, that towards the season of the item's title words in the
# hemisphere, and that towards the item's own in all regions (a hierarchical Dirichlet-multinomial prior, the
# additive-smoothing form of empirical Bayes): a level with N units of demand (units sold, views, carts:
# `tables.demand`) weighs N / (N + PRIOR_UNITS) against the level above. A region with PRIOR_UNITS of an item
# counts half; one with none falls back entirely. All regions' profile is itself smoothed towards a flat year
# with GLOBAL_PRIOR_UNITS spread evenly over the weeks. Both are small: a shop that sells a few units of an item
# a season must keep its season, and 50 units flattened it on the synthetic shop (docs/benchmarks.md).
PRIOR_UNITS = 5.0
GLOBAL_PRIOR_UNITS = 5.0


# A season is a few weeks wide, and a shop that sells an item a few times a year sells it in a neighbouring week
# as often as in the very week: each level's share of `week` is a triangular average over the weeks around it
# (weights 1, 2, 3, 2, 1), wrapping round the year. The weights sum to one, so a year's indices still average 1.0.
WEEK_KERNEL = ((-2, 1 / 9), (-1, 2 / 9), (0, 3 / 9), (1, 2 / 9), (2, 1 / 9))


def _share(profile, units, week: int) -> tuple[float, float]:
    """(share of units around `week`, units) of one level; (0, 0) where the level has no demand."""
    if not profile or not units:
        return 0.0, 0.0
    n = len(profile)
    return sum(w * float(profile[(week - 1 + d) % n]) for d, w in WEEK_KERNEL), float(units)


def week_demand(
    week: int, region: tuple, hemisphere: tuple, everywhere: tuple, title: tuple = (None, None)
) -> tuple[float | None, str | None]:
    """(demand index of `week`, 1.0 = an average week; the level it rests on) from (profile, units) per level.

    Calendar holidays keep their dates in both hemispheres (Christmas sells in December in Australia too)
    while weather seasons flip: each level's profile is what its own regions bought, week by week, so both
    hold without a rule; `title` is the season its title's words sold in the region's hemisphere. The
    level named is the lowest with at least PRIOR_UNITS units: the region's own profile, its hemisphere's,
    the neighbours', or the item's in all regions. None for an item that neither it nor its neighbours sold.
    """
    g, n_g = _share(*everywhere, week)
    t, n_t = _share(*title, week)
    if n_g == 0 and n_t == 0:
        return None, None
    h, n_h = _share(*hemisphere, week)
    r, n_r = _share(*region, week)
    p_g = (g * n_g + GLOBAL_PRIOR_UNITS / s.WEEKS_PER_YEAR) / (n_g + GLOBAL_PRIOR_UNITS)
    p_t = (t * n_t + PRIOR_UNITS * p_g) / (n_t + PRIOR_UNITS)
    p_h = (h * n_h + PRIOR_UNITS * p_t) / (n_h + PRIOR_UNITS)
    p_r = (r * n_r + PRIOR_UNITS * p_h) / (n_r + PRIOR_UNITS)
    evidence = (n_r, n_h, n_t, math.inf if n_g else 0.0)
    level = next((name for name, n in zip(s.DEMAND_LEVELS, evidence, strict=True) if n >= PRIOR_UNITS), "title")
    return p_r * s.WEEKS_PER_YEAR, level


def week_units(week: int, region: tuple) -> float:
    """The region's own units of demand of the item a week around `week` in the years so far (the kernel's
    average); 0.0 where it has none. Not shrunk: it is evidence of volume, which another region's is not."""
    share, units = _share(*region, week)
    return share * units


def item_age_days(ts: int, launch: int | None) -> float | None:
    """Days since the item's launch at `ts`. Not negative: an item requested before its launch is new, not
    "about to sell"."""
    return max(ts - launch, 0) / SECONDS_PER_DAY if launch is not None else None


def seasonal_context(inputs: dict[str, list]) -> dict[str, list]:
    """Columns in, columns out: one output row per input row; missing inputs give nulls."""
    n = len(inputs[s.REQUEST_TS])

    def column(name: str) -> list:
        return inputs.get(name) or [None] * n

    out: dict[str, list] = {name: [] for name in (*s.SEASONAL_CONTEXT_FEATURES, s.HISTORY_AGE_HOURS)}
    for ts, region, demand, total, r_demand, r_units, h_demand, h_units, t_demand, t_units, launch, history in zip(
        inputs[s.REQUEST_TS],
        column(s.REGION),
        column(s.DEMAND_BY_WEEK),
        column(s.TOTAL_DEMAND),
        column(s.REGION_DEMAND_BY_WEEK),
        column(s.REGION_DEMAND),
        column(s.HEMISPHERE_DEMAND_BY_WEEK),
        column(s.HEMISPHERE_DEMAND),
        column(s.TITLE_DEMAND_BY_WEEK),
        column(s.TITLE_DEMAND),
        column(s.LAUNCH_TS),
        column(s.HISTORY_TS),
        strict=True,
    ):
        week, sin, cos, days = _request_context(ts, region)
        out[s.WEEK_SIN].append(sin)
        out[s.WEEK_COS].append(cos)
        out[s.DAYS_TO_HOLIDAY].append(days)
        index, level = week_demand(week, (r_demand, r_units), (h_demand, h_units), (demand, total), (t_demand, t_units))
        out[s.ITEM_WEEK_DEMAND].append(index)
        out[s.WEEK_UNITS].append(week_units(week, (r_demand, r_units)))
        out[s.DEMAND_LEVEL].append(level)
        out[s.ITEM_AGE_DAYS].append(item_age_days(ts, launch))
        out[s.HISTORY_AGE_HOURS].append([(ts - t) / 3600.0 for t in history] if history else [])
    return out
