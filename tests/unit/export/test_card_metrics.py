"""The model card carries the ranker's figures from every view of the evaluation."""

from __future__ import annotations

from seasonrec.export.export import _card_metrics


def test_the_card_keeps_the_rankers_three_views_on_validation_and_test_and_drops_the_baselines():
    row = {"ndcg@10": 0.3, "hr@10": 0.5, "mrr@10": 0.2, "requests": 40}
    evaluation = {
        "views": {
            "catalogue": {"all": {"ranker": {**row, "auc": 0.8}, "p_topfreq": row}, "repeat": {"ranker": row}},
            "served": {"all": {"ranker": {**row, "ndcg@10": 0.25}, "p_topfreq": row}, "explore": {"ranker": row}},
            "retrieval": {"all": {"union": {"recall": 0.6, "requests": 40}}},
        },
        "repeat_share@10": {"served": {"ranker": 0.4, "p_topfreq": 0.9}},
        "data": {"test_start": "2010-09-01T00:00:00+00:00", "test_end": "2010-12-09T23:59:59+00:00", "requests": 40},
    }
    card = _card_metrics({**evaluation, "validation": {**evaluation, "data": {"start": "2010-08-04", "requests": 9}}})
    assert card["validation"]["window"]["requests"] == 9
    assert _card_metrics(evaluation)["validation"] is None
    card = card["test"]
    assert card["served"]["all"]["ndcg@10"] == 0.25 and card["catalogue"]["all"]["auc"] == 0.8
    assert card["catalogue"]["repeat"] == row and card["served"]["explore"] == row
    assert card["retrieval"]["union"]["recall"] == 0.6
    assert card["repeat_share@10"] == {"served": 0.4}
    assert card["window"]["requests"] == 40 and card["window"]["test_start"].startswith("2010-09-01")
