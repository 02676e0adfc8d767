"""The Scorer's title-embedding cache, the catalogue check on candidates, and the new-user rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from seasonrec import schema as s
from seasonrec.config import PROJECT_ROOT, Settings
from seasonrec.serving.fetcher import FeatureReader, TitleEmbeddings, TTLCache, row_stamp
from seasonrec.serving.rules import RuleBook

DEFAULT_RULES = PROJECT_ROOT / "configs" / "rules.yaml"


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


class CatalogueReader(FeatureReader):
    """The real request path over an in-memory store holding item profiles only, counting the ids it reads."""

    def __init__(self, profiles: dict[str, dict], cache_size: int = 100, rules: Path = DEFAULT_RULES):
        self.settings = Settings()
        self.rules = RuleBook(rules)
        caches = (TTLCache(cache_size, 60) for _ in range(5))
        self.items, self.neighbours, self.arrivals, self.item_weeks, self.pools = caches
        self.profiles, self.asked, self.pairs = profiles, [], []

    def _read(self, view, rows):
        if view == s.USER_ITEM_STATS:
            self.pairs += [r[s.ITEM_ID] for r in rows]
            return [{s.ITEM_BUY_DAYS: 2} if r[s.ITEM_ID] == "B" else {} for r in rows]
        if view != s.ITEM_PROFILE:
            return [{} for _ in rows]
        self.asked += [r[s.ITEM_ID] for r in rows]
        return [self.profiles.get(r[s.ITEM_ID], {}) for r in rows]


CATALOGUE = {item: {s.CATEGORY: "decor", s.PRICE: 2.5} for item in ("A", "B", "C")}


def test_candidates_outside_the_catalogue_are_dropped_and_counted():
    reader = CatalogueReader(CATALOGUE)
    made_up = [f"MADE-UP-{i}" for i in range(1_000)]
    fetched = reader.request("u1", "GB", datetime(2024, 12, 10, tzinfo=UTC), ["B", *made_up, "A"])
    assert fetched.items[s.ITEM_ID] == ["B", "A"]
    assert fetched.unknown_candidates == 1_000
    # Without candidates of the caller's, none is unknown, however many the candidate stage proposes.
    reader.pool = lambda region, at: [("A", 1.0), ("C", 0.5)]
    proposed = reader.request("u1", "GB", datetime(2024, 12, 10, tzinfo=UTC), None)
    assert sorted(proposed.items[s.ITEM_ID]) == ["A", "C"] and proposed.unknown_candidates == 0


def test_made_up_candidates_never_push_catalogue_items_out_of_the_cache():
    reader = CatalogueReader(CATALOGUE, cache_size=10)
    assert reader.known_items(["A", "B"]) == ["A", "B"]
    assert reader.known_items([f"MADE-UP-{i}" for i in range(50)] + ["C"]) == ["C"]
    reader.asked.clear()
    assert reader.known_items(["A", "B", "C", "MADE-UP-1"]) == ["A", "B", "C"]
    assert reader.asked == ["MADE-UP-1"]  # A, B and C still cached; an unknown id is asked again, never kept
    assert len(reader.items) == 3


def test_pinned_items_join_the_candidates_with_their_rows_so_the_filters_see_their_stock(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "pinned: [C, NOT-IN-CATALOGUE]\n"
        "campaigns: [{name: advent, start: 2024-12-01, end: 2024-12-24, regions: [GB], pin: [B]}]\n"
    )
    catalogue = {**CATALOGUE, "C": {s.CATEGORY: "decor", s.PRICE: 2.5, s.STOCK: 0}}
    reader = CatalogueReader(catalogue, rules=rules)
    fetched = reader.request("u1", "GB", datetime(2024, 12, 10, tzinfo=UTC), ["A"])
    items = fetched.items
    assert items[s.ITEM_ID] == ["A", "B", "C"]  # a pin the catalogue lacks is dropped like any unknown id
    assert items[s.STOCK][2] == 0  # so the re-ranker's stock filter bars it, pinned or not
    outside = reader.request("u1", "GB", datetime(2024, 7, 10, tzinfo=UTC), ["A"]).items
    assert outside[s.ITEM_ID] == ["A", "C"]  # the campaign's pin only inside its window


def test_a_history_row_is_stamped_now_or_just_after_the_row_the_store_holds():
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert row_stamp(None, now) == now
    assert row_stamp(now - timedelta(seconds=1), now) == now
    # Another replica's clock ran ahead, or this one stepped back: stay after the stored row.
    assert row_stamp(now + timedelta(hours=1), now) == now + timedelta(hours=1, microseconds=1)
    assert row_stamp(now, now) == now + timedelta(microseconds=1)


def test_only_items_on_a_users_complete_purchase_list_are_read_for_their_purchases():
    reader = CatalogueReader(CATALOGUE)
    user = {s.REPEAT_ITEM_IDS: ["B", "Z"]}  # shorter than features.repeat_size: every item the user bought
    assert reader.bought(user, "u1", ["A", "B", "C"]) == [{}, {s.ITEM_BUY_DAYS: 2}, {}]
    assert reader.pairs == ["B"]
    assert reader.bought({}, "u1", ["A", "C"]) == [{}, {}] and reader.pairs == ["B"]  # bought nothing: no read
    # A full list may have left purchases out: then every candidate is read.
    full = {s.REPEAT_ITEM_IDS: [f"I{i}" for i in range(reader.settings.features.repeat_size)]}
    assert reader.bought(full, "u1", ["A", "B"]) == [{}, {s.ITEM_BUY_DAYS: 2}]
    assert reader.pairs == ["B", "A", "B"]


def test_an_items_week_demand_is_worked_out_once_per_region_and_week(monkeypatch):
    from seasonrec.features import context

    profile = [1.0 if w in (50, 51) else 0.1 for w in range(1, 54)]
    catalogue = {i: {**CATALOGUE[i], s.DEMAND_BY_WEEK: profile, s.TOTAL_DEMAND: 40} for i in ("A", "B")}
    reader = CatalogueReader(catalogue)
    calls = []
    real = context.week_demand
    # Counted when it has a profile to read: cached rows reach it without one.
    monkeypatch.setattr(context, "week_demand", lambda *a: (a[3][0] and calls.append(a[0])) or real(*a))
    december = reader.request("u1", "GB", datetime(2024, 12, 10, tzinfo=UTC), ["A", "B"])
    again = reader.request("u1", "GB", datetime(2024, 12, 11, tzinfo=UTC), ["A", "B"])
    assert again.items[s.ITEM_WEEK_DEMAND] == december.items[s.ITEM_WEEK_DEMAND]
    assert december.items[s.DEMAND_LEVEL] == again.items[s.DEMAND_LEVEL] == ["global", "global"]
    assert calls.count(50) == 2  # the second request, in the same week, read the cache
    july = reader.request("u1", "GB", datetime(2024, 7, 10, tzinfo=UTC), ["A", "B"])
    assert july.items[s.ITEM_WEEK_DEMAND][0] < december.items[s.ITEM_WEEK_DEMAND][0]
    # The age of an item is the request's own, never cached.
    assert again.items[s.ITEM_AGE_DAYS] == december.items[s.ITEM_AGE_DAYS]


def test_cached_rows_expire_after_their_ttl(monkeypatch):
    from seasonrec.serving import fetcher

    clock = [1_000.0]
    monkeypatch.setattr(fetcher.time, "monotonic", lambda: clock[0])
    cache = TTLCache(10, ttl_s=60)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get_many(["a", "b", "c", "a"]) == [1, 2, None, 1]
    clock[0] += 61
    assert cache.get_many(["a", "b"]) == [None, None] and len(cache) == 0


def test_a_catalogue_change_reaches_the_candidates_rows_once_the_cached_row_expires(monkeypatch):
    from seasonrec.serving import fetcher

    clock = [1_000.0]
    monkeypatch.setattr(fetcher.time, "monotonic", lambda: clock[0])
    catalogue = {item: dict(row) for item, row in CATALOGUE.items()}
    reader = CatalogueReader(catalogue)
    at = datetime(2024, 12, 10, tzinfo=UTC)
    assert reader.request("u1", "GB", at, ["A", "B"]).items[s.STOCK] == [None, None]
    catalogue["A"][s.STOCK] = 0  # sold out, materialized
    reader.asked.clear()
    assert reader.request("u1", "GB", at, ["A", "B"]).items[s.STOCK] == [None, None]  # within the TTL: cached
    assert reader.asked == []
    clock[0] += 301
    assert reader.request("u1", "GB", at, ["A", "B"]).items[s.STOCK] == [0, None]
