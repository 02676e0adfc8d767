"""Ranking metrics on small cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seasonrec.model.metrics import list_metrics, mean_metrics, rank_metrics, recall, truth_ranks


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


def test_truth_ranks_put_a_tied_item_after_every_lower_index_it_ties_with():
    scores = np.array([0.5, 0.9, 0.5, 0.5])
    np.testing.assert_array_equal(truth_ranks(scores, np.array([0, 2, 3])), [2, 3, 4])
    np.testing.assert_array_equal(truth_ranks(np.zeros(5), np.array([4, 0])), [5, 1])


def test_a_served_list_hit_at_position_three():
    m = list_metrics([7, 3, 5, 1, 0], np.array([5]))
    assert m["ndcg@10"] == pytest.approx(0.5)  # 1 / log2(3 + 1)
    assert m["hr@10"] == 1.0
    assert m["mrr@10"] == pytest.approx(1 / 3)
    assert "auc" not in m


def test_a_served_list_shorter_than_ten():
    m = list_metrics([4, 2], np.array([2]))
    assert m["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert m["mrr@10"] == pytest.approx(0.5)


def test_truth_outside_the_served_list_or_past_k_is_a_miss():
    assert list_metrics([4, 2], np.array([9])) == {"ndcg@10": 0.0, "hr@10": 0.0, "mrr@10": 0.0}
    assert list_metrics(list(range(12)), np.array([10]))["hr@10"] == 0.0
    assert list_metrics([], np.array([3]))["ndcg@10"] == 0.0


def test_a_served_list_with_one_of_two_purchases_uses_the_ideal_of_two():
    m = list_metrics([5, 1, 2], np.array([5, 8]))
    assert m["ndcg@10"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert m["mrr@10"] == 1.0


def test_recall_is_the_share_of_the_truth_among_the_candidates():
    assert recall(np.array([1, 2, 3]), np.array([3, 9])) == 0.5
    assert recall(np.array([], dtype=np.int64), np.array([3])) == 0.0
    assert math.isnan(recall(np.array([1]), np.array([], dtype=np.int64)))


@pytest.mark.parametrize("seed", range(5))
def test_rank_metrics_agree_with_a_full_sort_on_scores_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 40
    scores = rng.integers(0, 4, size=n).astype(np.float64)  # four distinct values: ties everywhere
    truth = rng.choice(n, size=3, replace=False)
    order = np.lexsort((np.arange(n), -scores))  # best first, ties by item index
    rank_of = np.empty(n, dtype=np.int64)
    rank_of[order] = np.arange(1, n + 1)
    np.testing.assert_array_equal(truth_ranks(scores, truth), rank_of[truth])

    m = rank_metrics(scores, truth)
    served = list_metrics(order.tolist(), truth)
    for name in served:
        assert m[name] == pytest.approx(served[name])
    negatives = np.setdiff1d(np.arange(n), truth)
    pairwise = np.mean([rank_of[p] < rank_of[q] for p in truth for q in negatives])
    assert m["auc"] == pytest.approx(pairwise)
