"""Point-in-time correctness of the training table built with get_historical_features."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.data.ingest import ingest
from seasonrec.features import store as feast_store
from seasonrec.features.build_features import build_features
from seasonrec.features.training_set import GROUP, LABEL, build_training_set

pytestmark = pytest.mark.integration


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _write_shop(folder):
    folder.mkdir(parents=True)
    items = pl.DataFrame(
        {
            s.ITEM_ID: ["A", "B", "C", "D"],
            s.TITLE: ["Christmas Wreath", "Beach Towel", "Wool Scarf", "Tea Set"],
            s.CATEGORY: ["decor", "outdoor", "apparel", "kitchen"],
            s.PRICE: [10.0, 20.0, 30.0, 40.0],
            s.LAUNCH_TS: [utc(2023, 1, 1)] * 4,
            s.STOCK: [5, 5, 5, 5],
        }
    )
    # U1 buys A, then B ten days later, then C; each purchase changes the features stamped after it.
    rows = [
        ("U1", "A", utc(2024, 1, 10, 10), "purchase", 1, 10.0),
        ("U1", "B", utc(2024, 1, 20, 10), "purchase", 2, 20.0),
        ("U1", "D", utc(2024, 1, 20, 10), "purchase", 1, 40.0),  # same basket as B
        ("U1", "C", utc(2024, 2, 1, 10), "purchase", 1, 30.0),
        ("U2", "D", utc(2024, 1, 15, 9), "view", 1, 40.0),
        ("U2", "D", utc(2024, 1, 25, 9), "purchase", 1, 40.0),
    ]
    events = pl.DataFrame(
        rows, schema=[s.USER_ID, s.ITEM_ID, s.EVENT_TS, s.EVENT_TYPE, s.QUANTITY, s.PRICE], orient="row"
    )
    events.with_columns(pl.lit("GB").alias(s.REGION)).write_parquet(folder / "events.parquet")
    items.write_parquet(folder / "items.parquet")


@pytest.fixture(scope="module")
def handmade(tmp_path_factory, settings_for):
    settings = settings_for(tmp_path_factory.mktemp("pit"))
    _write_shop(settings.paths.raw)
    ingest("canonical", settings.paths.raw, settings.paths.canonical, settings.ingest)
    build_features(settings.paths.canonical, settings.paths.features, settings.features)
    feast_store.apply(settings)
    out = settings.paths.root / "train.parquet"
    build_training_set(settings, out, negatives=1, seed=3)
    return pl.read_parquet(out).filter(pl.col(LABEL) == 1)


def _row(frame: pl.DataFrame, user: str, item: str) -> dict:
    return frame.filter((pl.col(s.USER_ID) == user) & (pl.col(s.ITEM_ID) == item)).to_dicts()[0]


def test_first_purchase_sees_no_user_history(handmade):
    first = _row(handmade, "U1", "A")
    assert first["n_purchases"] is None
    assert first[s.HISTORY_ITEM_IDS] is None


def test_label_sees_values_from_before_it_and_never_after(handmade):
    second = _row(handmade, "U1", "B")
    # Written after A (Jan 10) and before B (Jan 20): one purchase, history [A].
    assert second["n_purchases"] == 1
    assert second[s.HISTORY_ITEM_IDS] == ["A"]
    # The basket bought with B (item D, same second) must not leak into B's features.
    assert "D" not in second[s.HISTORY_ITEM_IDS]
    third = _row(handmade, "U1", "C")
    assert third["n_purchases"] == 3
    assert third[s.HISTORY_ITEM_IDS] == ["A", "B", "D"]


def test_view_before_purchase_is_in_history_but_not_counted_as_purchase(handmade):
    row = _row(handmade, "U2", "D")
    assert row[s.HISTORY_ITEM_IDS] == ["D"]
    assert row["n_views"] == 1 and row["n_purchases"] == 0


def test_rows_carry_the_item_profile_but_not_its_title_embedding(handmade):
    # The ranker holds every catalogue item's title; on each row it would be most of the file.
    assert s.TITLE_EMBEDDING not in handmade.columns
    assert _row(handmade, "U1", "B")[s.CATEGORY] == "outdoor"


def test_no_feature_stamped_after_a_label_reaches_it_on_generated_data(tiny_shop, tmp_path, monkeypatch):
    from seasonrec.features import training_set as training_set_module

    settings = tiny_shop.model_copy(
        update={
            "feast": tiny_shop.feast.model_copy(update={"project": "pit_generated"}),
            "paths": tiny_shop.paths.model_copy(update={"data_dir": tmp_path}),
        }
    )
    shutil.copytree(tiny_shop.paths.root, tmp_path, dirs_exist_ok=True)
    shutil.rmtree(tmp_path / "feast", ignore_errors=True)
    feast_store.apply(settings)
    summary = build_training_set(settings, tmp_path / "train.parquet", negatives=1, seed=0, limit=400)
    table = pl.read_parquet(summary["out"])
    assert table.height == 800
    # Joined in chunks of groups (bounded memory on a large log), the table is the same.
    monkeypatch.setattr(training_set_module, "GROUPS_PER_CHUNK", 70)
    chunked = build_training_set(settings, tmp_path / "chunked.parquet", negatives=1, seed=0, limit=400)
    key = [GROUP, LABEL, s.ITEM_ID]
    assert pl.read_parquet(chunked["out"]).sort(key).equals(table.sort(key))
    label_ts = pl.col(s.REQUEST_TS)
    leaked_history = table.filter(pl.col(s.HISTORY_TS).list.max() >= label_ts)
    leaked_purchase = table.filter(pl.col("last_purchase_ts") >= label_ts)
    assert leaked_history.height == 0, leaked_history.head()
    assert leaked_purchase.height == 0, leaked_purchase.head()
    # And the lookups are not trivially empty: most positives have a history.
    positives = table.filter(pl.col(LABEL) == 1)
    assert positives[s.HISTORY_ITEM_IDS].is_not_null().mean() > 0.5
