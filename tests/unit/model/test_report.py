"""The evaluation report on a hand-made metrics dict: which sections it shows and in what order."""

from __future__ import annotations

import copy

import pytest

from seasonrec.model.report import metrics_table, write_report

METHODS = ("ranker", "global_popularity", "p_topfreq")
# Served NDCG@10 puts p_topfreq first; the catalogue view puts the ranker first.
SERVED = {"ranker": 0.2, "global_popularity": 0.1, "p_topfreq": 0.4}
CATALOGUE = {"ranker": 0.5, "global_popularity": 0.3, "p_topfreq": 0.1}


def _cell(ndcg: float, auc: bool) -> dict:
    return {"ndcg@10": ndcg, "hr@10": 2 * ndcg, "mrr@10": ndcg / 2, "requests": 4} | ({"auc": 0.7} if auc else {})


def _view(ndcg: dict, auc: bool) -> dict:
    return {split: {m: _cell(v, auc) for m, v in ndcg.items()} for split in ("all", "repeat", "explore")}


METRICS = {
    "ranker": {k: v for k, v in _cell(CATALOGUE["ranker"], True).items() if k != "requests"},
    "baselines": {m: _cell(CATALOGUE[m], True) for m in METHODS[1:]},
    "views": {
        "catalogue": _view(CATALOGUE, auc=True),
        "served": _view(SERVED, auc=False),
        "retrieval": {
            split: {src: {"recall": 0.25, "requests": 4} for src in ("seasonal_pool", "co_purchase", "union")}
            for split in ("all", "repeat", "explore")
        },
    },
    "repeat_share@10": {"catalogue": dict.fromkeys(METHODS, 0.3), "served": dict.fromkeys(METHODS, 0.6)},
    "slices": {"week": {"2024-01-01": {m: _cell(CATALOGUE[m], True) for m in METHODS}}},
    "data": {"requests": 4, "requests_with_repeats": 2, "candidates": 200},
}
SEASONALITY = {
    half: {
        month: {m: {"in_season_share@10": 0.5, "off_season_rate@10": 0.1, "requests": 3} for m in METHODS}
        for month in ("01", "07")
    }
    for half in ("north", "south")
}


def _with_seasonality() -> dict:
    return copy.deepcopy(METRICS) | {"seasonality": SEASONALITY}


def _methods_in(block: str) -> list[str]:
    return [line.split()[0] for line in block.splitlines()[2:]]


def test_the_text_table_shows_the_served_view_first_best_served_ndcg_first():
    blocks = metrics_table(METRICS).split("\n\n")
    assert [b.splitlines()[0].split()[0] for b in blocks] == ["served", "catalogue", "retrieval"]
    assert _methods_in(blocks[0]) == ["p_topfreq", "ranker", "global_popularity"]
    assert _methods_in(blocks[1]) == ["ranker", "global_popularity", "p_topfreq"]
    assert _methods_in(blocks[2]) == ["seasonal_pool", "co_purchase", "union"]
    assert "recall@200" in blocks[2]


def test_the_text_table_adds_seasonal_correctness_only_when_measured():
    assert "seasonal correctness" not in metrics_table(METRICS)
    blocks = metrics_table(_with_seasonality()).split("\n\n")
    assert blocks[-1].startswith("seasonal correctness")
    # Title, header, and the ranker's row per hemisphere x month: every method's are in report.html.
    assert [line.split()[2] for line in blocks[-1].splitlines()[2:]] == ["ranker"] * 2 * 2


@pytest.mark.parametrize("seasonality", [False, True])
def test_report_shows_the_three_views_and_seasonality_only_when_present(tmp_path, seasonality):
    metrics = _with_seasonality() if seasonality else copy.deepcopy(METRICS)
    page = write_report(metrics, tmp_path / "no-checkpoint", tmp_path).read_text()
    served, catalogue, retrieval = (page.index(f"<h2>{v} view") for v in ("Served", "Catalogue", "Retrieval"))
    assert served < catalogue < retrieval
    assert ("Seasonal correctness" in page) is seasonality
    assert (tmp_path / "seasonality.png").is_file() is seasonality
    for plot in ("views.png", "retrieval.png", "metrics_per_week.png"):
        assert (tmp_path / plot).is_file() and f'src="{plot}"' in page
    assert "training_curves.png" not in page  # no training history beside a missing checkpoint


def test_example_lists_show_titles_cut_beside_ids_with_reasons_escaped(tmp_path):
    long = "Very Long <b>Woolly</b> Christmas Jumper With Reindeer And Bells"
    item = {"item_id": "I1", "title": long, "category": "apparel", "reasons": ["source:repeat", "in_season:GB"]}
    example = {"user_id": "U1", "region": "GB", "at": "2024-12-15", "items": [item]}
    page = write_report(copy.deepcopy(METRICS) | {"examples": [example]}, tmp_path / "none", tmp_path).read_text()
    assert "The ranker&#x27;s list for U1 in GB on 2024-12-15" in page
    assert "Very Long &lt;b&gt;Woolly&lt;/b&gt; Christmas Jumpe…" in page and "<b>" not in page  # 40 characters
    assert "<td>I1</td><td>apparel</td><td>source:repeat, in_season:GB</td>" in page
