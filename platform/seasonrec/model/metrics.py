"""Ranking metrics over the full catalogue: NDCG@k, HR@k, MRR@k and AUC."""

from __future__ import annotations

import numpy as np

METRICS = ("ndcg@10", "hr@10", "mrr@10", "auc")


def rank_metrics(scores: np.ndarray, truth: np.ndarray, k: int = 10) -> dict[str, float]:
    """Metrics of one request: `scores` over all items, `truth` the indices of the items bought.

    Ties are broken by item index, so equal scores never flatter a model.
    """
    order = np.lexsort((np.arange(len(scores)), -scores))
    rank = np.empty(len(scores), dtype=np.int64)
    rank[order] = np.arange(1, len(scores) + 1)
    hit_ranks = np.sort(rank[truth])
    top = hit_ranks[hit_ranks <= k]
    ideal = np.sum(1.0 / np.log2(np.arange(2, min(len(truth), k) + 2)))
    n_neg = len(scores) - len(truth)
    # Negatives ranked below each positive, over all negatives: the pairwise AUC.
    below = (len(scores) - hit_ranks) - (len(truth) - 1 - np.arange(len(truth)))
    return {
        "ndcg@10": float(np.sum(1.0 / np.log2(top + 1)) / ideal),
        "hr@10": float(len(top) > 0),
        "mrr@10": float(1.0 / top[0]) if len(top) else 0.0,
        "auc": float(np.mean(below / n_neg)) if n_neg else 1.0,
    }


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    return {m: float(np.mean([r[m] for r in rows])) if rows else float("nan") for m in METRICS}
