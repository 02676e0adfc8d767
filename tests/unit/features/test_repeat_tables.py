"""A user's own purchases of an item (`user_item_stats`) and their repeat candidates (`user_repeats`), on
hand-made logs: the values, and the timestamps that keep a label from seeing the purchase it predicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.features import tables


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def unix(*args) -> int:
    return int(utc(*args).timestamp())


def events(rows) -> pl.LazyFrame:
    cols = [s.USER_ID, s.ITEM_ID, s.EVENT_TS, s.EVENT_TYPE, s.QUANTITY, s.PRICE, s.REGION]
    return (
        pl.DataFrame(rows, schema=cols, orient="row")
        .with_columns(pl.col(s.EVENT_TS).cast(pl.Datetime("us", "UTC")))
        .lazy()
    )


def buy(user: str, item: str, ts: datetime, quantity: int = 1) -> tuple:
    return (user, item, ts, "purchase", quantity, 2.0, "GB")


def view(user: str, item: str, ts: datetime) -> tuple:
    return (user, item, ts, "view", 1, 2.0, "GB")


LOG = [
    buy("U1", "A", utc(2024, 3, 1, 9)),
    buy("U1", "A", utc(2024, 3, 1, 15), quantity=4),  # a second invoice the same day: still one buy day
    view("U1", "A", utc(2024, 3, 3, 8)),  # looking again is not buying again
    buy("U1", "A", utc(2024, 3, 5, 10)),
    buy("U1", "B", utc(2024, 3, 5, 11)),
    view("U1", "C", utc(2024, 3, 6, 12)),  # only ever viewed
    buy("U2", "A", utc(2024, 3, 3, 12)),
    view("U3", "A", utc(2024, 3, 4, 12)),  # a user who never bought
]


def stats() -> pl.DataFrame:
    return tables.user_item_stats(events(LOG)).collect().sort(s.USER_ID, s.ITEM_ID, s.FEATURE_TS)


# --- user_item_stats -----------------------------------------------------------------------------------


def test_one_row_per_user_item_and_purchase_day_stamped_at_the_days_last_purchase():
    out = stats()
    assert out.select(s.USER_ID, s.ITEM_ID, s.FEATURE_TS).rows() == [
        ("U1", "A", utc(2024, 3, 1, 15)),
        ("U1", "A", utc(2024, 3, 5, 10)),
        ("U1", "B", utc(2024, 3, 5, 11)),
        ("U2", "A", utc(2024, 3, 3, 12)),
    ]


def test_buy_days_count_distinct_days_and_first_last_are_unix_seconds():
    """Two invoices on 1 March count once; the view on 3 March not at all; first is the 09:00 invoice."""
    u1a = stats().filter((pl.col(s.USER_ID) == "U1") & (pl.col(s.ITEM_ID) == "A"))
    assert u1a[s.ITEM_BUY_DAYS].to_list() == [1, 2]
    assert u1a[s.ITEM_FIRST_BUY_TS].to_list() == [unix(2024, 3, 1, 9), unix(2024, 3, 1, 9)]
    assert u1a[s.ITEM_LAST_BUY_TS].to_list() == [unix(2024, 3, 1, 15), unix(2024, 3, 5, 10)]
    assert u1a[s.ITEM_FIRST_BUY_TS].dtype == pl.Int64 and u1a[s.ITEM_LAST_BUY_TS].dtype == pl.Int64


def test_views_alone_make_no_rows():
    out = stats()
    assert "U3" not in out[s.USER_ID].to_list()
    assert "C" not in out[s.ITEM_ID].to_list()


def test_first_and_last_buy_are_unix_seconds_of_the_first_and_the_latest_invoice():
    """The first is the 09:00 invoice of 1 March, not that day's last; the latest moves to 5 March."""
    u1a = stats().filter((pl.col(s.USER_ID) == "U1") & (pl.col(s.ITEM_ID) == "A"))
    assert u1a[s.ITEM_FIRST_BUY_TS].to_list() == [unix(2024, 3, 1, 9), unix(2024, 3, 1, 9)]
    assert u1a[s.ITEM_LAST_BUY_TS].to_list() == [unix(2024, 3, 1, 15), unix(2024, 3, 5, 10)]


def test_buy_days_reach_five_after_five_weekly_purchases():
    """A weekly buyer's fifth purchase day reads 5: the count the ranker and the repurchase rule rest on."""
    rows = [buy("U1", "MILK", utc(2024, 4, 1, 9) + timedelta(weeks=w)) for w in range(5)]
    out = tables.user_item_stats(events(rows)).collect().sort(s.FEATURE_TS)
    assert out[s.ITEM_BUY_DAYS].to_list() == [1, 2, 3, 4, 5]


def test_users_are_counted_apart():
    u2 = stats().filter(pl.col(s.USER_ID) == "U2").to_dicts()
    assert u2 == [
        {
            s.USER_ID: "U2",
            s.ITEM_ID: "A",
            s.FEATURE_TS: utc(2024, 3, 3, 12),
            s.ITEM_BUY_DAYS: 1,
            s.ITEM_FIRST_BUY_TS: unix(2024, 3, 3, 12),
            s.ITEM_LAST_BUY_TS: unix(2024, 3, 3, 12),
        }
    ]


def _as_of(labels: list[tuple[str, str, datetime]], *, exact: bool) -> pl.DataFrame:
    left = pl.DataFrame(labels, schema=[s.USER_ID, s.ITEM_ID, "at"], orient="row").with_columns(
        pl.col("at").cast(pl.Datetime("us", "UTC"))
    )
    return left.sort("at").join_asof(
        stats().sort(s.FEATURE_TS),
        left_on="at",
        right_on=s.FEATURE_TS,
        by=[s.USER_ID, s.ITEM_ID],
        strategy="backward",
        allow_exact_matches=exact,
        check_sortedness=False,  # sorted on time overall, as the replay's `asof`
    )


def test_a_lookup_strictly_before_a_purchase_does_not_see_it():
    """The replay looks up strictly before the request; the training set one microsecond before the purchase."""
    purchases = [("U1", "A", utc(2024, 3, 5, 10)), ("U1", "A", utc(2024, 3, 1, 15)), ("U1", "B", utc(2024, 3, 5, 11))]
    strict = _as_of(purchases, exact=False).sort("at")
    before = _as_of([(u, i, t - timedelta(microseconds=1)) for u, i, t in purchases], exact=True).sort("at")
    for out in (strict, before):
        # 1 March 15:00: the day's row is stamped at that very purchase, so nothing is known yet.
        # 5 March 10:00: only 1 March is known (one buy day, last at 15:00), not the purchase being predicted.
        # 5 March 11:00 of B: never bought before.
        assert out[s.ITEM_BUY_DAYS].to_list() == [None, 1, None]
        assert out[s.ITEM_LAST_BUY_TS].to_list() == [None, unix(2024, 3, 1, 15), None]


def test_a_lookup_after_the_day_sees_every_earlier_buy_day():
    out = _as_of([("U1", "A", utc(2024, 3, 6))], exact=False)
    assert out.select(s.ITEM_BUY_DAYS, s.ITEM_FIRST_BUY_TS, s.ITEM_LAST_BUY_TS).row(0) == (
        2,
        unix(2024, 3, 1, 9),
        unix(2024, 3, 5, 10),
    )


# --- user_repeats ---------------------------------------------------------------------------------------

# OLD was bought on four days three weeks ago, NEW once yesterday, TODAY twice today (one buy day).
HABIT = [
    *(buy("U1", "OLD", utc(2024, 2, d, 10)) for d in (1, 2, 3, 4)),
    buy("U1", "NEW", utc(2024, 2, 24, 10)),
    buy("U1", "TODAY", utc(2024, 2, 25, 10)),
    buy("U1", "TODAY", utc(2024, 2, 25, 18)),
    buy("U2", "X", utc(2024, 2, 10, 10)),
]


def repeats(rows, size: int = 10, half_life_days: float = 7.0) -> pl.DataFrame:
    out = tables.user_repeats(events(rows), size=size, half_life_days=half_life_days)
    return out.collect().sort(s.USER_ID, s.FEATURE_TS)


def snapshot(out: pl.DataFrame, user: str, at: datetime) -> dict:
    (row,) = out.filter((pl.col(s.USER_ID) == user) & (pl.col(s.FEATURE_TS) == at)).to_dicts()
    return row


def test_one_snapshot_per_purchase_day_stamped_at_the_days_last_purchase():
    out = repeats(HABIT)
    u1 = out.filter(pl.col(s.USER_ID) == "U1")[s.FEATURE_TS].to_list()
    assert u1 == [*(utc(2024, 2, d, 10) for d in (1, 2, 3, 4)), utc(2024, 2, 24, 10), utc(2024, 2, 25, 18)]
    assert out.filter(pl.col(s.USER_ID) == "U2")[s.REPEAT_ITEM_IDS].to_list() == [["X"]]


def test_with_a_week_half_life_once_yesterday_beats_four_days_three_weeks_ago():
    """OLD: 0.5^(21/7) + 0.5^(22/7) + 0.5^(23/7) + 0.5^(24/7) = 0.434; NEW: 0.5^(1/7) = 0.906; TODAY: 1 (once)."""
    row = snapshot(repeats(HABIT, half_life_days=7.0), "U1", utc(2024, 2, 25, 18))
    assert row[s.REPEAT_ITEM_IDS] == ["TODAY", "NEW", "OLD"]
    old = sum(0.5 ** (a / 7) for a in (21, 22, 23, 24))
    assert row[s.REPEAT_WEIGHTS] == pytest.approx([1.0, 0.5 ** (1 / 7), old], rel=1e-6)
    assert old == pytest.approx(0.4336, abs=1e-4)


def test_with_a_two_month_half_life_the_habit_wins():
    """OLD: 0.5^(21/60) + ... + 0.5^(24/60) = 3.085, ahead of TODAY (1) and NEW (0.5^(1/60) = 0.989)."""
    row = snapshot(repeats(HABIT, half_life_days=60.0), "U1", utc(2024, 2, 25, 18))
    assert row[s.REPEAT_ITEM_IDS] == ["OLD", "TODAY", "NEW"]
    assert row[s.REPEAT_WEIGHTS] == pytest.approx([3.0847, 1.0, 0.9885], abs=1e-4)


def test_a_snapshot_never_counts_later_purchases():
    row = snapshot(repeats(HABIT), "U1", utc(2024, 2, 4, 10))
    assert row[s.REPEAT_ITEM_IDS] == ["OLD"]
    assert row[s.REPEAT_WEIGHTS] == pytest.approx([sum(0.5 ** (a / 7) for a in (0, 1, 2, 3))], rel=1e-6)


def test_ties_go_to_the_smaller_item_id_and_the_list_is_capped_at_size():
    rows = [buy("U1", item, utc(2024, 5, 1, 10)) for item in ("D", "B", "C", "A")]
    row = repeats(rows, size=3).to_dicts()[0]
    assert row[s.REPEAT_ITEM_IDS] == ["A", "B", "C"]
    assert row[s.REPEAT_WEIGHTS] == pytest.approx([1.0, 1.0, 1.0])


def test_views_are_not_repeat_candidates():
    rows = [buy("U1", "A", utc(2024, 5, 1, 10)), view("U1", "B", utc(2024, 5, 1, 11))]
    out = repeats(rows)
    assert out[s.REPEAT_ITEM_IDS].to_list() == [["A"]]
    assert out[s.FEATURE_TS].to_list() == [utc(2024, 5, 1, 10)]


# --- item_demand: how much an item is bought again -------------------------------------------------------------


def test_item_demand_counts_buy_days_and_re_buys_by_the_same_users_week_by_week():
    """MILK: U1 buys it in week 1 (twice that day: one buy day), U2 in week 1, U1 again in week 2.
    After week 1: 2 buy days, 0 re-buys; after week 2: 3 buy days, 1 re-buy (U1's second day)."""
    rows = [
        buy("U1", "MILK", utc(2024, 3, 4, 9)),
        buy("U1", "MILK", utc(2024, 3, 4, 15)),
        buy("U2", "MILK", utc(2024, 3, 5, 9)),
        buy("U1", "MILK", utc(2024, 3, 12, 9)),
    ]
    got = tables.item_demand(events(rows)).collect().sort(s.FEATURE_TS)
    assert got[s.BUY_DAYS].to_list() == [2, 3]
    assert got[s.REBUY_DAYS].to_list() == [0, 1]


def test_rebuy_share_is_shrunk_for_items_with_few_buys():
    from seasonrec.serving.rules import REBUY_PRIOR_BUYS, rebuy_share

    assert rebuy_share(None, None) is None
    assert rebuy_share(float("nan"), float("nan")) is None
    assert rebuy_share(2, 2) == pytest.approx(2 / (2 + REBUY_PRIOR_BUYS))  # 2 of 2, but only 2: far from 1
    assert rebuy_share(1000, 500) == pytest.approx(500 / (1000 + REBUY_PRIOR_BUYS))
