"""Baselines on hand-made purchases: each looks only at what was bought before the moment."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

from seasonrec import schema as s
from seasonrec.model.baselines import Baselines, TifuKnnParams

CATALOGUE = ["A", "B", "C", "D"]


def _purchases(rows):
    return pl.DataFrame(
        rows, schema=[s.USER_ID, s.ITEM_ID, s.EVENT_TS, s.QUANTITY, s.REGION], orient="row"
    ).with_columns(pl.col(s.EVENT_TS).cast(pl.Datetime("us", "UTC")))


ROWS = [
    ("U1", "A", datetime(2023, 12, 10, tzinfo=UTC), 5, "GB"),  # last year's season in GB
    ("U1", "B", datetime(2024, 11, 20, tzinfo=UTC), 1, "GB"),
    ("U1", "C", datetime(2024, 11, 20, tzinfo=UTC), 1, "GB"),  # same basket as B
    ("U2", "B", datetime(2024, 11, 25, tzinfo=UTC), 3, "AU"),
    ("U2", "D", datetime(2024, 12, 20, tzinfo=UTC), 9, "AU"),  # after the moment: must be ignored
]
AT = int(datetime(2024, 12, 9, tzinfo=UTC).timestamp())


def test_each_baseline_ranks_what_it_should():
    b = Baselines(_purchases(ROWS), CATALOGUE, cooccurrence_until=datetime(2024, 12, 1, tzinfo=UTC))
    assert list(b.global_popularity(AT)) == [0, 4, 1, 0]
    seasonal = b.seasonal_popularity(AT, "GB")
    assert np.argmax(seasonal) == 0  # last December's GB seller
    repeat = b.repeat_purchase("U1", AT)
    assert repeat[3] == 0 and repeat[0] > 0 and repeat[1] > repeat[0] / 5
    assert b.cooccurrence("U2", AT)[2] > 0  # C was bought with B
    assert b.repeat_purchase("NEW", AT).sum() == 0


def test_purchases_after_the_moment_are_invisible():
    b = Baselines(_purchases(ROWS), CATALOGUE, cooccurrence_until=datetime(2024, 12, 1, tzinfo=UTC))
    assert b.global_popularity(AT)[3] == 0
    assert b.repeat_purchase("U2", AT)[3] == 0


FIVE = ["A", "B", "C", "D", "E"]


def _nov(day: int, hour: int = 12) -> datetime:
    return datetime(2024, 11, day, hour, tzinfo=UTC)


def _baselines(rows, **tifu) -> Baselines:
    return Baselines(_purchases(rows), FIVE, cooccurrence_until=_nov(1), tifu=TifuKnnParams(**tifu))


def test_p_topfreq_ranks_the_users_basket_counts_then_popularity():
    rows = [
        ("U", "A", _nov(1, 9), 1, "GB"),
        ("U", "A", _nov(1, 18), 2, "GB"),  # the same day's basket: A is counted once for it
        ("U", "A", _nov(2), 1, "GB"),
        ("U", "A", _nov(3), 1, "GB"),
        ("U", "B", _nov(3), 1, "GB"),
        ("U", "E", _nov(4), 1, "GB"),
        ("V", "C", _nov(20), 50, "GB"),
        ("V", "E", _nov(20), 10, "GB"),
        ("V", "D", _nov(20), 5, "GB"),
    ]
    b = _baselines(rows)
    assert list(b.personal_frequency("U", AT)) == [3, 1, 0, 0, 1]
    popularity = b.global_popularity(AT)
    assert popularity[1] == 0 < popularity[3] < popularity[2]  # U's B is older than the popularity window
    order = np.argsort(-b.scores("p_topfreq", "U", AT, "GB", popularity))
    # 3 baskets > 1 basket (E more popular than B) > never bought, by popularity
    assert [FIVE[i] for i in order] == ["A", "E", "B", "C", "D"]


def test_tifu_knn_own_vector_is_the_grouped_decayed_history():
    rows = [
        ("U", "A", _nov(1), 1, "GB"),
        ("U", "A", _nov(2), 1, "GB"),
        ("U", "B", _nov(2), 1, "GB"),
        ("U", "C", _nov(3), 1, "GB"),
        ("U", "D", datetime.fromtimestamp(AT, UTC), 1, "GB"),  # at the moment itself: not yet seen
        ("V", "C", _nov(5), 1, "GB"),
    ]
    b = _baselines(rows, k=1, r_b=0.5, r_g=0.5, alpha=1.0, m=2)
    # Groups of 2 cut from the latest basket: new = ({A,B} * 0.5 + {C}) / 2, old = {A} / 1; user = (old * 0.5 + new) / 2
    np.testing.assert_allclose(b.tifu_knn("U", AT), [0.375, 0.125, 0.25, 0, 0])


NEIGHBOURS = [
    ("U1", "A", _nov(1), 1, "GB"),
    ("U1", "B", _nov(1), 1, "GB"),
    ("U2", "A", _nov(2), 1, "GB"),  # nearest to U1: one item apart
    ("U2", "B", _nov(2), 1, "GB"),
    ("U2", "C", _nov(2), 1, "GB"),
    ("U3", "D", _nov(20), 9, "GB"),  # further: three items apart, and popular
    ("U1", "E", datetime.fromtimestamp(AT, UTC), 1, "GB"),  # at the moment: invisible to every baseline
    ("U2", "E", datetime.fromtimestamp(AT, UTC), 1, "GB"),
    ("W", "E", datetime.fromtimestamp(AT, UTC), 1, "GB"),
]


def test_tifu_knn_borrows_what_the_nearest_neighbour_bought():
    b = _baselines(NEIGHBOURS, k=1, alpha=0.5)
    b.prepare(AT, ["U1", "U2", "W", "NEW"])
    np.testing.assert_allclose(b.tifu_knn("U1", AT), [1, 1, 0.5, 0, 0])
    popularity = b.global_popularity(AT)
    scores = b.scores("tifu_knn", "U1", AT, "GB", popularity)
    assert scores[2] > scores[3] > scores[4]  # the neighbour's C beats the more popular D; E is not seen yet
    on_demand = _baselines(NEIGHBOURS, k=1, alpha=0.5)
    np.testing.assert_allclose(on_demand.tifu_knn("U1", AT), b.tifu_knn("U1", AT))


def test_tifu_knn_at_an_earlier_moment_sees_less():
    b = _baselines(NEIGHBOURS, k=1, alpha=0.5)
    b.prepare(AT, ["U1"])
    # Before U2's first basket U1 has no one to borrow from.
    np.testing.assert_allclose(b.tifu_knn("U1", int(_nov(2, 0).timestamp())), [0.5, 0.5, 0, 0, 0])
    np.testing.assert_allclose(b.tifu_knn("U1", AT), [1, 1, 0.5, 0, 0])


def test_new_users_get_popularity_alone():
    b = _baselines(NEIGHBOURS, k=1, alpha=0.5)
    popularity = b.global_popularity(AT)
    for user in ("W", "NEW"):  # W's only purchase is at the moment itself
        assert b.tifu_knn(user, AT).sum() == 0
        for name in ("p_topfreq", "tifu_knn"):
            np.testing.assert_allclose(b.scores(name, user, AT, "GB", popularity), 1e-6 * popularity / popularity.max())
        assert len(b.history(user, AT)) == 0


def test_history_is_what_was_bought_before_the_moment():
    b = _baselines(NEIGHBOURS)
    assert list(b.history("U2", AT)) == [0, 1, 2]
    assert list(b.history("U1", AT)) == [0, 1]
    assert list(b.history("U1", AT + 1)) == [0, 1, 4]
    assert b.personal_frequency("U1", AT)[4] == 0
