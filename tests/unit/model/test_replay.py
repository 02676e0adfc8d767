"""The evaluation's as-of readers of the offline tables: `model.replay`."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from seasonrec import schema as s
from seasonrec.model.replay import ArrivalTable


def _at(day: int) -> datetime:
    return datetime(2024, 6, day, tzinfo=UTC)


def test_new_arrivals_are_read_as_of_the_request_in_the_regions_hemisphere(tmp_path):
    pl.DataFrame(
        {
            s.HEMISPHERE: ["north", "north", "south"],
            s.FEATURE_TS: [_at(1), _at(10), _at(5)],
            s.NEW_ARRIVAL_IDS: [["a"], ["b", "a"], ["z"]],
        }
    ).write_parquet(tmp_path / f"{s.NEW_ARRIVALS}.parquet")
    arrivals = ArrivalTable(tmp_path)
    ts = {day: int(_at(day).timestamp()) for day in (1, 9, 10, 20)}
    assert arrivals.at(ts[1] - 1, "GB") == []  # before the first row
    assert arrivals.at(ts[1], "GB") == ["a"]  # a row counts from its own moment
    assert arrivals.at(ts[9], "GB") == ["a"]
    assert arrivals.at(ts[10], "DE") == ["b", "a"]
    assert arrivals.at(ts[20], "AU") == ["z"]
