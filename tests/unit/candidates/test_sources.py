"""Candidate sources on hand-made pools, histories and arrivals: what each proposes and how they are merged."""

from __future__ import annotations

from seasonrec import schema as s
from seasonrec.candidates.sources import (
    NO_NEIGHBOURS,
    CandidateSet,
    Neighbours,
    gather,
    merge_pools,
    propose,
)

POOL, CO, NEW, REPEAT, SIMILAR = (
    s.SOURCE_SEASONAL_POOL,
    s.SOURCE_CO_PURCHASE,
    s.SOURCE_NEW_ARRIVAL,
    s.SOURCE_REPEAT,
    s.SOURCE_SIMILAR,
)


# --- gather ------------------------------------------------------------------


def test_sources_take_turns():
    got = gather({"a": ["a1", "a2", "a3"], "b": ["b1"], "c": ["c1", "c2"]}, limit=10)
    assert got.item_ids == ["a1", "b1", "c1", "a2", "c2", "a3"]
    assert got.sources == [("a",), ("b",), ("c",), ("a",), ("c",), ("a",)]


def test_an_item_proposed_by_two_sources_is_listed_once_with_both():
    got = gather({"a": ["x", "y"], "b": ["x", "z"]}, limit=10)
    assert got.item_ids == ["x", "y", "z"]
    assert got.sources == [("a", "b"), ("a",), ("b",)]


def test_shared_item_lists_its_sources_in_source_order_whichever_offered_it_first():
    got = gather({"a": ["x", "y"], "b": ["y"]}, limit=10)
    assert got.sources[got.item_ids.index("y")] == ("a", "b")


def test_the_limit_caps_the_union_but_a_short_source_still_gets_its_share():
    pool = [f"p{i}" for i in range(50)]
    got = gather({"pool": pool, "co": ["n1", "n2"]}, limit=4)
    assert got.item_ids == ["p0", "n1", "p1", "n2"]
    assert got.of_source("co") == ["n1", "n2"]


def test_a_full_set_still_records_a_further_source_of_an_item_it_holds():
    got = gather({"pool": ["a", "b", "c"], "co": ["x", "y", "a"]}, limit=3)
    assert got.item_ids == ["a", "x", "b"]
    assert got.sources[0] == ("pool", "co")


def test_empty_sources_propose_nothing():
    assert len(gather({"pool": [], "co": []}, limit=5)) == 0
    assert len(gather({}, limit=5)) == 0
    got = gather({"pool": [], "co": ["x"], "new": []}, limit=5)
    assert got.item_ids == ["x"] and got.sources == [("co",)]


def test_of_source_keeps_candidate_order():
    cands = CandidateSet(["a", "b", "c"], [("pool",), ("pool", "co"), ("co",)])
    assert len(cands) == 3
    assert cands.of_source("co") == ["b", "c"]
    assert cands.of_source("pool") == ["a", "b"]
    assert cands.of_source("new") == []


# --- propose -----------------------------------------------------------------


def test_neighbours_come_from_the_latest_five_history_items_latest_first():
    history = [f"h{i}" for i in range(1, 8)]  # oldest first, as the history feature holds it
    neighbours = Neighbours({f"h{i}": [f"n{i}"] for i in range(1, 8)}, {})
    got = propose([], history, neighbours, [], limit=100)
    assert got.of_source(CO) == ["n7", "n6", "n5", "n4", "n3"]


def test_neighbours_shared_by_recent_items_appear_once():
    neighbours = Neighbours({"h1": ["x", "y"], "h2": ["y", "z"]}, {})
    got = propose([], ["h1", "h2"], neighbours, [], limit=100)
    assert got.of_source(CO) == ["y", "z", "x"]


def test_an_item_bought_again_counts_once_among_the_recent_items():
    history = ["h1", "h2", "h3", "h4", "h5", "h5", "h5"]
    neighbours = Neighbours({f"h{i}": [f"n{i}"] for i in range(1, 6)}, {})
    got = propose([], history, neighbours, [], limit=100)
    assert got.of_source(CO) == ["n5", "n4", "n3", "n2", "n1"]


def test_title_neighbours_of_recent_items_are_their_own_source():
    neighbours = Neighbours({"h1": ["x"]}, {"h1": ["new-launch", "x"]})
    got = propose([], ["h1"], neighbours, [], limit=100)
    assert set(got.of_source(SIMILAR)) == {"new-launch", "x"}
    assert got.sources[got.item_ids.index("x")] == (CO, SIMILAR)


def test_the_users_own_purchases_come_first_up_to_their_quota_then_take_turns():
    repeats = ["r1", "r2", "r3", "r4"]
    got = propose(["p1", "p2"], [], NO_NEIGHBOURS, [], limit=5, repeats=repeats, repeat_limit=2)
    assert got.item_ids == ["r1", "r2", "r3", "p1", "r4"]
    assert got.of_source(REPEAT) == ["r1", "r2", "r3", "r4"]


def test_a_repeat_item_also_in_the_pool_lists_both_sources():
    got = propose(["r1"], [], NO_NEIGHBOURS, [], limit=5, repeats=["r1"], repeat_limit=1)
    assert got.item_ids == ["r1"] and got.sources == [(REPEAT, POOL)]


def test_propose_unites_the_three_sources():
    neighbours = Neighbours({"h1": ["p1", "n1"]}, {})
    got = propose(["p1", "p2"], ["h1"], neighbours, ["new1"], limit=100)
    assert got.item_ids == ["p1", "new1", "p2", "n1"]
    assert got.sources == [(POOL, CO), (NEW,), (POOL,), (CO,)]


# --- merge_pools -------------------------------------


def test_the_regions_pool_comes_first_topped_up_from_all_regions_without_duplicates():
    region = {s.POOL_ITEM_IDS: ["a", "b"], s.POOL_SCORES: [0.9, 0.5]}
    everywhere = {s.POOL_ITEM_IDS: ["b", "c"], s.POOL_SCORES: [0.8, 0.7]}
    assert merge_pools([region, everywhere]) == [("a", 0.9), ("b", 0.5), ("c", 0.7)]


def test_a_region_without_a_pool_falls_back_to_all_regions():
    missing = {s.POOL_ITEM_IDS: None, s.POOL_SCORES: None}  # what the online store returns for an unknown key
    everywhere = {s.POOL_ITEM_IDS: ["c"], s.POOL_SCORES: [0.7]}
    assert merge_pools([missing, everywhere]) == [("c", 0.7)]
    assert merge_pools([]) == []
