"""The ranker's personal inputs (`batch.personal`): what a user's own purchases say of a candidate, the same from
numpy (evaluation, serving) and from polars rows (training)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.model.batch import ITEM_DENSE_COLUMNS, NEVER_BOUGHT_DAYS, PERSONAL_COLUMNS, Vocab, item_arrays, personal

REQUEST = 1_717_243_200  # 2024-06-01 12:00 UTC
DAY = 86_400


def test_the_columns_are_buy_days_since_interval_due():
    assert PERSONAL_COLUMNS == (s.ITEM_BUY_DAYS, "days_since_buy", "buy_interval_days", "due")


def test_never_bought_reads_as_ten_years_ago():
    got = personal(np.nan, np.nan, np.nan, REQUEST)
    assert got.dtype == np.float32 and got.shape == (4,)
    assert got.tolist() == pytest.approx([0.0, math.log1p(3650.0), 0.0, 0.0])
    assert NEVER_BOUGHT_DAYS == 3650.0


def test_none_is_never_bought_too():
    got = personal([None], [None], [None], [REQUEST])
    np.testing.assert_allclose(got, [[0.0, math.log1p(3650.0), 0.0, 0.0]], rtol=1e-6)


def test_an_overdue_habit_is_due_positive():
    """3 buy days, 20 days from first to last: every 10 days; last 15 days ago, so overdue."""
    got = personal(3, REQUEST - 35 * DAY, REQUEST - 15 * DAY, REQUEST)
    assert got.tolist() == pytest.approx(
        [math.log1p(3), math.log1p(15), math.log1p(10), math.log1p(15) - math.log1p(10)], rel=1e-6
    )
    assert got[3] > 0


def test_a_habit_bought_two_days_ago_is_due_negative():
    got = personal(3, REQUEST - 22 * DAY, REQUEST - 2 * DAY, REQUEST)
    assert got.tolist() == pytest.approx(
        [math.log1p(3), math.log1p(2), math.log1p(10), math.log1p(2) - math.log1p(10)], rel=1e-6
    )
    assert got[3] < 0


def test_a_single_buy_day_has_no_interval_and_no_due():
    got = personal(1, REQUEST - 4 * DAY, REQUEST - 4 * DAY, REQUEST)
    assert got.tolist() == pytest.approx([math.log1p(1), math.log1p(4), 0.0, 0.0])


def test_a_purchase_after_the_request_counts_as_just_bought():
    got = personal(2, REQUEST - 10 * DAY, REQUEST + DAY, REQUEST)
    assert got[1] == 0.0


def test_due_is_clipped_to_five():
    """Every 0 days (two buys within a second), last a year ago: log1p(365) - log1p(0) = 5.9 is clipped."""
    got = personal(2, REQUEST - 365 * DAY, REQUEST - 365 * DAY, REQUEST)
    assert got[3] == pytest.approx(5.0)


def test_vectors_encode_row_by_row():
    n = [np.nan, 3, 1]
    first = [np.nan, REQUEST - 35 * DAY, REQUEST - 4 * DAY]
    last = [np.nan, REQUEST - 15 * DAY, REQUEST - 4 * DAY]
    got = personal(n, first, last, np.full(3, REQUEST))
    assert got.shape == (3, 4)
    for row, args in zip(got, zip(n, first, last, strict=True), strict=True):
        assert row.tolist() == personal(*args, REQUEST).tolist()


# --- the polars path: item_arrays on training rows ----------------------------------------------------------

VOCAB = Vocab(items=("A", "B", "C"), categories=("tea",), regions=("GB",))


def rows(**columns) -> pl.DataFrame:
    base = {
        s.ITEM_ID: ["A", "B", "C"],
        s.CATEGORY: ["tea", "tea", None],
        **{c: [1.0, 2.0, None] for c in ITEM_DENSE_COLUMNS},
        s.REQUEST_TS: [REQUEST, REQUEST, REQUEST + 10 * DAY],
    }
    return pl.DataFrame({**base, **columns})


STATS = {
    s.ITEM_BUY_DAYS: pl.Series([3, None, 2], dtype=pl.Int64),
    s.ITEM_FIRST_BUY_TS: pl.Series([REQUEST - 35 * DAY, None, REQUEST - 20 * DAY], dtype=pl.Int64),
    s.ITEM_LAST_BUY_TS: pl.Series([REQUEST - 15 * DAY, None, REQUEST - 2 * DAY], dtype=pl.Int64),
}


def test_item_arrays_personal_equals_the_numpy_function():
    got = item_arrays(rows(**STATS), VOCAB, title_dim=4)["cand_personal"]
    want = personal(
        [3, np.nan, 2],
        [REQUEST - 35 * DAY, np.nan, REQUEST - 20 * DAY],
        [REQUEST - 15 * DAY, np.nan, REQUEST - 2 * DAY],
        [REQUEST, REQUEST, REQUEST + 10 * DAY],
    )
    assert got.dtype == np.float32 and got.shape == (3, len(PERSONAL_COLUMNS))
    np.testing.assert_array_equal(got, want)
    # C: every 18 days, last 12 days before its request.
    assert got[2].tolist() == pytest.approx(
        [math.log1p(2), math.log1p(12), math.log1p(18), math.log1p(12) - math.log1p(18)], rel=1e-6
    )
    assert got[1].tolist() == pytest.approx([0.0, math.log1p(3650.0), 0.0, 0.0])


def test_rows_without_user_item_stats_are_never_bought():
    got = item_arrays(rows(), VOCAB, title_dim=4)["cand_personal"]
    np.testing.assert_allclose(got, [[0.0, math.log1p(3650.0), 0.0, 0.0]] * 3, rtol=1e-6)
