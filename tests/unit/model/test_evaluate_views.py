"""The evaluation's helpers on hand-made rows: the repeat/explore split, the top k and the summary of the views."""

from __future__ import annotations

import numpy as np
import pytest

from seasonrec.errors import SeasonrecError
from seasonrec.model.evaluate import _splits, _top, summarise
from seasonrec.model.metrics import truth_ranks

# --- _splits -----------------------------------------------------------------


def test_repeat_items_were_bought_before_explore_items_were_not_new_items_launched_in_the_window():
    new = np.zeros(10, dtype=bool)
    new[7] = True
    got = _splits(np.array([2, 5, 7]), history=np.array([5, 9]), new=new)
    assert {k: v.tolist() for k, v in got.items()} == {
        "all": [2, 5, 7],
        "repeat": [5],
        "explore": [2, 7],
        "new_items": [7],
    }


def test_a_user_without_history_only_explores():
    got = _splits(np.array([1, 3]), history=np.array([], dtype=np.int64), new=np.zeros(4, dtype=bool))
    assert got["repeat"].tolist() == [] and got["explore"].tolist() == [1, 3] and got["new_items"].tolist() == []


# --- _top --------------------------------------------------------------------


def test_top_k_best_first_ties_by_index():
    assert _top(np.array([0.1, 0.9, 0.5, 0.9, 0.5, 0.2]), k=3).tolist() == [1, 3, 2]


def test_ties_across_the_cut_keep_the_lower_indices():
    assert _top(np.array([1.0, 3.0, 3.0, 3.0, 2.0]), k=2).tolist() == [1, 2]


def test_fewer_items_than_k_gives_them_all():
    assert _top(np.array([0.2, 0.8]), k=10).tolist() == [1, 0]


@pytest.mark.parametrize("seed", range(5))
def test_top_k_are_the_items_ranked_one_to_k_by_the_metrics(seed):
    scores = np.random.default_rng(seed).integers(0, 3, size=30).astype(np.float64)
    top = _top(scores, k=10)
    np.testing.assert_array_equal(truth_ranks(scores, top), np.arange(1, 11))


# --- summarise ---------------------------------------------------------------

W1, W2 = "2024-01-01", "2024-01-08"


def _catalogue(week, method, split, ndcg, auc, share=None):
    row = {"week": week, "view": "catalogue", "method": method, "split": split}
    row |= {"ndcg@10": ndcg, "hr@10": float(ndcg > 0), "mrr@10": ndcg, "auc": auc}
    return row | ({"repeat_share@10": share} if share is not None else {})


def _served(week, method, split, ndcg, share=None):
    row = {"week": week, "view": "served", "method": method, "split": split}
    row |= {"ndcg@10": ndcg, "hr@10": float(ndcg > 0), "mrr@10": ndcg}
    return row | ({"repeat_share@10": share} if share is not None else {})


def _retrieval(week, source, split, value):
    return {"week": week, "view": "retrieval", "method": source, "split": split, "recall": value}


# Two requests: in week 1 a user buys an item again (splits all and repeat), in week 2 something new (all, explore).
ROWS = [
    _retrieval(W1, "co_purchase", "all", 1.0),
    _retrieval(W1, "union", "all", 1.0),
    _retrieval(W1, "co_purchase", "repeat", 1.0),
    _retrieval(W1, "union", "repeat", 1.0),
    _catalogue(W1, "ranker", "all", 1.0, 1.0, share=0.2),
    _catalogue(W1, "ranker", "repeat", 1.0, 1.0),
    _served(W1, "ranker", "all", 0.5, share=0.1),
    _served(W1, "ranker", "repeat", 0.5),
    _catalogue(W1, "p_topfreq", "all", 0.5, 0.8, share=0.6),
    _catalogue(W1, "p_topfreq", "repeat", 0.5, 0.8),
    _served(W1, "p_topfreq", "all", 1.0, share=0.7),
    _served(W1, "p_topfreq", "repeat", 1.0),
    _retrieval(W2, "co_purchase", "all", 0.0),
    _retrieval(W2, "union", "all", 0.5),
    _retrieval(W2, "co_purchase", "explore", 0.0),
    _retrieval(W2, "union", "explore", 0.5),
    _catalogue(W2, "ranker", "all", 0.0, 0.5, share=0.0),
    _catalogue(W2, "ranker", "explore", 0.0, 0.5),
    _served(W2, "ranker", "all", 0.0, share=0.3),
    _served(W2, "ranker", "explore", 0.0),
    _catalogue(W2, "p_topfreq", "all", 0.25, 0.4, share=0.4),
    _catalogue(W2, "p_topfreq", "explore", 0.25, 0.4),
    _served(W2, "p_topfreq", "all", 0.0, share=0.5),
    _served(W2, "p_topfreq", "explore", 0.0),
]


@pytest.fixture(scope="module")
def summary() -> dict:
    return summarise(ROWS, limit=200)


def test_means_per_view_split_and_method(summary):
    views = summary["views"]
    assert views["catalogue"]["all"]["ranker"] == {
        "ndcg@10": 0.5,
        "hr@10": 0.5,
        "mrr@10": 0.5,
        "auc": 0.75,
        "requests": 2,
    }
    assert views["catalogue"]["all"]["p_topfreq"]["auc"] == pytest.approx(0.6)
    assert views["served"]["all"]["p_topfreq"] == {"ndcg@10": 0.5, "hr@10": 0.5, "mrr@10": 0.5, "requests": 2}
    assert views["served"]["repeat"]["p_topfreq"] == {"ndcg@10": 1.0, "hr@10": 1.0, "mrr@10": 1.0, "requests": 1}
    assert views["served"]["explore"]["ranker"]["requests"] == 1
    assert views["retrieval"]["all"]["union"] == {"recall": 0.75, "requests": 2}
    assert views["retrieval"]["explore"]["co_purchase"] == {"recall": 0.0, "requests": 1}


def test_ranker_and_baselines_are_the_catalogue_view_over_all_items(summary):
    assert summary["ranker"] == {"ndcg@10": 0.5, "hr@10": 0.5, "mrr@10": 0.5, "auc": 0.75}
    assert list(summary["baselines"]) == ["p_topfreq"]
    assert summary["baselines"]["p_topfreq"]["ndcg@10"] == pytest.approx(0.375)


def test_repeat_shares_per_view_and_method(summary):
    shares = summary["repeat_share@10"]
    assert set(shares) == {"catalogue", "served"}
    assert shares["catalogue"] == pytest.approx({"ranker": 0.1, "p_topfreq": 0.5})
    assert shares["served"] == pytest.approx({"ranker": 0.2, "p_topfreq": 0.6})


def test_weekly_slices_and_request_counts(summary):
    weeks = summary["slices"]["week"]
    assert list(weeks) == [W1, W2]
    assert weeks[W1]["ranker"]["ndcg@10"] == 1.0 and weeks[W2]["p_topfreq"]["auc"] == pytest.approx(0.4)
    assert summary["data"] == {"requests": 2, "requests_with_repeats": 1, "candidates": 200}


def test_a_log_without_repeat_purchases_counts_none():
    rows = [r for r in ROWS if r["week"] == W2]
    assert summarise(rows, limit=50)["data"]["requests_with_repeats"] == 0


def test_no_rows_is_a_clear_error():
    with pytest.raises(SeasonrecError, match="nothing to evaluate"):
        summarise([], limit=200)


def test_a_candidate_source_that_proposed_nothing_is_named(caplog):
    from collections import Counter

    from seasonrec import schema as s
    from seasonrec.model.evaluate import silent_sources

    proposed = Counter({s.SOURCE_REPEAT: 12, s.SOURCE_SEASONAL_POOL: 40, s.SOURCE_CO_PURCHASE: 3, s.SOURCE_SIMILAR: 5})
    assert silent_sources(proposed) == [s.SOURCE_NEW_ARRIVAL]
    assert f"'{s.SOURCE_NEW_ARRIVAL}' proposed nothing" in caplog.text


def test_no_candidates_at_all_is_a_clear_error():
    from collections import Counter

    from seasonrec.model.evaluate import silent_sources

    with pytest.raises(SeasonrecError, match="no candidate source proposed any item"):
        silent_sources(Counter())
