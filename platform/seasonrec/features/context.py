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


def seasonal_context(inputs: dict[str, list]) -> dict[str, list]:
    """Columns in, columns out: one output row per input row; missing inputs give nulls."""
    out: dict[str, list] = {name: [] for name in (*s.SEASONAL_CONTEXT_FEATURES, s.HISTORY_AGE_HOURS)}
    for ts, region, demand, launch, history in zip(
        inputs[s.REQUEST_TS],
        inputs[s.REGION],
        inputs[s.DEMAND_BY_WEEK],
        inputs[s.LAUNCH_TS],
        inputs[s.HISTORY_TS],
        strict=True,
    ):
        week, sin, cos, days = _request_context(ts, region)
        out["week_sin"].append(sin)
        out["week_cos"].append(cos)
        out["days_to_holiday"].append(days)
        out["item_week_demand"].append(demand[week - 1] * s.WEEKS_PER_YEAR if demand else None)
        # Not negative: an item requested before its launch is new, not "about to sell".
        out["item_age_days"].append(max(ts - launch, 0) / SECONDS_PER_DAY if launch is not None else None)
        out[s.HISTORY_AGE_HOURS].append([(ts - t) / 3600.0 for t in history] if history else [])
    return out
