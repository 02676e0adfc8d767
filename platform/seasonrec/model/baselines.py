"""The baselines the ranker must beat, each scoring the full catalogue from purchases before a moment.

- global popularity: units sold in the last 4 weeks;
- seasonal popularity: the same weeks a year earlier, blended with the last 4 weeks, in the region;
- repeat purchases: the user's own past purchases, recent ones weighted up;
- item co-occurrence: items bought in the same baskets as the user's past purchases;
- P-TopFreq (Li et al., "A Next Basket Recommendation Reality Check", ACM TOIS 2023): the user's items by how many of
  their baskets held them, then every other item by global popularity;
- TIFU-KNN (Hu et al., "Modeling Personalized Item Frequency Information for Next-basket Recommendation", SIGIR 2020):
  the user's time-decayed item frequencies blended with those of their nearest neighbours.

A basket is a user's purchases on one calendar day. Each baseline adds a millionth of global popularity so that its
ties break the same sensible way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

import numpy as np
import polars as pl
from scipy import sparse

from seasonrec import schema as s

WEEK = 7 * 86_400
BASELINES = (
    "global_popularity",
    "seasonal_popularity",
    "repeat_purchase",
    "cooccurrence",
    "p_topfreq",
    "tifu_knn",
)
# Caps the dense block of query x candidate distances (and of query vectors) at about 64 MB.
_DISTANCE_BLOCK = 2**23


@dataclass(frozen=True)
class TifuKnnParams:
    """TIFU-KNN's hyperparameters.

    The defaults are the setting the authors recommend in the quick start of their repository's README
    (github.com/HaojiHu/TIFUKNN, Ta-Feng: `TIFUKNN.py ... 300 0.9 0.7 0.7 7 10`). `m` is the paper's group size,
    baskets per group; the authors' script instead cuts a history into that many groups.
    """

    k: int = 300  # nearest neighbours
    r_b: float = 0.9  # decay per basket, within a group
    r_g: float = 0.7  # decay per group
    alpha: float = 0.7  # weight of the user's own vector against the neighbours' mean
    m: int = 7  # baskets per group


@dataclass
class _TifuState:
    """Everything TIFU-KNN needs at one moment; predictions fill in as users are asked for."""

    at: int
    vectors: sparse.csr_matrix  # one row per user, zero for those with no basket yet
    sq_norms: np.ndarray
    candidates: np.ndarray  # users with at least one basket: the only ones that can be neighbours
    predictions: dict[str, sparse.csr_matrix] = field(default_factory=dict)


class Baselines:
    def __init__(
        self,
        purchases: pl.DataFrame,
        catalogue: list[str],
        cooccurrence_until: datetime,
        tifu: TifuKnnParams | None = None,
    ):
        index = {item: i for i, item in enumerate(catalogue)}
        p = purchases.filter(pl.col(s.ITEM_ID).is_in(catalogue))
        self.n = len(catalogue)
        self.item = p[s.ITEM_ID].replace_strict(index, return_dtype=pl.Int64).to_numpy()
        self.ts = p[s.EVENT_TS].dt.epoch("s").to_numpy()
        # The column's own calendar day, as `_cooccurrence` truncates it, so both agree on what a basket is.
        self.day = p[s.EVENT_TS].dt.date().cast(pl.Int64).to_numpy()
        self.qty = p[s.QUANTITY].cast(pl.Float64).to_numpy()
        self.region = p[s.REGION].to_numpy()
        # polars ranks strings far faster than numpy sorts them as objects.
        self.user_names = p[s.USER_ID].unique().sort().to_list()
        self.user_code = (p[s.USER_ID].rank("dense") - 1).cast(pl.Int64).to_numpy()
        self.user_index = {user: i for i, user in enumerate(self.user_names)}
        order = np.argsort(self.user_code, kind="stable")
        bounds = np.cumsum(np.bincount(self.user_code, minlength=len(self.user_names)))[:-1]
        self.by_user = dict(zip(self.user_names, np.split(order, bounds) if len(order) else [], strict=True))
        self._cooc = self._cooccurrence(p, index, cooccurrence_until)
        self.tifu = tifu or TifuKnnParams()
        self._tifu: _TifuState | None = None

    def _before(self, user: str, at: int) -> np.ndarray:
        rows = self.by_user.get(user, np.empty(0, dtype=np.int64))
        return rows[self.ts[rows] < at]

    def _units(self, mask: np.ndarray) -> np.ndarray:
        return np.bincount(self.item[mask], weights=self.qty[mask], minlength=self.n)

    def history(self, user: str, at: int) -> np.ndarray:
        """Sorted catalogue indices of everything the user bought before `at`."""
        return np.unique(self.item[self._before(user, at)])

    def global_popularity(self, at: int) -> np.ndarray:
        return self._units((self.ts >= at - 4 * WEEK) & (self.ts < at))

    @lru_cache(maxsize=8)  # noqa: B019  (the same for every user of a (week, region); one Baselines per evaluation)
    def seasonal_popularity(self, at: int, region: str) -> np.ndarray:
        recent = (self.ts >= at - 4 * WEEK) & (self.ts < at)
        last_year = (self.ts >= at - 53 * WEEK) & (self.ts < at - 50 * WEEK)
        here = self.region == region
        local = 2.0 * self._units(last_year & here) + self._units(recent & here)
        everywhere = 2.0 * self._units(last_year) + self._units(recent)
        return local + 0.1 * everywhere

    def repeat_purchase(self, user: str, at: int) -> np.ndarray:
        rows = self._before(user, at)
        weight = self.qty[rows] * np.exp(-(at - self.ts[rows]) / (90 * 86_400))
        return np.bincount(self.item[rows], weights=weight, minlength=self.n)

    def cooccurrence(self, user: str, at: int) -> np.ndarray:
        bought = np.zeros(self.n)
        bought[self.history(user, at)] = 1.0
        return np.asarray(self._cooc @ bought).ravel()

    def personal_frequency(self, user: str, at: int) -> np.ndarray:
        """P-TopFreq: how many of the user's baskets before `at` hold each item."""
        rows = self._before(user, at)
        in_basket = np.unique(self.day[rows] * self.n + self.item[rows])
        return np.bincount(in_basket % self.n, minlength=self.n).astype(np.float64)

    def prepare(self, at: int, users: list[str]) -> None:
        """Compute TIFU-KNN for many users at once; only the latest `at` is kept."""
        state = self._tifu_state(at)
        self._tifu_predict(state, [u for u in dict.fromkeys(users) if u not in state.predictions])

    def tifu_knn(self, user: str, at: int) -> np.ndarray:
        state = self._tifu_state(at)
        if user not in state.predictions:
            self._tifu_predict(state, [user])
        return state.predictions[user].toarray().ravel()

    def _tifu_state(self, at: int) -> _TifuState:
        if self._tifu is None or self._tifu.at != at:
            vectors = self._tifu_vectors(at)
            sq_norms = np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel()
            candidates = np.flatnonzero(vectors.getnnz(axis=1))
            self._tifu = _TifuState(at, vectors, sq_norms, candidates)
        return self._tifu

    def _tifu_vectors(self, at: int) -> sparse.csr_matrix:
        """Every user's decayed, grouped multi-hot basket history before `at`, one row per user."""
        p = self.tifu
        seen = self.ts < at
        users = len(self.user_names)
        if not seen.any():
            return sparse.csr_matrix((users, self.n))
        user, day, item = self.user_code[seen], self.day[seen], self.item[seen]
        span = int(day.max() - day.min()) + 1
        # Sorting by user, then day, numbers each user's baskets in time order.
        keys, basket = np.unique(user * span + (day - day.min()), return_inverse=True)
        owner = keys // span
        count = np.bincount(owner, minlength=users)
        first = np.cumsum(count) - count
        age = count[owner] - 1 - (np.arange(len(keys)) - first[owner])  # 0 for the user's latest basket
        # Groups are cut from the latest basket back, so the recent group is always full and only the oldest is short.
        group, within = np.divmod(age, p.m)
        size = np.minimum(p.m, count[owner] - group * p.m)
        groups = -(-count[owner] // p.m)
        weight = p.r_b**within / size * p.r_g**group / groups
        # An item bought twice on a day is in that basket once.
        pairs = np.unique(basket.ravel() * self.n + item)
        b, i = np.divmod(pairs, self.n)
        return sparse.csr_matrix((weight[b], (owner[b], i)), shape=(users, self.n))

    def _tifu_predict(self, state: _TifuState, users: list[str]) -> None:
        p = self.tifu
        empty = sparse.csr_matrix((1, self.n))
        codes = np.array([self.user_index.get(u, -1) for u in users], dtype=np.int64)
        known = codes >= 0
        known[known] = state.vectors.getnnz(axis=1)[codes[known]] > 0
        for u in np.asarray(users, dtype=object)[~known]:
            state.predictions[u] = empty
        codes, names = codes[known], np.asarray(users, dtype=object)[known]
        pool = state.vectors[state.candidates]
        k = min(p.k, len(state.candidates) - 1)
        # Where each query sits among the candidates, so that it is never its own neighbour.
        position = np.searchsorted(state.candidates, codes)
        chunk = max(1, _DISTANCE_BLOCK // max(len(state.candidates), self.n))
        for start in range(0, len(codes), chunk):
            q = codes[start : start + chunk]
            own = state.vectors[q]
            blended = p.alpha * own
            if k > 0:
                # Squared Euclidean distance |a|^2 + |b|^2 - 2ab; sklearn's default metric, as the authors use.
                dot = (pool @ own.toarray().T).T
                dist = state.sq_norms[q][:, None] + state.sq_norms[state.candidates][None, :] - 2.0 * dot
                dist[np.arange(len(q)), position[start : start + chunk]] = np.inf
                nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
                pick = sparse.csr_matrix(
                    (np.full(nearest.size, 1.0 / k), (np.repeat(np.arange(len(q)), k), nearest.ravel())),
                    shape=(len(q), len(state.candidates)),
                )
                blended = blended + (1.0 - p.alpha) * (pick @ pool)
            blended = sparse.csr_matrix(blended)
            for row, name in enumerate(names[start : start + chunk]):
                state.predictions[name] = blended[row]

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
            # Counts are whole numbers, so the tie-break below orders equal counts and then the unbought by popularity.
            "p_topfreq": lambda: self.personal_frequency(user, at),
            "tifu_knn": lambda: _floor_at_one(self.tifu_knn(user, at)),
        }[name]()
        return raw + 1e-6 * popularity / (popularity.max() + 1e-9)


def _floor_at_one(x: np.ndarray) -> np.ndarray:
    """Rescale so the smallest positive score is 1, leaving the order as it was.

    TIFU-KNN's weights shrink geometrically with age, and an old but real signal must still outrank the tie-break.
    """
    positive = x[x > 0]
    return x / positive.min() if len(positive) else x
