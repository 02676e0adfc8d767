"""Stage: evaluate a ranker checkpoint against the baselines, split by time, over the full catalogue.

A request is (user, ISO week) for every user who bought in the test window; its
truth is what they bought that week. Everything the ranker and the baselines
see is taken as of the start of that week, with the same point-in-time rule as
Feast's training set: the latest value stamped strictly before that moment.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import torch

from seasonrec import schema as s
from seasonrec.data.validate import find_table, scan_table
from seasonrec.errors import SeasonrecError
from seasonrec.features.context import seasonal_context
from seasonrec.model.baselines import BASELINES, Baselines
from seasonrec.model.batch import item_arrays, user_arrays
from seasonrec.model.metrics import mean_metrics, rank_metrics
from seasonrec.model.train import load_model
from seasonrec.progress import progress

log = logging.getLogger(__name__)
REQUEST_CHUNK = 16


def _table(features: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(features / f"{name}.parquet").sort(s.FEATURE_TS)


def _asof(left: pl.DataFrame, right: pl.DataFrame, by: list[str], at: str = "at") -> pl.DataFrame:
    # Both sides are sorted on time (`_table` sorts the right); polars cannot verify that within `by` groups.
    return left.sort(at).join_asof(
        right,
        left_on=at,
        right_on=s.FEATURE_TS,
        by=by,
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )


def requests(purchases: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """One row per (user, week) with purchases in [start, end): region and the items bought."""
    window = purchases.filter((pl.col(s.EVENT_TS) >= start) & (pl.col(s.EVENT_TS) < end))
    if window.is_empty():
        raise SeasonrecError(f"no purchases between {start:%Y-%m-%d} and {end:%Y-%m-%d}: empty test window")
    return (
        window.with_columns(pl.col(s.EVENT_TS).dt.truncate("1w").alias("at"))
        .group_by(s.USER_ID, "at")
        .agg(pl.col(s.REGION).mode().sort().first(), pl.col(s.ITEM_ID).unique().alias("truth"))
        .with_columns(pl.col("at").dt.epoch("s").alias(s.REQUEST_TS))
        .sort("at", s.REGION, s.USER_ID)
    )


def user_state(reqs: pl.DataFrame, features: Path) -> pl.DataFrame:
    state = _asof(reqs, _table(features, s.USER_STATS), [s.USER_ID]).drop(s.FEATURE_TS)
    state = _asof(state, _table(features, s.USER_HISTORY), [s.USER_ID]).drop(s.FEATURE_TS)
    context = seasonal_context(
        {
            s.REQUEST_TS: state[s.REQUEST_TS].to_list(),
            s.REGION: state[s.REGION].to_list(),
            s.DEMAND_BY_WEEK: [None] * state.height,
            s.LAUNCH_TS: [None] * state.height,
            s.HISTORY_TS: state[s.HISTORY_TS].to_list(),
        }
    )
    keep = ("week_sin", "week_cos", "days_to_holiday", s.HISTORY_AGE_HOURS)
    return state.with_columns(pl.Series(k, context[k]) for k in keep)


def item_state(
    catalogue: pl.DataFrame, demand: pl.DataFrame, trends: pl.DataFrame, at: datetime, region: str
) -> pl.DataFrame:
    """Every catalogue item as of `at` in `region`, in catalogue order."""
    frame = catalogue.with_columns(pl.lit(at).alias("at"), pl.lit(region).alias(s.REGION))
    frame = _asof(frame, demand, [s.ITEM_ID]).drop(s.FEATURE_TS)
    frame = _asof(frame, trends, [s.REGION, s.ITEM_ID]).drop(s.FEATURE_TS)
    week = at.isocalendar().week
    ts = int(at.timestamp())
    return frame.with_columns(
        (pl.col(s.DEMAND_BY_WEEK).list.get(week - 1, null_on_oob=True) * s.WEEKS_PER_YEAR).alias("item_week_demand"),
        ((ts - pl.col(s.LAUNCH_TS)) / 86_400.0).alias("item_age_days"),
    ).sort("position")


@torch.no_grad()
def _ranker_scores(model, users: dict[str, np.ndarray], items: dict[str, np.ndarray]) -> np.ndarray:
    n_req, n_items = len(users["region"]), len(items["cand_ids"])
    out = np.empty((n_req, n_items), dtype=np.float32)
    cand = {k: torch.from_numpy(v) for k, v in items.items()}
    for start in range(0, n_req, REQUEST_CHUNK):
        chunk = {k: torch.from_numpy(v[start : start + REQUEST_CHUNK]) for k, v in users.items()}
        b = len(chunk["region"])
        expanded = {k: v.unsqueeze(0).expand(b, *v.shape) for k, v in cand.items()}
        out[start : start + b] = model(**chunk, **expanded).numpy()
    return out


def evaluate(settings, checkpoint: Path, start: datetime, end: datetime, out: Path) -> dict:
    """Score every request with the ranker and each baseline; write metrics.json and report.html."""
    model, vocab = load_model(checkpoint)
    model.eval()
    features = settings.paths.features
    events = scan_table(find_table(settings.paths.canonical, s.EVENTS_TABLE))
    purchases = events.filter(pl.col(s.EVENT_TYPE) == "purchase").collect()
    profiles = pl.read_parquet(features / f"{s.ITEM_PROFILE}.parquet").sort(s.FEATURE_TS).unique(s.ITEM_ID, keep="last")
    catalogue = profiles.sort(s.ITEM_ID).with_row_index("position").drop(s.FEATURE_TS)
    ids = catalogue[s.ITEM_ID].to_list()
    index = {item: i for i, item in enumerate(ids)}
    reqs = user_state(requests(purchases, start, end), features)
    # Read once: every (week, region) below joins against the same two tables.
    demand, trends = _table(features, s.ITEM_DEMAND), _table(features, s.REGION_ITEM_TRENDS)
    baselines = Baselines(purchases, ids, cooccurrence_until=start)
    launched = catalogue[s.LAUNCH_TS].to_numpy()
    start_ts = int(start.timestamp())

    rows: list[dict] = []
    groups = reqs.partition_by("at", s.REGION, maintain_order=True)
    for group in progress(groups, description="evaluating (week x region)", total=len(groups)):
        at, region = group["at"][0], group[s.REGION][0]
        ts = int(at.timestamp())
        unlisted = launched > ts
        items = item_arrays(item_state(catalogue, demand, trends, at, region), vocab, model.config.title_dim)
        users = user_arrays(group, vocab, model.config.history_length)
        ranker = _ranker_scores(model, users, items)
        popularity = baselines.global_popularity(ts)
        for i, (user, truth) in enumerate(group.select(s.USER_ID, "truth").iter_rows()):
            truth_idx = np.array([index[t] for t in truth if t in index])
            if len(truth_idx) == 0:
                continue
            methods = {"ranker": ranker[i]}
            methods.update({b: baselines.scores(b, user, ts, region, popularity) for b in BASELINES})
            # Cold start: items launched inside the test window, which no training row has seen bought.
            new_idx = truth_idx[launched[truth_idx] >= start_ts]
            week = at.date().isoformat()
            for name, scores in methods.items():
                scores = np.where(unlisted, -np.inf, scores)
                rows.append({"method": name, "week": week, "slice": "all", **rank_metrics(scores, truth_idx)})
                if len(new_idx):
                    rows.append({"method": name, "week": week, "slice": "new_items", **rank_metrics(scores, new_idx)})
    return _write(rows, out, checkpoint, reqs, start, end)


def _write(rows: list[dict], out: Path, checkpoint: Path, reqs: pl.DataFrame, start: datetime, end: datetime) -> dict:
    everything = pl.DataFrame(rows)
    frame = everything.filter(pl.col("slice") == "all")
    new_items = everything.filter(pl.col("slice") == "new_items")

    def per_method(f: pl.DataFrame) -> dict:
        return {m: mean_metrics(g.to_dicts()) for (m,), g in f.group_by("method", maintain_order=True)}

    by_method = per_method(frame)
    slices = {week: per_method(wf) for (week,), wf in frame.group_by("week", maintain_order=True)}
    metrics = {
        "ranker": by_method.pop("ranker"),
        "baselines": by_method,
        "slices": {
            "week": dict(sorted(slices.items())),
            # Requests whose purchases include items launched in the test window, scored on those alone.
            "new_items": {**per_method(new_items), "requests": new_items.filter(pl.col("method") == "ranker").height},
        },
        "data": {
            "test_start": start.isoformat(),
            "test_end": end.isoformat(),
            "requests": int(frame.filter(pl.col("method") == "ranker").height),
            "users": int(reqs[s.USER_ID].n_unique()),
            "checkpoint": str(checkpoint),
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    from seasonrec.model.report import write_report

    write_report(metrics, checkpoint, out)
    return metrics
