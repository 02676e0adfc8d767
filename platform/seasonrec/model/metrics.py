"""Ranking metrics of one request: NDCG@k, HR@k, MRR@k and AUC over scores, or the first three over a served list."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRICS = ("ndcg@10", "hr@10", "mrr@10", "auc")
LIST_METRICS = METRICS[:3]  # a served list is only its top k: no AUC


def truth_ranks(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The 1-based rank of each truth index, ties broken by item index, so equal scores never flatter a model.

    Counting, not sorting: a request has a handful of truth items and the catalogue
    may have tens of thousands, where a full sort per request and method dominated the evaluation.
    """
    mine = scores[truth][:, None]
    higher = (scores[None, :] > mine).sum(1)
    tied_before = ((scores[None, :] == mine) & (np.arange(len(scores))[None, :] < truth[:, None])).sum(1)
    return higher + tied_before + 1


def _top_metrics(hit_ranks: np.ndarray, n_truth: int, k: int) -> dict[str, float]:
    top = np.sort(hit_ranks[hit_ranks <= k])
    ideal = np.sum(1.0 / np.log2(np.arange(2, min(n_truth, k) + 2)))
    return {
        "ndcg@10": float(np.sum(1.0 / np.log2(top + 1)) / ideal),
        "hr@10": float(len(top) > 0),
        "mrr@10": float(1.0 / top[0]) if len(top) else 0.0,
    }


def rank_metrics(scores: np.ndarray, truth: np.ndarray, k: int = 10) -> dict[str, float]:
    """Metrics of one request: `scores` over all items, `truth` the indices of the items bought."""
    hit_ranks = np.sort(truth_ranks(scores, truth))
    n_neg = len(scores) - len(truth)
    # Negatives ranked below each positive, over all negatives: the pairwise AUC.
    below = (len(scores) - hit_ranks) - (len(truth) - 1 - np.arange(len(truth)))
    return {**_top_metrics(hit_ranks, len(truth), k), "auc": float(np.mean(below / n_neg)) if n_neg else 1.0}


def list_metrics(ranked: Sequence[int], truth: np.ndarray, k: int = 10) -> dict[str, float]:
    """Metrics of one served list (item indices, best first) against the truth indices."""
    position = {item: rank for rank, item in enumerate(ranked[:k], start=1)}
    hit_ranks = np.array([position[t] for t in truth if t in position], dtype=np.int64)
    return _top_metrics(hit_ranks, len(truth), k)


def recall(candidates: np.ndarray, truth: np.ndarray) -> float:
    """The share of the truth among the candidates (both catalogue indices)."""
    return float(np.isin(truth, candidates).mean()) if len(truth) else float("nan")


def mean_metrics(rows: list[dict[str, float]], names: Sequence[str] = METRICS) -> dict[str, float]:
    return {m: float(np.mean([r[m] for r in rows])) if rows else float("nan") for m in names}
