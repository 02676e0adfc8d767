"""Candidates travel between replicas as columns; the re-ranker gets them back whole and in order."""

from __future__ import annotations

from dataclasses import fields

import pytest

from seasonrec.serving.contracts import Fetched
from seasonrec.serving.rules import Candidate, CandidateColumns, from_columns
from seasonrec.serving.scorer import scored_columns
from seasonrec.triton.client import ScorerError


def _fetched() -> Fetched:
    items = {
        "item_id": ["A", "B"],
        "category": ["toys", None],
        "stock": [3, 0],
        "launch_ts": [1_700_000_000, None],
        "item_week_demand": [0.5, 2.0],
        "total_demand": [10, None],
        "trend_ratio": [1.2, None],
    }
    return Fetched(user={}, items=items, region="GB")


def test_scored_columns_become_the_candidates_the_rules_read():
    got = from_columns(scored_columns(_fetched(), [0.25, 0.75]))
    assert got == [
        Candidate("A", 0.25, "toys", 3, 1_700_000_000, 0.5, 10, 1.2),
        Candidate("B", 0.75, None, 0, None, 2.0, None, None),
    ]


def test_fields_the_columns_lack_are_none():
    (only,) = from_columns(CandidateColumns(item_id=["P"], score=[0.1]))  # the seasonal fallback sends no more
    assert only == Candidate("P", 0.1)


def test_the_columns_carry_every_field_of_a_candidate_but_its_reasons():
    """A field added to `Candidate` and not to the columns would silently take its default after a hop."""
    assert [f.name for f in fields(CandidateColumns)] == [f.name for f in fields(Candidate) if f.name != "reasons"]


def test_a_score_count_that_differs_from_the_candidates_is_an_error_not_a_misalignment():
    with pytest.raises(ScorerError, match="1 scores for 2 candidates"):
        scored_columns(_fetched(), [0.5])
