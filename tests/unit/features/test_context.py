"""The request-time seasonal context shared by Feast's on-demand view."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from seasonrec import schema as s
from seasonrec.features.context import seasonal_context


def test_context_for_a_december_request_in_two_hemispheres():
    at = int(datetime(2024, 12, 20, 12, tzinfo=UTC).timestamp())
    demand = [0.0] * s.WEEKS_PER_YEAR
    demand[50] = 0.5  # ISO week 51 holds half the item's sales
    out = seasonal_context(
        {
            s.REQUEST_TS: [at, at],
            s.REGION: ["GB", "CN"],
            s.DEMAND_BY_WEEK: [demand, None],
            s.LAUNCH_TS: [at - 10 * 86400, None],
            s.HISTORY_TS: [[at - 3600, at - 7200], None],
        }
    )
    assert out["week_sin"][0] == math.sin(2 * math.pi * 50 / s.WEEKS_PER_YEAR)
    assert out["days_to_holiday"][0] == 5  # Christmas Day in GB
    assert out["item_week_demand"] == [0.5 * s.WEEKS_PER_YEAR, None]
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
