"""The Scorer's title-embedding cache: order, zeros for unknown items, one store read per item."""

from __future__ import annotations

import numpy as np

from seasonrec import schema as s
from seasonrec.serving.fetcher import TitleEmbeddings, TTLCache


class CountingTitles(TitleEmbeddings):
    """The real lookup over an in-memory store that counts the keys it is asked for."""

    def __init__(self, stored: dict[str, list[float]], cache_size: int = 100):
        self.stored, self.asked = stored, []
        self.dim = 2
        self.cache = TTLCache(cache_size, ttl_s=60)

    def _read(self, view, rows):
        assert view == s.ITEM_PROFILE
        self.asked += [r[s.ITEM_ID] for r in rows]
        return [{s.TITLE_EMBEDDING: self.stored[r[s.ITEM_ID]]} if r[s.ITEM_ID] in self.stored else {} for r in rows]


def test_lookup_keeps_request_order_and_gives_zeros_for_unknown_items():
    titles = CountingTitles({"A": [1.0, 2.0], "B": [3.0, 4.0]})
    got = titles.lookup(["B", "NEW", "A", "B"])
    np.testing.assert_array_equal(got, [[3, 4], [0, 0], [1, 2], [3, 4]])
    assert got.dtype == np.float32 and titles.asked == ["B", "NEW", "A"]


def test_a_cached_item_is_not_read_again_and_an_empty_request_has_no_rows():
    titles = CountingTitles({"A": [1.0, 2.0]})
    titles.lookup(["A"])
    np.testing.assert_array_equal(titles.lookup(["A", "A"]), [[1, 2], [1, 2]])
    assert titles.asked == ["A"]
    assert titles.lookup([]).shape == (0, 2)


def test_a_cache_smaller_than_the_request_still_answers_every_item():
    titles = CountingTitles({str(i): [float(i), 0.0] for i in range(5)}, cache_size=2)
    got = titles.lookup([str(i) for i in range(5)])
    np.testing.assert_array_equal(got[:, 0], [0, 1, 2, 3, 4])
