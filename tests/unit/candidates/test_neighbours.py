"""The neighbour table on hand-made logs and vectors: counts, ties, point in time, launches, change-only rows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.candidates import neighbours as nb
from seasonrec.candidates.neighbours import (
    CO_PURCHASE_IDS,
    SIMILAR_IDS,
    co_purchase_snapshots,
    item_neighbours,
    snapshot_cuts,
    title_neighbours,
)

# 2024-01-01 is a Monday, so the week starts fall on the 1st, 8th, 15th, 22nd and 29th.
MON1, MON8, MON15, MON22 = (datetime(2024, 1, d, tzinfo=UTC) for d in (1, 8, 15, 22))
EARLY = datetime(2023, 12, 20, tzinfo=UTC)


def co_purchase_neighbours(  # the reference: the whole log at once, as serving computed it before
    purchases: pl.LazyFrame,
) -> dict[str, tuple[str, ...]]:
    """Items most often bought by the same users, per item (`purchases`: user and item columns)."""
    buys = purchases.select(s.USER_ID, s.ITEM_ID).unique()
    other = f"{s.ITEM_ID}_other"
    pairs = (
        buys.join(buys, on=s.USER_ID, suffix="_other")
        .filter(pl.col(s.ITEM_ID) != pl.col(other))
        .group_by(s.ITEM_ID, other)
        .len()
        .sort([s.ITEM_ID, "len", other], descending=[False, True, False])
        .group_by(s.ITEM_ID, maintain_order=True)
        .agg(pl.col(other).head(10))
        .collect()
    )
    return {item: tuple(others) for item, others in pairs.rows()}


def _at(day: int, hour: int = 10) -> datetime:
    return datetime(2024, 1, day, hour, tzinfo=UTC)


def _purchases(rows: list[tuple[str, str, datetime]]) -> pl.LazyFrame:
    return pl.LazyFrame(
        rows,
        schema={s.USER_ID: pl.String, s.ITEM_ID: pl.String, s.EVENT_TS: pl.Datetime("us", "UTC")},
        orient="row",
    )


def _profiles(rows: list[tuple[str, datetime, list[float]]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(item, int(launch.timestamp()), vector) for item, launch, vector in rows],
        schema={s.ITEM_ID: pl.String, s.LAUNCH_TS: pl.Int64, s.TITLE_EMBEDDING: pl.List(pl.Float32)},
        orient="row",
    )


def _at_cut(table: pl.DataFrame, cut: datetime, column: str) -> dict[str, list[str]]:
    return {item: ids for item, ids in table.filter(pl.col(s.FEATURE_TS) == cut).select(s.ITEM_ID, column).rows()}


# --- co-purchase --------------------------------------------------------------

# Pairs by distinct buyers: AB 2 (u1 u2), AC 2 (u1 u3), CD 2 (u3 u5), AD 1, BC 1, BD 1.
# u5's repeated purchases count once: counting rows would make CD 10.
BASKETS = {"u1": "ABC", "u2": "AB", "u3": "ACD", "u4": "BD", "u5": "CDCDCD"}
LOG = [(user, item, _at(2)) for user, items in BASKETS.items() for item in items]


def test_co_purchase_counts_distinct_buyers_and_breaks_ties_by_item_id():
    got = _at_cut(co_purchase_snapshots(_purchases(LOG), [MON8], per_item=10), MON8, CO_PURCHASE_IDS)
    assert got == {
        "A": ["B", "C", "D"],
        "B": ["A", "C", "D"],
        "C": ["A", "D", "B"],
        "D": ["C", "A", "B"],
    }


def test_co_purchase_lists_are_capped_per_item():
    got = _at_cut(co_purchase_snapshots(_purchases(LOG), [MON8], per_item=2), MON8, CO_PURCHASE_IDS)
    assert got == {"A": ["B", "C"], "B": ["A", "C"], "C": ["A", "D"], "D": ["C", "A"]}


def test_a_pair_bought_after_a_cut_is_absent_at_it_and_present_at_the_next():
    log = [
        ("u1", "A", _at(3)),
        ("u1", "B", _at(9)),  # makes AB a pair only after MON8
        ("u1", "A", _at(10)),  # a repeat: A's first purchase still counts from the 3rd
        ("u2", "C", _at(3)),
        ("u2", "D", MON8),  # exactly at the cut: not yet in the past
        ("u3", "A", _at(4)),
        ("u3", "E", _at(5)),
    ]
    snaps = co_purchase_snapshots(_purchases(log), [MON8, MON15], per_item=10)
    assert _at_cut(snaps, MON8, CO_PURCHASE_IDS) == {"A": ["E"], "E": ["A"]}
    assert _at_cut(snaps, MON15, CO_PURCHASE_IDS) == {
        "A": ["B", "E"],
        "B": ["A"],
        "C": ["D"],
        "D": ["C"],
        "E": ["A"],
    }


def test_other_event_types_do_not_make_pairs():
    events = _purchases(LOG).with_columns(pl.lit("purchase").alias(s.EVENT_TYPE))
    views = pl.LazyFrame(
        {s.USER_ID: ["u9", "u9"], s.ITEM_ID: ["B", "D"], s.EVENT_TS: [_at(2), _at(2)], s.EVENT_TYPE: ["view"] * 2},
        schema=events.collect_schema(),
    )
    got = _at_cut(co_purchase_snapshots(pl.concat([events, views]), [MON8], per_item=10), MON8, CO_PURCHASE_IDS)
    assert got["B"] == ["A", "C", "D"]  # with u9's views, BD would tie AB at 2 and come before C


def test_every_snapshot_equals_the_neighbours_of_the_log_before_it(monkeypatch):
    """Against the plain full-log computation on a seeded log, the self-join cut into many slices."""
    monkeypatch.setattr(nb, "JOIN_ROWS", 7)
    rng = random.Random(5)
    start = datetime(2024, 1, 3, tzinfo=UTC)
    log = [
        (f"u{rng.randrange(25)}", f"i{rng.randrange(12):02d}", start + timedelta(hours=rng.randrange(24 * 60)))
        for _ in range(250)
    ]
    cuts = [start + timedelta(weeks=w) for w in (1, 3, 5, 9)]
    snaps = co_purchase_snapshots(_purchases(log), cuts, per_item=4)
    for cut in cuts:
        expected = co_purchase_neighbours(_purchases([row for row in log if row[2] < cut]))
        expected = {item: list(others)[:4] for item, others in expected.items()}
        assert _at_cut(snaps, cut, CO_PURCHASE_IDS) == expected


# --- title neighbours ---------------------------------------------------------

# Three clear clusters. The vectors are not unit length: b2 is long and a2 short, so an
# unnormalised inner product would make b2 the nearest of a1 (6 against 0.2).
CLUSTERED = {
    "a1": [1.0, 0.1, 0.0],
    "a2": [0.2, 0.0, 0.02],
    "b1": [0.0, 1.0, 0.1],
    "b2": [3.0, 30.0, 0.0],
    "c1": [0.1, 0.0, 1.0],
    "c2": [0.0, 0.1, 1.0],
}


def test_title_neighbours_are_the_nearest_by_cosine():
    got = title_neighbours(list(CLUSTERED), np.array(list(CLUSTERED.values())), k=1)
    assert got == {"a1": ["a2"], "a2": ["a1"], "b1": ["b2"], "b2": ["b1"], "c1": ["c2"], "c2": ["c1"]}


def test_title_neighbours_exclude_the_item_and_rank_the_rest():
    got = title_neighbours(list(CLUSTERED), np.array(list(CLUSTERED.values())), k=5)
    for item, others in got.items():
        assert sorted(others) == sorted(set(CLUSTERED) - {item})
    assert got["a1"][:2] == ["a2", "b2"]  # cosine 0.99, then 0.2; every other item is under 0.1


def test_a_catalogue_smaller_than_k_gives_every_other_item():
    got = title_neighbours(["x", "y", "z"], np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), k=10)
    assert got == {"x": ["y", "z"], "y": ["x", "z"], "z": ["y", "x"]}
    assert title_neighbours(["x"], np.array([[1.0, 0.0]]), k=10) == {"x": []}


# --- the table ----------------------------------------------------------------


def test_cuts_start_at_the_first_week_and_close_a_week_after_the_last():
    first, last = _at(3), _at(16)  # a Wednesday and a Tuesday
    micros = [int(t.timestamp()) * 1_000_000 for t in (first, last)]
    assert snapshot_cuts(*micros, every_weeks=1) == [MON1, MON8, MON15, MON22]
    assert snapshot_cuts(*micros, every_weeks=2) == [MON1, MON15, MON22]
    assert snapshot_cuts(*micros, every_weeks=3) == [MON1, MON22]


def test_an_item_is_never_a_title_neighbour_before_its_launch():
    launch = _at(10)  # between the cuts of the 8th and the 15th
    # N is a new launch next to A that never sells.
    profiles = _profiles([("A", EARLY, [1.0, 0.0]), ("B", EARLY, [0.0, 1.0]), ("N", launch, [1.0, 0.05])])
    log = [("u1", "A", _at(2)), ("u2", "A", _at(3)), ("u2", "B", _at(3)), ("u1", "B", _at(16))]
    table = item_neighbours(_purchases(log), profiles, every_weeks=1, per_item=1)
    before = table.filter(pl.col(s.FEATURE_TS) < launch)
    assert before[s.FEATURE_TS].unique().sort().to_list() == [MON1, MON8]
    assert "N" not in before[s.ITEM_ID].to_list()
    assert all("N" not in ids for ids in before[SIMILAR_IDS].to_list())
    assert _at_cut(table, MON15, SIMILAR_IDS) == {"A": ["N"], "B": ["N"], "N": ["A"]}


def test_rows_are_written_only_when_an_items_lists_change():
    profiles = _profiles([("A", EARLY, [1.0, 0.0]), ("B", EARLY, [0.0, 1.0]), ("C", EARLY, [1.0, 0.8])])
    # AB becomes a pair in the first week and gains a second buyer in the second: the lists stay the same.
    log = [("u1", "A", _at(2)), ("u1", "B", _at(2)), ("u2", "A", _at(9)), ("u2", "B", _at(9)), ("u3", "C", _at(16))]
    table = item_neighbours(_purchases(log), profiles, every_weeks=1, per_item=10)
    assert table.columns == [s.ITEM_ID, s.FEATURE_TS, CO_PURCHASE_IDS, SIMILAR_IDS]
    assert table.schema[s.FEATURE_TS] == pl.Datetime("us", "UTC")
    assert table.rows() == [
        ("A", MON1, [], ["C", "B"]),
        ("A", MON8, ["B"], ["C", "B"]),
        ("B", MON1, [], ["C", "A"]),
        ("B", MON8, ["A"], ["C", "A"]),
        ("C", MON1, [], ["A", "B"]),
    ]


def test_an_empty_log_gives_an_empty_table():
    table = item_neighbours(_purchases([]), _profiles([("A", EARLY, [1.0])]), every_weeks=4, per_item=10)
    assert table.is_empty()
    assert table.columns == [s.ITEM_ID, s.FEATURE_TS, CO_PURCHASE_IDS, SIMILAR_IDS]


def test_every_weeks_must_be_positive():
    with pytest.raises(ValueError, match="every_weeks"):
        item_neighbours(_purchases(LOG), _profiles([]), every_weeks=0, per_item=10)
