"""Real Feast (SQLite and Redis online stores): apply, materialize, read, push."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pandas as pd
import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.data.calendar import days_to_next_holiday
from seasonrec.features import store as feast_store

pytestmark = pytest.mark.integration

AT = datetime(2024, 12, 2, 12, 0, tzinfo=UTC)


def _latest(settings, table: str, key: str, value: str) -> dict:
    frame = pl.read_parquet(settings.paths.features / f"{table}.parquet")
    return frame.filter(pl.col(key) == value).sort(s.FEATURE_TS).tail(1).to_dicts()[0]


def _active_user(settings) -> str:
    return feast_store.sample_users(settings, 1)[0]


def test_apply_registers_every_declared_object(feast_settings):
    fs = feast_store.open_store(feast_settings)
    assert sorted(v.name for v in fs.list_feature_views()) == sorted(s.OFFLINE_TABLES)
    assert [v.name for v in fs.list_on_demand_feature_views()] == [s.SEASONAL_CONTEXT]
    assert sorted(v.name for v in fs.list_feature_services()) == sorted([s.RANKER_SERVICE, s.CANDIDATES_SERVICE])


def test_online_user_features_are_the_latest_offline_snapshot(feast_settings):
    user = _active_user(feast_settings)
    online = feast_store.online_features(feast_settings, user)["user"]
    stats = _latest(feast_settings, s.USER_STATS, s.USER_ID, user)
    history = _latest(feast_settings, s.USER_HISTORY, s.USER_ID, user)
    assert online["n_purchases"] == stats["n_purchases"] > 0
    assert online["monetary"] == pytest.approx(stats["monetary"])
    assert online[s.HOME_REGION] == stats[s.HOME_REGION]
    assert online[s.HISTORY_ITEM_IDS] == history[s.HISTORY_ITEM_IDS]
    assert len(online[s.HISTORY_ITEM_IDS]) == feast_settings.features.history_length


def test_ranker_service_joins_item_region_and_request_context(feast_settings):
    user = _active_user(feast_settings)
    region = feast_store.online_features(feast_settings, user)["user"][s.HOME_REGION]
    pool = feast_store.candidate_pool(feast_settings, region, AT)
    assert pool, "the seasonal pool for the user's region is empty"
    result = feast_store.online_features(feast_settings, user, pool[:5] + ["NO-SUCH-ITEM"], at=AT)
    assert result["region"] == region
    rows = {row[s.ITEM_ID]: row for row in result["items"]}
    known = rows[pool[0]]
    profile = _latest(feast_settings, s.ITEM_PROFILE, s.ITEM_ID, pool[0])
    assert known[s.CATEGORY] == profile[s.CATEGORY]
    assert len(known[s.TITLE_EMBEDDING]) == feast_settings.features.embedding_dim
    week = AT.isocalendar().week
    assert known["week_sin"] == pytest.approx(math.sin(2 * math.pi * (week - 1) / s.WEEKS_PER_YEAR))
    assert known["days_to_holiday"] == days_to_next_holiday(region, AT.date())
    assert known["item_age_days"] == pytest.approx((AT.timestamp() - profile[s.LAUNCH_TS]) / 86400)
    # An item the store has never seen comes back with empty features, not an error.
    assert rows["NO-SUCH-ITEM"][s.CATEGORY] is None


def test_unknown_user_gets_empty_features_not_an_error(feast_settings):
    online = feast_store.online_features(feast_settings, "NOBODY")["user"]
    assert online["n_purchases"] is None
    assert online[s.HISTORY_ITEM_IDS] in (None, [])


def test_pushed_event_updates_online_history_at_once(feast_settings):
    user = _active_user(feast_settings)
    before = feast_store.online_features(feast_settings, user)["user"]
    now = datetime.now(UTC)
    history = (before[s.HISTORY_ITEM_IDS] + ["PUSHED-ITEM"])[-feast_settings.features.history_length :]
    times = (before[s.HISTORY_TS] + [int(now.timestamp())])[-feast_settings.features.history_length :]
    types = (before[s.HISTORY_EVENT_TYPES] + ["purchase"])[-feast_settings.features.history_length :]
    fs = feast_store.open_store(feast_settings)
    row = {s.HISTORY_ITEM_IDS: [history], s.HISTORY_TS: [times], s.HISTORY_EVENT_TYPES: [types]}
    fs.push(s.USER_EVENTS_PUSH, pd.DataFrame({s.USER_ID: [user], s.FEATURE_TS: [now], **row}))
    after = feast_store.online_features(feast_settings, user)["user"]
    assert after[s.HISTORY_ITEM_IDS][-1] == "PUSHED-ITEM" and after[s.HISTORY_EVENT_TYPES][-1] == "purchase"
    assert after[s.HISTORY_ITEM_IDS] != before[s.HISTORY_ITEM_IDS]
