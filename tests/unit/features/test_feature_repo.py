"""feature_repo/ must agree with schema.py and with the tables the builders write."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.features import store as feast_store
from seasonrec.features.store import _in_repo

VIEW_FEATURES = {
    s.USER_STATS: s.USER_STATS_FEATURES,
    s.USER_HISTORY: s.USER_HISTORY_FEATURES,
    s.ITEM_PROFILE: s.ITEM_PROFILE_FEATURES,
    s.ITEM_DEMAND: (*s.ITEM_DEMAND_FEATURES, *s.ITEM_REBUY_FEATURES),
    s.REGION_ITEM_DEMAND: s.REGION_ITEM_DEMAND_FEATURES,
    s.HEMISPHERE_ITEM_DEMAND: s.HEMISPHERE_ITEM_DEMAND_FEATURES,
    s.TITLE_ITEM_DEMAND: s.TITLE_ITEM_DEMAND_FEATURES,
    s.REGION_ITEM_TRENDS: s.REGION_ITEM_FEATURES,
    s.SEASONAL_POOLS: s.SEASONAL_POOL_FEATURES,
    s.USER_ITEM_STATS: s.USER_ITEM_FEATURES,
    s.USER_REPEATS: s.USER_REPEATS_FEATURES,
    s.ITEM_NEIGHBOURS: s.ITEM_NEIGHBOURS_FEATURES,
    s.NEW_ARRIVALS: s.NEW_ARRIVALS_FEATURES,
}


@pytest.fixture(scope="module")
def repo(tiny_shop):
    from feast.repo_operations import parse_repo

    os.environ.update(feast_store.feast_env(tiny_shop))
    with _in_repo(tiny_shop) as path:
        os.chdir(path)
        return parse_repo(path)


def test_every_view_is_named_in_schema_with_its_features(repo):
    views = {v.name: v for v in repo.feature_views}
    assert set(views) == set(s.OFFLINE_TABLES)
    for name, features in VIEW_FEATURES.items():
        assert [f.name for f in views[name].features] == list(features), name


def test_on_demand_outputs_match_schema(repo):
    (odfv,) = repo.on_demand_feature_views
    assert odfv.name == s.SEASONAL_CONTEXT
    assert [f.name for f in odfv.features] == [*s.SEASONAL_CONTEXT_FEATURES, s.HISTORY_AGE_HOURS]


def test_services_are_versioned_and_named_in_schema(repo):
    assert sorted(f.name for f in repo.feature_services) == sorted([s.RANKER_SERVICE, s.CANDIDATES_SERVICE])
    assert all(f.name.rsplit("_v", 1)[-1].isdigit() for f in repo.feature_services)


def test_built_tables_carry_every_declared_column(repo, tiny_shop):
    for view in repo.feature_views:
        columns = pl.read_parquet_schema(tiny_shop.paths.features / f"{view.name}.parquet")
        expected = {s.FEATURE_TS, *(c.name for c in view.entity_columns), *(f.name for f in view.features)}
        assert expected <= set(columns), (view.name, expected - set(columns))


def test_every_object_has_a_one_line_comment():
    repo_dir = Path(__file__).resolve().parents[3] / "feature_repo"
    for path in repo_dir.glob("*.py"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            starts_object = (
                " = FeatureView(" in line
                or " = Entity(" in line
                or " = FeatureService(" in line
                or " = PushSource(" in line
                or " = RequestSource(" in line
                or line.startswith("@on_demand")
            )
            if starts_object:
                assert lines[i - 1].startswith("#"), f"{path.name}:{i + 1} has no comment saying what it means"
