"""The Feast feature store behind seasonrec: open it, apply, materialize, read.

The committed `feature_repo/` is the single declaration of every Feast object.
This module only points it at the paths and services of the typed config (via
the environment variables its YAML files read) and wraps Feast's calls.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from seasonrec import schema as s
from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.progress import progress

log = logging.getLogger(__name__)

PROFILE_FILES = {"embedded": "feature_store.yaml", "redis": "feature_store.redis.yaml"}
USER_FEATURES = [f"{s.USER_STATS}:{f}" for f in s.USER_STATS_FEATURES] + [
    f"{s.USER_HISTORY}:{f}" for f in s.USER_HISTORY_FEATURES
]


def feast_env(settings: Settings) -> dict[str, str]:
    """The variables that `feature_repo/*.yaml` and `sources.py` read."""
    return {
        "SEASONREC_FEAST_PROJECT": settings.feast.project,
        "SEASONREC_FEAST_DIR": str(settings.paths.feast),
        "SEASONREC_FEATURES_DIR": str(settings.paths.features),
        "SEASONREC_REDIS_CONNECTION": settings.feast.redis_connection,
    }


def repo_path(settings: Settings) -> Path:
    return settings.paths.resolve(settings.feast.repo_path)


@contextlib.contextmanager
def _in_repo(settings: Settings) -> Iterator[Path]:
    """Feast imports the repo's modules relative to the working directory; restore it after."""
    repo = repo_path(settings)
    before = os.getcwd()
    # The repo's modules read their paths at import; a second apply must import them afresh.
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(repo)):
            del sys.modules[name]
    sys.path.insert(0, str(repo))
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield repo
    finally:
        os.chdir(before)
        sys.path.remove(str(repo))


# Third-party notices a seasonrec user can do nothing about.
QUIET_WARNINGS = (
    ("On demand feature view is an experimental feature", RuntimeWarning),
    (r"fetch_arrow_table\(\) is deprecated", DeprecationWarning),
)


def open_store(settings: Settings):
    """A `FeatureStore` for the configured profile (embedded SQLite or Redis)."""
    from feast import FeatureStore

    # After Feast's import, whose own filters would otherwise take precedence.
    for message, category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)

    settings.paths.feast.mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(repo_path(settings)), config=repo_config(settings))


def repo_config(settings: Settings):
    """The store's YAML read with the config's values, and Redis's password added to its connection.

    Only here, in memory: `feast.redis_connection` and every file (the chart's mounted YAML
    included) stay free of it.
    """
    from feast.repo_config import load_repo_config

    os.environ.update(feast_env(settings))
    config = load_repo_config(repo_path(settings), store_yaml(settings))
    password = settings.feast.redis_password
    online = config.online_config
    if password is not None and isinstance(online, dict) and online.get("type") == "redis":
        secret = password.get_secret_value()
        if "," in secret:
            raise SeasonrecError("feast.redis_password: must not contain ',' (Feast splits its Redis options on it)")
        # Feast reads each option's value as JSON when it can: quoted, "123" or "null" stays the string it is.
        online["connection_string"] = f"{online['connection_string']},password={json.dumps(secret)}"
    return config


def store_yaml(settings: Settings) -> Path:
    """`feast.store_yaml` when set (the Helm chart mounts one), else the profile's file in the repo."""
    cfg = settings.feast
    default = repo_path(settings) / PROFILE_FILES[cfg.profile]
    path = settings.paths.resolve(cfg.store_yaml) if cfg.store_yaml else default
    if not path.is_file():
        raise SeasonrecError(f"{path}: Feast store file not found")
    return path


def _require_tables(settings: Settings) -> None:
    missing = [t for t in s.OFFLINE_TABLES if not (settings.paths.features / f"{t}.parquet").is_file()]
    if missing:
        tables = ", ".join(missing)
        raise SeasonrecError(f"{settings.paths.features}: missing {tables}; run `seasonrec features build` first")


def apply(settings: Settings) -> dict:
    """Register every object in `feature_repo/` (and remove ones deleted from it)."""
    from feast.repo_operations import apply_total

    _require_tables(settings)
    store = open_store(settings)
    # Feast prints a line per object it registers; the summary lists them once.
    with _in_repo(settings) as repo, contextlib.redirect_stdout(io.StringIO()):
        apply_total(repo_config(settings), repo, skip_source_validation=False)
    project = settings.feast.project
    return {
        "project": project,
        "profile": settings.feast.profile,
        "feature_views": sorted(v.name for v in store.list_feature_views()),
        "on_demand_feature_views": sorted(v.name for v in store.list_on_demand_feature_views()),
        "feature_services": sorted(v.name for v in store.list_feature_services()),
    }


def materialize(settings: Settings, end: datetime | None = None) -> dict:
    """Load the latest value per entity up to `end` (default: now) into the online store."""
    store = open_store(settings)
    end = end or datetime.now(UTC)
    start = datetime(settings.ingest.oldest.year, 1, 1, tzinfo=UTC)
    if not store.list_feature_views():
        raise SeasonrecError("no feature views registered; run `seasonrec features apply` first")
    views = sorted(view.name for view in store.list_feature_views())
    for name in progress(views, description=f"materialize into {settings.feast.profile}"):
        # Feast prints a line and a tqdm bar per view: ours above says the same once.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            store.materialize(start_date=start, end_date=end, feature_views=[name])
    return {"profile": settings.feast.profile, "views": views, "start": start.isoformat(), "end": end.isoformat()}


def _records(result: dict[str, list]) -> list[dict]:
    keys = list(result)
    return [dict(zip(keys, row, strict=True)) for row in zip(*result.values(), strict=True)]


def online_features(
    settings: Settings,
    user_id: str,
    item_ids: list[str] | None = None,
    region: str | None = None,
    at: datetime | None = None,
    store=None,
) -> dict:
    """User features, and for each item the `ranker_v1` features for this user, place and time."""
    store = store or open_store(settings)
    user = _records(store.get_online_features(features=USER_FEATURES, entity_rows=[{s.USER_ID: user_id}]).to_dict())[0]
    out: dict = {"user": user}
    if item_ids:
        region = region or user.get(s.HOME_REGION) or s.POOL_ALL_REGIONS
        request_ts = int((at or datetime.now(UTC)).timestamp())
        from seasonrec.data.calendar import hemisphere

        half = hemisphere(region)
        rows = [
            {s.USER_ID: user_id, s.ITEM_ID: i, s.REGION: region, s.HEMISPHERE: half, s.REQUEST_TS: request_ts}
            for i in item_ids
        ]
        service = store.get_feature_service(s.RANKER_SERVICE)
        items = _records(store.get_online_features(features=service, entity_rows=rows).to_dict())
        for row in items:
            for key in (s.USER_ID, *s.USER_STATS_FEATURES, *s.USER_HISTORY_FEATURES, s.REQUEST_TS):
                row.pop(key, None)
        out["region"] = region
        out["items"] = items
    return out


def candidate_pool(settings: Settings, region: str, at: datetime | None = None, store=None) -> list[str]:
    """The seasonal pool for a region and the ISO week of `at`, topped up from its hemisphere's and all regions'.

    A small region's pool can be short; the wider pools fill it up to the same size.
    """
    from seasonrec.candidates.sources import pool_scopes

    store = store or open_store(settings)
    week = (at or datetime.now(UTC)).isocalendar().week
    rows = [{s.REGION: r, s.WEEK_OF_YEAR: week} for r in pool_scopes(region)]
    found = store.get_online_features(features=[f"{s.SEASONAL_POOLS}:{s.POOL_ITEM_IDS}"], entity_rows=rows)
    local, *wider = (p or [] for p in found.to_dict()[s.POOL_ITEM_IDS])
    merged = list(dict.fromkeys(local + [item for pool in wider for item in pool]))
    return merged[: max(settings.features.pool_size, len(local))]


def sample_users(settings: Settings, n: int) -> list[str]:
    """The `n` users with the most purchases, read from the offline table (for demos)."""
    import polars as pl

    path = settings.paths.features / f"{s.USER_STATS}.parquet"
    if not path.is_file():
        raise SeasonrecError(f"{path}: not found; run `seasonrec features build` first")
    latest = pl.scan_parquet(path).group_by(s.USER_ID).agg(pl.col(s.N_PURCHASES).max())
    top = latest.sort([s.N_PURCHASES, s.USER_ID], descending=[True, False]).head(n).collect()
    return top[s.USER_ID].to_list()
