"""Serving encodes a request exactly as training encodes its rows: no training/serving skew."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from seasonrec import schema as s
from seasonrec.model.batch import (
    CONTEXT_COLUMNS,
    ITEM_DENSE_COLUMNS,
    Vocab,
    item_arrays,
    served_candidates,
    user_arrays,
)
from seasonrec.model.ranker import UNSEEN
from seasonrec.serving.contracts import Fetched
from seasonrec.serving.fetcher import ITEM_COLUMNS, title_vector
from seasonrec.serving.scorer import VersionShapes, encode


def test_numpy_encoding_equals_the_training_encoding(tmp_path):
    vocab = Vocab(("A", "B", "C"), ("decor", "toys"), ("AU", "GB"))
    vocab.save(tmp_path / "vocab.json")
    (tmp_path / "config.json").write_text(json.dumps({"history_length": 4, "title_dim": 3}))
    shapes = VersionShapes(tmp_path)
    user = {
        s.HISTORY_ITEM_IDS: ["A", "Z", "B", "C", "A"],  # longer than the history: keep the last 4
        s.HISTORY_AGE_HOURS: [900.0, 500.0, 20.0, 3.0, 1.0],
        s.REQUEST_TS: 1_733_000_000,
        "last_purchase_ts": 1_732_000_000,
        s.REGION: "GB",
        **dict(zip(CONTEXT_COLUMNS, [0.5, -0.8, 12.0, 3.0, None, 120.5, 2.0], strict=True)),
    }
    items = [
        {
            s.ITEM_ID: "B",
            s.CATEGORY: "toys",
            s.TITLE_EMBEDDING: [0.1, 0.2, 0.3],
            **{c: 2.0 for c in ITEM_DENSE_COLUMNS},
            # bought on 3 days, 40 days apart on average, the last 10 days before the request
            s.ITEM_BUY_DAYS: 3,
            s.ITEM_FIRST_BUY_TS: 1_733_000_000 - 90 * 86_400,
            s.ITEM_LAST_BUY_TS: 1_733_000_000 - 10 * 86_400,
        },
        {s.ITEM_ID: "NEW", s.CATEGORY: "garden", s.TITLE_EMBEDDING: None, s.PRICE: -1.0},
        {
            s.ITEM_ID: "C",
            s.CATEGORY: None,
            s.TITLE_EMBEDDING: [1.0, 0.0, 0.0],
            "trend_ratio": float("nan"),
            s.ITEM_BUY_DAYS: 1,
            s.ITEM_FIRST_BUY_TS: 1_732_000_000,
            s.ITEM_LAST_BUY_TS: 1_732_000_000,
        },
    ]
    columns = {column: [row.get(column) for row in items] for column in ITEM_COLUMNS}  # as the fetcher sends them
    # Only the item the version has never seen carries its title.
    assert shapes.unknown(columns[s.ITEM_ID]) == ["NEW"]
    titles = np.stack([title_vector(row[s.TITLE_EMBEDDING], 3) for row in items if row[s.ITEM_ID] == "NEW"])
    served = encode(Fetched(user=user, items=columns, region="GB"), shapes, titles)

    user_frame = pl.DataFrame([user]).with_columns(pl.col(c).cast(pl.Float64) for c in CONTEXT_COLUMNS)
    trained = user_arrays(user_frame, vocab, 4)
    item_frame = pl.DataFrame(
        [
            {
                k: row.get(k)
                for k in (s.ITEM_ID, s.CATEGORY, s.TITLE_EMBEDDING, *ITEM_DENSE_COLUMNS, *s.USER_ITEM_FEATURES)
            }
            | {s.REQUEST_TS: user[s.REQUEST_TS]}
            for row in items
        ],
        schema={
            s.ITEM_ID: pl.String,
            s.CATEGORY: pl.String,
            s.TITLE_EMBEDDING: pl.List(pl.Float32),
            **{c: pl.Float64 for c in ITEM_DENSE_COLUMNS},
            **{c: pl.Int64 for c in s.USER_ITEM_FEATURES},
            s.REQUEST_TS: pl.Int64,
        },
    )
    trained.update({k: v[None] for k, v in item_arrays(item_frame, vocab, 3).items()})
    # Training's rows carry every title; the served request keeps only the new item's, in its own table.
    new = trained["cand_ids"] == UNSEEN
    trained.update(
        served_candidates(
            trained.pop("cand_ids"),
            vocab.sizes["n_items"],
            [trained.pop("cand_titles")[new]],
            [trained.pop("cand_categories")[new]],
        )
    )
    assert served["cand_ids"].tolist() == [[3, vocab.sizes["n_items"], 4]]
    assert set(served) == set(trained) == set(s.RANKER_INPUTS)
    for name in s.RANKER_INPUTS:
        assert served[name].dtype == trained[name].dtype, name
        np.testing.assert_allclose(served[name], trained[name], rtol=1e-6, err_msg=name)
