"""Candidates travel between replicas as columns; the re-ranker gets them back whole and in order."""

from __future__ import annotations

import pytest

from seasonrec.serving.rules import Candidate, from_columns
from seasonrec.serving.scorer import scored_columns
from seasonrec.triton.client import ScorerError


def _fetched() -> dict:
    items = {
        "item_id": ["A", "B"],
        "category": ["toys", None],
        "stock": [3, 0],
        "launch_ts": [1_700_000_000, None],
        "item_week_demand": [0.5, 2.0],
        "total_demand": [10, None],
        "trend_ratio": [1.2, None],
    }
    return {"items": items}


def test_scored_columns_become_the_candidates_the_rules_read():
    got = from_columns(scored_columns(_fetched(), [0.25, 0.75]))
    assert got == [
        Candidate("A", 0.25, "toys", 3, 1_700_000_000, 0.5, 10, 1.2),
        Candidate("B", 0.75, None, 0, None, 2.0, None, None),
    ]


def test_fields_the_columns_lack_are_none():
    (only,) = from_columns({"item_id": ["P"], "score": [0.1]})  # the seasonal fallback sends no more
    assert only == Candidate("P", 0.1)


def test_a_score_count_that_differs_from_the_candidates_is_an_error_not_a_misalignment():
    with pytest.raises(ScorerError, match="1 scores for 2 candidates"):
        scored_columns(_fetched(), [0.5])
