"""Negatives from the user's own history (`history_negatives`, `label_rows(from_history=k)`): items they bought
before, never the purchase itself or its basket, topped up from the catalogue, the same for the same seed."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.features.training_set import GROUP, LABEL, LOG_Q, history_negatives, label_rows

TS = pl.Datetime("us", "UTC")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


T1, T2, T3, T4 = utc(2024, 3, 1, 10), utc(2024, 3, 2, 10), utc(2024, 3, 3, 10), utc(2024, 3, 4, 10)
# U1's baskets: {A, B, D}, then {C}, then {A, D} again, then {F}. U2 buys once.
BASKETS = [
    ("U1", "A", T1),
    ("U1", "B", T1),
    ("U1", "D", T1),
    ("U1", "C", T2),
    ("U1", "A", T3),
    ("U1", "D", T3),
    ("U1", "F", T4),
    ("U2", "A", T3),
]


def purchases(rows=BASKETS) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=[s.USER_ID, s.ITEM_ID, s.EVENT_TS], orient="row").with_columns(
        pl.col(s.EVENT_TS).cast(TS)
    )


def positives(rows=BASKETS) -> pl.DataFrame:
    return purchases(rows).with_row_index(GROUP)


def drawn(per_group: int, seed: int) -> dict[int, list[str]]:
    out = history_negatives(positives(), purchases(), per_group, np.random.default_rng(seed))
    return {g: part.sort("slot")[s.ITEM_ID].to_list() for (g,), part in out.partition_by(GROUP, as_dict=True).items()}


def test_negatives_are_items_bought_strictly_before_and_never_the_purchase_or_its_basket():
    """For A at T3 the basket is {A, D}: only B and C are left. F comes later, so it is never drawn."""
    seen: dict[int, set[str]] = {g: set() for g in range(len(BASKETS))}
    for seed in range(40):
        for group, items in drawn(per_group=2, seed=seed).items():
            assert len(items) == len(set(items)) <= 2
            seen[group] |= set(items)
    assert seen[4] == {"B", "C"}  # A at T3
    assert seen[5] == {"B", "C"}  # D at T3
    assert seen[3] == {"A", "B", "D"}  # C at T2: the first basket
    assert seen[6] == {"A", "B", "C", "D"}  # F at T4: everything before


def test_a_first_purchase_and_a_user_without_history_get_no_history_negatives():
    for seed in range(10):
        groups = drawn(per_group=2, seed=seed)
        assert not {0, 1, 2, 7} & set(groups)  # U1's first basket, and U2


def test_a_user_with_fewer_distinct_items_than_min_pool_gets_no_history_negatives():
    """At T2 U1 had bought 3 distinct items (A, B, D), at T3 and T4 four (C too)."""
    groups: set[int] = set()
    for seed in range(10):
        out = history_negatives(positives(), purchases(), 2, np.random.default_rng(seed), min_pool=4)
        assert (out["pool"] >= 4).all()
        groups |= set(out[GROUP].to_list())
    assert groups == {4, 5, 6}  # not 3, C at T2


def test_when_no_user_has_min_pool_items_there_are_no_history_negatives_and_label_rows_still_works():
    out = history_negatives(positives(), purchases(), 2, np.random.default_rng(0), min_pool=50)
    assert out.is_empty() and out.columns == [GROUP, "slot", s.ITEM_ID, "pool"]
    rows = label_rows(shop_events(), CATALOGUE, utc(2024, 3, 1), None, 3, 0, from_history=2, min_pool=50)
    assert rows.filter(pl.col(LABEL) == 0)[s.ITEM_ID].str.starts_with("Z").all()


def test_history_negatives_are_the_same_for_the_same_seed():
    """A, B and D share their first basket: the draws must not depend on the order a group_by returns them."""
    runs = [history_negatives(positives(), purchases(), 2, np.random.default_rng(3)) for _ in range(20)]
    assert all(run.equals(runs[0]) for run in runs)


def test_history_negatives_columns():
    out = history_negatives(positives(), purchases(), 2, np.random.default_rng(3))
    assert out.columns == [GROUP, "slot", s.ITEM_ID, "pool"]
    assert out.schema[GROUP] == pl.UInt32 and out.schema["slot"] == pl.Int64


def test_no_negatives_asked_gives_an_empty_frame():
    out = history_negatives(positives(), purchases(), 0, np.random.default_rng(0))
    assert out.is_empty() and out.columns == [GROUP, "slot", s.ITEM_ID, "pool"]


# --- label_rows(from_history=k) ------------------------------------------------------------------------

# The catalogue holds only Z-items, so a negative from the history (H-items) is told apart from a uniform one.
CATALOGUE = pl.DataFrame(
    {s.ITEM_ID: [f"Z{i:02d}" for i in range(30)], s.LAUNCH_TS: [utc(2023, 1, 1)] * 30},
    schema={s.ITEM_ID: pl.String, s.LAUNCH_TS: TS},
)
HISTORY = [f"H{i:02d}" for i in range(20)]


def shop_events() -> pl.LazyFrame:
    """U1 bought 20 H-items in baskets of four in January, then H00 and H01 together on 1 March; U2 buys once."""
    rows = [("U1", item, utc(2024, 1, 1 + i // 4, 10), "purchase", 1, 1.0, "GB") for i, item in enumerate(HISTORY)]
    rows += [
        ("U1", "H00", utc(2024, 3, 1, 10), "purchase", 1, 1.0, "GB"),
        ("U1", "H01", utc(2024, 3, 1, 10), "purchase", 1, 1.0, "GB"),
        ("U1", "H05", utc(2024, 3, 1, 9), "view", 1, 1.0, "GB"),
        ("U2", "H00", utc(2024, 3, 1, 11), "purchase", 1, 1.0, "AU"),
    ]
    cols = [s.USER_ID, s.ITEM_ID, s.EVENT_TS, s.EVENT_TYPE, s.QUANTITY, s.PRICE, s.REGION]
    return pl.DataFrame(rows, schema=cols, orient="row").with_columns(pl.col(s.EVENT_TS).cast(TS)).lazy()


def labelled(seed: int = 7, negatives: int = 3, from_history: int = 2) -> pl.DataFrame:
    start = utc(2024, 3, 1)
    return label_rows(shop_events(), CATALOGUE, start, None, negatives, seed, from_history=from_history)


def group_of(rows: pl.DataFrame, user: str, item: str) -> pl.DataFrame:
    (group,) = rows.filter((pl.col(s.USER_ID) == user) & (pl.col(s.ITEM_ID) == item) & (pl.col(LABEL) == 1))[GROUP]
    return rows.filter((pl.col(GROUP) == group) & (pl.col(LABEL) == 0))


def test_each_group_keeps_exactly_its_negatives():
    rows = labelled()
    assert rows.group_by(GROUP).agg(pl.col(LABEL).sum().alias("pos"), pl.len().alias("n")).sort(GROUP).rows() == [
        (0, 1, 4),
        (1, 1, 4),
        (2, 1, 4),
    ]


def test_up_to_from_history_negatives_come_from_earlier_purchases_outside_the_basket():
    """H00 is bought with H01: neither is a negative of the other; two of three slots come from the rest of
    the 20-item history, the third from the catalogue."""
    for seed in range(5):
        rows = labelled(seed=seed)
        for item in ("H00", "H01"):
            negs = group_of(rows, "U1", item)[s.ITEM_ID].to_list()
            from_history = [n for n in negs if n.startswith("H")]
            assert len(from_history) == 2 and len(set(from_history)) == 2
            assert not {"H00", "H01"} & set(from_history)
            assert sum(n.startswith("Z") for n in negs) == 1


def test_from_history_is_capped_at_negatives():
    negs = group_of(labelled(from_history=10), "U1", "H00")[s.ITEM_ID].to_list()
    assert len(negs) == 3 and all(n.startswith("H") for n in negs)


def test_a_user_with_no_earlier_purchases_gets_uniform_catalogue_negatives():
    negs = group_of(labelled(), "U2", "H00")[s.ITEM_ID].to_list()
    assert len(negs) == 3 and all(n.startswith("Z") for n in negs)


def test_label_rows_are_the_same_for_the_same_seed():
    runs = [labelled(seed=11) for _ in range(20)]
    assert all(run.equals(runs[0]) for run in runs)


def test_the_seed_changes_the_draws():
    draws = {tuple(group_of(labelled(seed=seed), "U1", "H00")[s.ITEM_ID].sort().to_list()) for seed in range(6)}
    assert len(draws) > 1


def test_without_from_history_negatives_are_all_from_the_catalogue():
    rows = labelled(from_history=0).filter(pl.col(LABEL) == 0)
    assert rows.height == 9 and rows[s.ITEM_ID].str.starts_with("Z").all()


# --- the sampled softmax's correction (LOG_Q) ----------------------------------------------------------


def _small_log():
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    days = [t0 + timedelta(days=d) for d in (0, 1, 2, 3)]
    events = pl.DataFrame(
        {
            s.USER_ID: ["u"] * 4,
            s.ITEM_ID: ["A", "B", "C", "A"],
            s.EVENT_TS: days,
            s.EVENT_TYPE: ["purchase"] * 4,
            s.REGION: ["GB"] * 4,
        }
    )
    items = pl.DataFrame({s.ITEM_ID: list("ABCDEFGH"), s.LAUNCH_TS: [t0 - timedelta(days=9)] * 8})
    return events.lazy(), items


def test_log_q_is_the_log_of_each_rows_expected_count_among_the_negatives():
    """u buys A again on day 3, having bought A, B and C: 2 of 4 negatives come from those 3 items (A itself is
    in the basket, so the draws give B and C), 2 from the 8 launched. An owned item is expected 2/3 + 2/8 times,
    any other 2/8 times."""
    events, items = _small_log()
    rows = label_rows(events, items, None, None, 4, 0, None, 2)
    again = rows.filter(pl.col(GROUP) == 3)
    expected = {item: math.log(2 / 3 + 2 / 8) if item in "ABC" else math.log(2 / 8) for item in "ABCDEFGH"}
    for item, log_q in again.select(s.ITEM_ID, LOG_Q).rows():
        assert log_q == pytest.approx(expected[item]), item


def test_without_history_negatives_the_correction_is_the_same_for_every_row_of_a_group():
    """Uniform negatives need no correction: a constant per group leaves the softmax unchanged."""
    events, items = _small_log()
    rows = label_rows(events, items, None, None, 4, 0, None, 0)
    assert rows.group_by(GROUP).agg(pl.col(LOG_Q).n_unique())[LOG_Q].to_list() == [1] * 4
    assert rows[LOG_Q].to_list() == pytest.approx([math.log(4 / 8)] * rows.height)
