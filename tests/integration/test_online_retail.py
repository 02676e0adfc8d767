"""The real UCI Online Retail II file, all 525,461 rows (needs ../shared)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.data.ingest import ingest
from seasonrec.features.build_features import build_features

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def retail(tmp_path_factory, settings_for, online_retail_file):
    settings = settings_for(tmp_path_factory.mktemp("retail"))
    summary = ingest("online-retail", online_retail_file, settings.paths.canonical, settings.ingest)
    return settings, summary


def test_every_row_is_accounted_for(retail):
    settings, summary = retail
    assert summary["rows_in"] == 525_461
    assert summary["rows_in"] == summary["rows_accepted"] + sum(summary["rows_rejected"].values())
    rejected = pl.read_parquet(settings.paths.canonical / f"{s.EVENTS_TABLE}{s.REJECTED_SUFFIX}.parquet")
    accepted = pl.read_parquet(settings.paths.canonical / f"{s.EVENTS_TABLE}.parquet")
    assert rejected.height == sum(summary["rows_rejected"].values())
    assert accepted.height == summary["rows_accepted"]
    # Each source row lands exactly once.
    assert rejected[s.SOURCE_ROW].n_unique() == rejected.height
    assert json.loads((settings.paths.canonical / "summary.json").read_text()) == summary


def test_cancellations_and_missing_customers_are_rejected_with_their_reason(retail):
    settings, summary = retail
    assert summary["rows_rejected"]["cancellation"] > 9_000
    assert summary["rows_rejected"]["missing_customer_id"] > 100_000
    rejected = pl.read_parquet(settings.paths.canonical / f"{s.EVENTS_TABLE}{s.REJECTED_SUFFIX}.parquet")
    cancelled = rejected.filter(pl.col(s.REASON) == "cancellation")
    assert cancelled["Invoice"].str.starts_with("C").all()


def test_christmas_items_climb_in_autumn_and_features_build(retail):
    settings, _ = retail
    events = pl.read_parquet(settings.paths.canonical / f"{s.EVENTS_TABLE}.parquet")
    items = pl.read_parquet(settings.paths.canonical / f"{s.ITEMS_TABLE}.parquet")
    monthly = (
        events.join(items.select(s.ITEM_ID, s.CATEGORY), on=s.ITEM_ID)
        .group_by(pl.col(s.EVENT_TS).dt.month().alias("month"))
        .agg((pl.col(s.CATEGORY) == "christmas").mean().alias("share"))
    )
    share = dict(zip(monthly["month"].to_list(), monthly["share"].to_list(), strict=True))
    assert share[10] > 5 * share[4]
    manifest = build_features(settings.paths.canonical, settings.paths.features, settings.features)
    assert all(n > 0 for n in manifest["rows"].values())
