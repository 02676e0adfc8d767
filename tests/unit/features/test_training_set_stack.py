"""`features.training_set.stack`: the chunks of the point-in-time join as one table."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest

from seasonrec.features.training_set import stack


def test_a_chunk_without_any_value_of_a_feature_takes_the_other_chunks_type():
    # What Feast's join gives through pandas: the early chunk has no title season yet (None objects).
    early = pl.from_pandas(pd.DataFrame({"group": [0, 0], "profile": pd.Series([None, None], dtype=object)}))
    later = pl.DataFrame(
        {"group": [1, 1], "profile": [[0.5, 0.5], None]}, schema_overrides={"profile": pl.List(pl.Float32)}
    )
    assert early.schema["profile"] == pl.String  # the cause: pandas' None objects read as strings
    with pytest.raises(pl.exceptions.InvalidOperationError):
        pl.concat([early, later], how="vertical_relaxed")
    out = stack([early, later])
    assert out.schema["profile"] == pl.List(pl.Float32)
    assert out["profile"].to_list() == [None, None, [0.5, 0.5], None]
    assert out["group"].to_list() == [0, 0, 1, 1]


def test_chunks_that_agree_are_stacked_unchanged():
    a = pl.DataFrame({"x": [1, 2], "name": ["a", None]})
    b = pl.DataFrame({"x": [3], "name": ["c"]})
    assert stack([a, b]).equals(pl.concat([a, b]))
