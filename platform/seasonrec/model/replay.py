"""The state as of each evaluation request: what the service would have known then.

A request is (user, ISO week) for every user who bought in the test window; its
truth is what they bought that week. Everything a method sees is taken as of the
start of that week, with the same point-in-time rule as Feast's training set:
the latest value stamped strictly before that moment. Pools are the exception:
a week's pool rests only on earlier weeks, so it is known at the week's start.

Item attributes that never change (ids, categories, titles) are built once for
the whole catalogue; only the week- and region-dependent columns are built per
(week, region), which is what lets a catalogue of tens of thousands of items
over hundreds of regions be evaluated in minutes.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from seasonrec import schema as s
from seasonrec.candidates.sources import Neighbours, merge_pools, pool_scopes
from seasonrec.data.calendar import hemisphere
from seasonrec.errors import SeasonrecError
from seasonrec.features.context import seasonal_context, week_demand, week_units
from seasonrec.model.batch import ITEM_DENSE_COLUMNS, Vocab, dense_log
from seasonrec.model.ranker import PAD, UNSEEN
from seasonrec.serving.rules import rebuy_share


def table(features: Path, name: str) -> pl.DataFrame:
    path = features / f"{name}.parquet"
    if not path.is_file():
        raise SeasonrecError(f"{path}: feature table not found; run `seasonrec features build` first")
    return pl.read_parquet(path).sort(s.FEATURE_TS)


def asof(left: pl.DataFrame, right: pl.DataFrame, by: list[str], at: str = "at") -> pl.DataFrame:
    # Both sides are sorted on time (`table` sorts the right); polars cannot verify that within `by` groups.
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
        .agg(pl.col(s.REGION).mode().sort().first(), pl.col(s.ITEM_ID).unique().sort().alias("truth"))
        .with_columns(pl.col("at").dt.epoch("s").alias(s.REQUEST_TS))
        .sort("at", s.REGION, s.USER_ID)
    )


def user_state(reqs: pl.DataFrame, features: Path) -> pl.DataFrame:
    """Each request with the user's stats and history as of its moment, and the request's context."""
    state = asof(reqs, table(features, s.USER_STATS), [s.USER_ID]).drop(s.FEATURE_TS)
    state = asof(state, table(features, s.USER_HISTORY), [s.USER_ID]).drop(s.FEATURE_TS)
    state = asof(state, table(features, s.USER_REPEATS), [s.USER_ID]).drop(s.FEATURE_TS)
    context = seasonal_context(
        {
            s.REQUEST_TS: state[s.REQUEST_TS].to_list(),
            s.REGION: state[s.REGION].to_list(),
            s.DEMAND_BY_WEEK: [None] * state.height,
            s.LAUNCH_TS: [None] * state.height,
            s.HISTORY_TS: state[s.HISTORY_TS].to_list(),
        }
    )
    keep = (s.WEEK_SIN, s.WEEK_COS, s.DAYS_TO_HOLIDAY, s.HISTORY_AGE_HOURS)
    return state.with_columns(pl.Series(k, context[k]) for k in keep)


class ArrivalTable:
    """`new_arrivals` as of a moment: the hemisphere's latest list stamped at or before it."""

    def __init__(self, features: Path):
        rows = table(features, s.NEW_ARRIVALS).sort(s.FEATURE_TS)
        self._lists = {
            half: (frame[s.FEATURE_TS].dt.epoch("s").to_list(), frame[s.NEW_ARRIVAL_IDS].to_list())
            for (half,), frame in rows.partition_by(s.HEMISPHERE, as_dict=True).items()
        }

    def at(self, ts: int, region: str) -> list[str]:
        stamps, lists = self._lists.get(hemisphere(region), ([], []))
        i = bisect_right(stamps, ts)
        return lists[i - 1] if i else []


class NeighbourTable:
    """`item_neighbours` as of a moment: each item's latest row stamped strictly before it."""

    def __init__(self, features: Path):
        self.rows = table(features, s.ITEM_NEIGHBOURS)
        self.stamps = sorted(set(self.rows[s.FEATURE_TS].to_list()))

    def at(self, when: datetime) -> Neighbours:
        before = [t for t in self.stamps if t < when]
        return self._snapshot(before[-1]) if before else Neighbours({}, {})

    @lru_cache(maxsize=4)  # noqa: B019  (one table per evaluation; requests come week by week)
    def _snapshot(self, stamp: datetime) -> Neighbours:
        latest = self.rows.filter(pl.col(s.FEATURE_TS) <= stamp).unique(s.ITEM_ID, keep="last", maintain_order=True)
        ids = latest[s.ITEM_ID].to_list()
        return Neighbours(
            dict(zip(ids, latest[s.CO_PURCHASE_IDS].to_list(), strict=True)),
            dict(zip(ids, latest[s.SIMILAR_IDS].to_list(), strict=True)),
        )


def _by(frame: pl.DataFrame, key: str) -> dict[str, pl.DataFrame]:
    """A table split by the values of `key`, each part still sorted by time."""
    return {value: part for (value,), part in frame.partition_by(key, as_dict=True).items()}


class Bought:
    """Each user's own purchases of each catalogue item (`user_item_stats`) as of a moment."""

    def __init__(self, features: Path, catalogue_index: dict[str, int]):
        stats = table(features, s.USER_ITEM_STATS)
        self.stats = stats.with_columns(
            pl.col(s.ITEM_ID).replace_strict(catalogue_index, default=-1, return_dtype=pl.Int64).alias("position")
        ).filter(pl.col("position") >= 0)
        self.n_items = len(catalogue_index)

    def arrays(self, users: list[str], at: datetime) -> dict[str, np.ndarray]:
        """`s.USER_ITEM_FEATURES` -> [len(users), catalogue] floats, NaN where never bought by then."""
        rows = {u: i for i, u in enumerate(users)}
        latest = (
            self.stats.filter(pl.col(s.USER_ID).is_in(list(rows)) & (pl.col(s.FEATURE_TS) < at))
            .unique([s.USER_ID, s.ITEM_ID], keep="last", maintain_order=True)
            .with_columns(pl.col(s.USER_ID).replace_strict(rows, return_dtype=pl.Int64).alias("row"))
        )
        r, c = latest["row"].to_numpy(), latest["position"].to_numpy()
        out = {}
        for name in s.USER_ITEM_FEATURES:
            values = np.full((len(users), self.n_items), np.nan)
            values[r, c] = latest[name].cast(pl.Float64).to_numpy()
            out[name] = values
        return out


@dataclass(frozen=True, slots=True)
class WeekItems:
    """The catalogue's week- and region-dependent columns, in catalogue order."""

    columns: dict[str, np.ndarray]
    dense: np.ndarray  # [n, len(ITEM_DENSE_COLUMNS)], the ranker's item inputs
    listed: np.ndarray  # bool: launched by then


class Catalogue:
    """Every item of the item profiles, with its static arrays built once."""

    def __init__(self, features: Path, vocab: Vocab, title_dim: int):
        profiles = table(features, s.ITEM_PROFILE).unique(s.ITEM_ID, keep="last").sort(s.ITEM_ID)
        if profiles.is_empty():
            raise SeasonrecError(f"{features / s.ITEM_PROFILE}.parquet: no items")
        self.ids: list[str] = profiles[s.ITEM_ID].to_list()
        self.index = {item: i for i, item in enumerate(self.ids)}
        self.category: list[str | None] = profiles[s.CATEGORY].to_list()
        self.stock: list[int | None] = profiles[s.STOCK].to_list()
        self.launch_ts = profiles[s.LAUNCH_TS].to_numpy().astype(np.float64)
        self.price = profiles[s.PRICE].to_numpy().astype(np.float64)
        items, categories = vocab.item_index(), vocab.category_index()
        zero = np.zeros(title_dim, dtype=np.float32)
        self.model_inputs = {
            "cand_ids": np.array([items.get(i, UNSEEN) for i in self.ids], dtype=np.int64),
            "cand_categories": np.array(
                [PAD if c is None else categories.get(c, UNSEEN) for c in self.category], dtype=np.int64
            ),
            # Items the model has never seen are scored from their title, as new launches are online.
            "cand_titles": np.stack(
                [zero if t is None else np.asarray(t, dtype=np.float32) for t in profiles[s.TITLE_EMBEDDING]]
            ),
        }
        self.demand = table(features, s.ITEM_DEMAND)
        self.region_demand = _by(table(features, s.REGION_ITEM_DEMAND), s.REGION)
        self.hemisphere_demand = _by(table(features, s.HEMISPHERE_ITEM_DEMAND), s.HEMISPHERE)
        self.title_demand = _by(table(features, s.TITLE_ITEM_DEMAND), s.HEMISPHERE)
        trends = table(features, s.REGION_ITEM_TRENDS)
        self.trends = {region: frame for (region,), frame in trends.partition_by(s.REGION, as_dict=True).items()}
        pools = table(features, s.SEASONAL_POOLS)
        self.pools = {week: frame for (week,), frame in pools.partition_by(s.WEEK_OF_YEAR, as_dict=True).items()}
        self._frame = pl.DataFrame({s.ITEM_ID: self.ids, "position": np.arange(len(self.ids))})

    def __len__(self) -> int:
        return len(self.ids)

    def indices(self, item_ids: list[str]) -> np.ndarray:
        """Catalogue indices of the ids the catalogue holds, in order; others are left out."""
        return np.array([self.index[i] for i in item_ids if i in self.index], dtype=np.int64)

    def _profiles(self, at: datetime, frame: pl.DataFrame | None, columns: tuple[str, ...], **keys: str) -> list:
        """(profile, units) per catalogue item of one demand level as of `at`; (None, None) where it has none."""
        if frame is None:
            return [(None, None)] * len(self.ids)
        left = self._frame.with_columns(pl.lit(at).alias("at"), *(pl.lit(v).alias(k) for k, v in keys.items()))
        return asof(left, frame, [*keys, s.ITEM_ID]).sort("position").select(columns).rows()

    @lru_cache(maxsize=4)  # noqa: B019  (one Catalogue per evaluation; a week's groups come together)
    def _global_demand(self, at: datetime) -> list:
        """(profile, units, buy days, re-buy days) per item: one as-of join for the week, whatever the region."""
        return self._profiles(at, self.demand, (*s.ITEM_DEMAND_FEATURES, *s.ITEM_REBUY_FEATURES))

    @lru_cache(maxsize=8)  # noqa: B019
    def _hemisphere_demand(self, at: datetime, half: str) -> list:
        frame = self.hemisphere_demand.get(half)
        return self._profiles(at, frame, s.HEMISPHERE_ITEM_DEMAND_FEATURES, **{s.HEMISPHERE: half})

    @lru_cache(maxsize=8)  # noqa: B019
    def _title_demand(self, at: datetime, half: str) -> list:
        frame = self.title_demand.get(half)
        return self._profiles(at, frame, s.TITLE_ITEM_DEMAND_FEATURES, **{s.HEMISPHERE: half})

    def _demand(self, at: datetime, region: str) -> dict[str, np.ndarray]:
        """Each item's demand index this week, its level and its units of demand, as `features.context` works
        them out."""
        week = at.isocalendar().week
        everywhere = [(profile, units) for profile, units, _, _ in self._global_demand(at)]
        rebuys = [(buys, again) for _, _, buys, again in self._global_demand(at)]
        halves = self._hemisphere_demand(at, hemisphere(region))
        frame = self.region_demand.get(region)
        regional = self._profiles(at, frame, s.REGION_ITEM_DEMAND_FEATURES, **{s.REGION: region})
        titles = self._title_demand(at, hemisphere(region))
        found = [week_demand(week, r, h, g, t) for r, h, g, t in zip(regional, halves, everywhere, titles, strict=True)]
        units = [week_units(week, r) for r in regional]
        return {
            s.REBUY_SHARE: np.array([np.nan if (r := rebuy_share(b, a)) is None else r for b, a in rebuys]),
            s.ITEM_WEEK_DEMAND: np.array([np.nan if d is None else d for d, _ in found]),
            s.WEEK_UNITS: np.array(units, dtype=np.float64),
            s.DEMAND_LEVEL: np.array([level for _, level in found], dtype=object),
            s.TOTAL_DEMAND: np.array([np.nan if n is None else n for _, n in everywhere], dtype=np.float64),
        }

    def week(self, at: datetime, region: str) -> WeekItems:
        frame = self._frame.with_columns(pl.lit(at).alias("at"), pl.lit(region).alias(s.REGION))
        trends = self.trends.get(region)
        if trends is None:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in s.REGION_ITEM_FEATURES)
        else:
            frame = asof(frame, trends, [s.REGION, s.ITEM_ID]).sort("position")
        ts = at.timestamp()
        columns = {
            **{c: frame[c].to_numpy().astype(np.float64) for c in s.REGION_ITEM_FEATURES},
            **self._demand(at, region),
            s.ITEM_AGE_DAYS: (ts - self.launch_ts) / 86_400.0,
            s.PRICE: self.price,
        }
        dense = np.stack([dense_log(columns[c]) for c in ITEM_DENSE_COLUMNS], axis=-1).astype(np.float32)
        return WeekItems(columns, dense, self.launch_ts <= ts)

    def pool(self, at: datetime, region: str) -> list[str]:
        """The region's pool for the ISO week of `at`, topped up from all regions, as the service reads it."""
        frame = self.pools.get(at.isocalendar().week)
        if frame is None:
            return []
        known = frame.filter(pl.col(s.FEATURE_TS) <= at).unique(s.REGION, keep="last")
        rows = {r[s.REGION]: r for r in known.iter_rows(named=True)}
        return [item for item, _ in merge_pools(rows[r] for r in pool_scopes(region) if r in rows)]
