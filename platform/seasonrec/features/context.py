"""Request-time seasonal context, shared by the Feast on-demand view and offline code.

Kept in the package (not in `feature_repo/`) so the same function serves
online, builds training rows and can be unit-tested without Feast.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from seasonrec import schema as s
from seasonrec.data.calendar import days_to_next_holiday

SECONDS_PER_DAY = 86_400.0


def _week_of_year(ts: int) -> tuple[int, datetime]:
    when = datetime.fromtimestamp(ts, tz=timezone.utc)
    return when.isocalendar().week, when


def seasonal_context(inputs: dict[str, list]) -> dict[str, list]:
    """Columns in, columns out: one output row per input row; missing inputs give nulls."""
    out: dict[str, list] = {name: [] for name in (*s.SEASONAL_CONTEXT_FEATURES, s.HISTORY_AGE_HOURS)}
    n = len(inputs[s.REQUEST_TS])
    for i in range(n):
        ts = inputs[s.REQUEST_TS][i]
        week, when = _week_of_year(ts)
        angle = 2.0 * math.pi * (week - 1) / s.WEEKS_PER_YEAR
        out["week_sin"].append(math.sin(angle))
        out["week_cos"].append(math.cos(angle))
        region = inputs[s.REGION][i]
        out["days_to_holiday"].append(days_to_next_holiday(region, when.date()) if region else None)
        demand = inputs[s.DEMAND_BY_WEEK][i]
        out["item_week_demand"].append(demand[week - 1] * s.WEEKS_PER_YEAR if demand else None)
        launch = inputs[s.LAUNCH_TS][i]
        out["item_age_days"].append((ts - launch) / SECONDS_PER_DAY if launch is not None else None)
        history = inputs[s.HISTORY_TS][i]
        out[s.HISTORY_AGE_HOURS].append([(ts - t) / 3600.0 for t in history] if history else [])
    return out
