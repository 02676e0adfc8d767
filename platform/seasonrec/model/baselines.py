"""The baselines the ranker must beat, each scoring the full catalogue from purchases before a moment.

- global popularity: units sold in the last 4 weeks;
- seasonal popularity: the same weeks a year earlier, blended with the last 4 weeks, in the region;
- repeat purchases: the user's own past purchases, recent ones weighted up;
- item co-occurrence: items bought in the same baskets as the user's past purchases.

Each adds a millionth of global popularity so that its ties break the same sensible way.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
from scipy import sparse

from seasonrec import schema as s

WEEK = 7 * 86_400
BASELINES = ("global_popularity", "seasonal_popularity", "repeat_purchase", "cooccurrence")


class Baselines:
    def __init__(self, purchases: pl.DataFrame, catalogue: list[str], cooccurrence_until: datetime):
        index = {item: i for i, item in enumerate(catalogue)}
        p = purchases.filter(pl.col(s.ITEM_ID).is_in(catalogue))
        self.n = len(catalogue)
        self.item = p[s.ITEM_ID].replace_strict(index, return_dtype=pl.Int64).to_numpy()
        self.ts = p[s.EVENT_TS].dt.epoch("s").to_numpy()
        self.qty = p[s.QUANTITY].cast(pl.Float64).to_numpy()
        self.region = p[s.REGION].to_numpy()
        self.by_user = {user: rows for user, rows in zip(*self._group(p[s.USER_ID].to_numpy()), strict=True)}
        self._cooc = self._cooccurrence(p, index, cooccurrence_until)

    def _group(self, users: np.ndarray) -> tuple[list, list]:
        order = np.argsort(users, kind="stable")
        keys, starts = np.unique(users[order], return_index=True)
        return list(keys), np.split(order, starts[1:])

    def _units(self, mask: np.ndarray) -> np.ndarray:
        return np.bincount(self.item[mask], weights=self.qty[mask], minlength=self.n)

    def global_popularity(self, at: int) -> np.ndarray:
        return self._units((self.ts >= at - 4 * WEEK) & (self.ts < at))

    def seasonal_popularity(self, at: int, region: str) -> np.ndarray:
        recent = (self.ts >= at - 4 * WEEK) & (self.ts < at)
        last_year = (self.ts >= at - 53 * WEEK) & (self.ts < at - 50 * WEEK)
        here = self.region == region
        local = 2.0 * self._units(last_year & here) + self._units(recent & here)
        everywhere = 2.0 * self._units(last_year) + self._units(recent)
        return local + 0.1 * everywhere

    def repeat_purchase(self, user: str, at: int) -> np.ndarray:
        rows = self.by_user.get(user, np.empty(0, dtype=np.int64))
        rows = rows[self.ts[rows] < at]
        weight = self.qty[rows] * np.exp(-(at - self.ts[rows]) / (90 * 86_400))
        return np.bincount(self.item[rows], weights=weight, minlength=self.n)

    def cooccurrence(self, user: str, at: int) -> np.ndarray:
        rows = self.by_user.get(user, np.empty(0, dtype=np.int64))
        bought = np.zeros(self.n)
        bought[np.unique(self.item[rows[self.ts[rows] < at]])] = 1.0
        return np.asarray(self._cooc @ bought).ravel()

    def _cooccurrence(self, p: pl.DataFrame, index: dict[str, int], until: datetime) -> sparse.csr_matrix:
        """Item x item counts of baskets (a user's purchases on one day) before `until`."""
        baskets = (
            p.filter(pl.col(s.EVENT_TS) < until)
            .with_columns(pl.col(s.EVENT_TS).dt.truncate("1d").alias("day"))
            .select(pl.struct(s.USER_ID, "day").rank("dense").alias("basket"), s.ITEM_ID)
            .unique()
        )
        rows = baskets["basket"].to_numpy() - 1
        cols = baskets[s.ITEM_ID].replace_strict(index, return_dtype=pl.Int64).to_numpy()
        m = sparse.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(int(rows.max()) + 1 if len(rows) else 0, self.n)
        )
        co = (m.T @ m).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        return co

    def scores(self, name: str, user: str, at: int, region: str, popularity: np.ndarray) -> np.ndarray:
        raw = {
            "global_popularity": lambda: popularity,
            "seasonal_popularity": lambda: self.seasonal_popularity(at, region),
            "repeat_purchase": lambda: self.repeat_purchase(user, at),
            "cooccurrence": lambda: self.cooccurrence(user, at),
        }[name]()
        return raw + 1e-6 * popularity / (popularity.max() + 1e-9)
