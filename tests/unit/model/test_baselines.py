"""Baselines on hand-made purchases: each looks only at what was bought before the moment."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

from seasonrec import schema as s
from seasonrec.model.baselines import Baselines

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
