"""Ranking metrics on small cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seasonrec.model.metrics import mean_metrics, rank_metrics


def test_perfect_ranking_scores_one():
    m = rank_metrics(np.array([0.9, 0.1, 0.5, 0.2]), np.array([0]))
    assert m == {"ndcg@10": 1.0, "hr@10": 1.0, "mrr@10": 1.0, "auc": 1.0}


def test_hit_at_rank_three():
    m = rank_metrics(np.array([0.9, 0.8, 0.7, 0.1]), np.array([2]))
    assert m["ndcg@10"] == pytest.approx(1 / math.log2(4))
    assert m["mrr@10"] == pytest.approx(1 / 3)
    assert m["auc"] == pytest.approx(1 / 3)


def test_miss_beyond_k_and_ties_do_not_flatter():
    scores = np.zeros(20)
    m = rank_metrics(scores, np.array([15]))
    assert m["hr@10"] == 0.0 and m["ndcg@10"] == 0.0 and m["mrr@10"] == 0.0


def test_two_purchases_use_the_ideal_of_two():
    m = rank_metrics(np.array([0.9, 0.1, 0.8, 0.2]), np.array([0, 2]))
    assert m["ndcg@10"] == pytest.approx(1.0)
    assert m["auc"] == pytest.approx(1.0)


def test_mean_over_requests():
    rows = [rank_metrics(np.array([1.0, 0.0]), np.array([0])), rank_metrics(np.array([0.0, 1.0]), np.array([0]))]
    assert mean_metrics(rows)["hr@10"] == 1.0
    assert mean_metrics(rows)["auc"] == 0.5
