"""From feature rows to ranker tensors: the vocabulary and the numeric encodings.

Training rows (from the Feast training set) and evaluation or serving rows use
the same functions, so the model sees the same features everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from seasonrec import schema as s
from seasonrec.model.ranker import PAD, UNSEEN

# Order matters: the model's context and item-dense layers are trained on these positions.
CONTEXT_COLUMNS = (s.WEEK_SIN, s.WEEK_COS, s.DAYS_TO_HOLIDAY, s.N_PURCHASES, s.N_VIEWS, s.MONETARY, s.PURCHASE_DAYS)
ITEM_DENSE_COLUMNS = (
    s.PRICE,
    s.ITEM_WEEK_DEMAND,
    s.WEEK_UNITS,
    s.ITEM_AGE_DAYS,
    s.SALES_7D,
    s.SALES_28D,
    s.TREND_RATIO,
)
CONTEXT_DIM = len(CONTEXT_COLUMNS) + 1  # + days since the last purchase
# What this user's own purchases say of a candidate (`personal`): how often, how lately, how regularly, and
# whether it is due again. The heuristics that win on repeat buyers rank with exactly these.
PERSONAL_COLUMNS = (s.ITEM_BUY_DAYS, "days_since_buy", "buy_interval_days", "due")  # the first: `user_item_stats`
NEVER_BOUGHT_DAYS = 3650.0  # "never" reads as ten years ago: far, but on the same scale


@dataclass(frozen=True)
class Vocab:
    """Index 0 is padding and 1 is 'never seen' for items, categories and regions alike."""

    items: tuple[str, ...]
    categories: tuple[str, ...]
    regions: tuple[str, ...]

    @classmethod
    def build(cls, items: pl.DataFrame, regions: list[str]) -> Vocab:
        return cls(
            tuple(sorted(items[s.ITEM_ID].unique().to_list())),
            tuple(sorted(items[s.CATEGORY].drop_nulls().unique().to_list())),
            tuple(sorted(set(regions))),
        )

    def _index(self, values: tuple[str, ...]) -> dict[str, int]:
        return {v: i + 2 for i, v in enumerate(values)}

    def item_index(self) -> dict[str, int]:
        return self._index(self.items)

    def category_index(self) -> dict[str, int]:
        return self._index(self.categories)

    def region_index(self) -> dict[str, int]:
        return self._index(self.regions)

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "n_items": len(self.items) + 2,
            "n_categories": len(self.categories) + 2,
            "n_regions": len(self.regions) + 2,
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"items": self.items, "categories": self.categories, "regions": self.regions}))

    @classmethod
    def load(cls, path: Path) -> Vocab:
        raw = json.loads(path.read_text())
        return cls(tuple(raw["items"]), tuple(raw["categories"]), tuple(raw["regions"]))


def _lookup(column: pl.Expr, index: dict[str, int]) -> pl.Expr:
    return column.replace_strict(index, default=UNSEEN, return_dtype=pl.Int64).fill_null(PAD)


def _log(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Float64).clip(lower_bound=0).log1p().fill_null(0.0).fill_nan(0.0)


def dense_log(values: list | np.ndarray) -> np.ndarray:
    """`_log` over one column in numpy (None or NaN is missing), for a request or a catalogue of items, where
    building a DataFrame costs more than the arithmetic. numpy reads None in a float list as NaN itself."""
    return np.nan_to_num(np.log1p(np.clip(np.asarray(values, dtype=np.float64), 0, None)), nan=0.0)


def personal(buy_days, first_ts, last_ts, request_ts) -> np.ndarray:
    """[..., len(PERSONAL_COLUMNS)] float32 from a `user_item_stats` row per candidate (None or NaN: never bought).

    The one encoding for training rows, the evaluation and serving, so the three always agree.
    """
    n = np.nan_to_num(np.asarray(buy_days, dtype=np.float64), nan=0.0)
    first = np.asarray(first_ts, dtype=np.float64)
    last = np.asarray(last_ts, dtype=np.float64)
    bought, again = n > 0, n > 1
    since = np.where(bought, np.clip((np.asarray(request_ts, dtype=np.float64) - last) / 86_400.0, 0, None), 0.0)
    since = np.where(bought, since, NEVER_BOUGHT_DAYS)
    interval = np.where(again, (last - first) / 86_400.0 / np.maximum(n - 1, 1), 0.0)
    # Over 0: overdue against the user's own rhythm; under 0: bought too recently to want again yet.
    due = np.where(again, np.clip(np.log1p(since) - np.log1p(interval), -5.0, 5.0), 0.0)
    columns = (np.log1p(n), np.log1p(since), np.log1p(np.nan_to_num(interval)), np.nan_to_num(due))
    return np.stack(columns, axis=-1).astype(np.float32)


def user_arrays(rows: pl.DataFrame, vocab: Vocab, history_length: int) -> dict[str, np.ndarray]:
    """History, context and region for each row (one row per request)."""
    index = vocab.item_index()
    pad_ids = pl.lit([PAD] * history_length, dtype=pl.List(pl.Int64))
    pad_ages = pl.lit([0.0] * history_length, dtype=pl.List(pl.Float64))
    ids = pl.col(s.HISTORY_ITEM_IDS).fill_null(pl.lit([], dtype=pl.List(pl.String)))
    ages = pl.col(s.HISTORY_AGE_HOURS).fill_null(pl.lit([], dtype=pl.List(pl.Float64)))
    days_since = (pl.col(s.REQUEST_TS) - pl.col(s.LAST_PURCHASE_TS)) / 86_400.0
    frame = rows.select(
        pl.concat_list(pad_ids, ids.list.eval(_lookup(pl.element(), index))).list.tail(history_length).alias("h"),
        pl.concat_list(pad_ages, ages).list.tail(history_length).alias("a"),
        *[_log(c) if c not in (s.WEEK_SIN, s.WEEK_COS) else pl.col(c).fill_null(0.0) for c in CONTEXT_COLUMNS],
        pl.when(pl.col(s.LAST_PURCHASE_TS) > 0).then(days_since.clip(lower_bound=0).log1p()).otherwise(8.0).alias("r"),
        _lookup(pl.col(s.REGION), vocab.region_index()).alias("region"),
    )
    context = frame.select([*CONTEXT_COLUMNS, "r"]).to_numpy().astype(np.float32)
    return {
        "history_ids": np.stack(frame["h"].to_list()).astype(np.int64),
        s.HISTORY_AGE_HOURS: np.stack(frame["a"].to_list()).astype(np.float32),
        "context": context,
        "region": frame["region"].to_numpy().astype(np.int64),
    }


def item_arrays(rows: pl.DataFrame, vocab: Vocab, title_dim: int) -> dict[str, np.ndarray]:
    """Id, category, dense and personal features for each candidate row, and its title embedding if the rows carry
    one. Rows without the `user_item_stats` columns are never-bought items.

    Without "cand_titles" the model takes each title from its catalogue buffer, by id.
    """
    frame = rows.select(
        _lookup(pl.col(s.ITEM_ID), vocab.item_index()).alias("id"),
        _lookup(pl.col(s.CATEGORY), vocab.category_index()).alias("cat"),
        *[_log(c) for c in ITEM_DENSE_COLUMNS],
    )
    arrays = {
        "cand_ids": frame["id"].to_numpy().astype(np.int64),
        "cand_categories": frame["cat"].to_numpy().astype(np.int64),
    }
    if s.TITLE_EMBEDDING in rows.columns:
        titles = rows[s.TITLE_EMBEDDING].to_list()
        zero = [0.0] * title_dim
        arrays["cand_titles"] = np.asarray([t if t is not None else zero for t in titles], dtype=np.float32)
    arrays["cand_dense"] = frame.select(ITEM_DENSE_COLUMNS).to_numpy().astype(np.float32)
    arrays["cand_personal"] = personal(
        *(_nullable_floats(rows, c) for c in s.USER_ITEM_FEATURES), rows[s.REQUEST_TS].to_numpy()
    )
    return arrays


def _nullable_floats(rows: pl.DataFrame, column: str) -> np.ndarray:
    if column not in rows.columns:
        return np.full(rows.height, np.nan)
    return rows[column].cast(pl.Float64).fill_null(np.nan).to_numpy()


def catalogue_tables(vocab: Vocab, profiles: pl.DataFrame, title_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(titles [n_items, title_dim], categories [n_items]) in vocabulary order, for the model's buffers."""
    latest = profiles.sort(s.FEATURE_TS).unique(s.ITEM_ID, keep="last")
    by_id = dict(zip(latest[s.ITEM_ID].to_list(), latest.select(s.TITLE_EMBEDDING, s.CATEGORY).rows(), strict=True))
    cats = vocab.category_index()
    titles = np.zeros((len(vocab.items) + 2, title_dim), dtype=np.float32)
    categories = np.zeros(len(vocab.items) + 2, dtype=np.int64)
    for i, item in enumerate(vocab.items, start=2):
        if item in by_id:
            emb, cat = by_id[item]
            titles[i] = emb if emb is not None else 0.0
            categories[i] = cats.get(cat, UNSEEN)
    return torch.from_numpy(titles), torch.from_numpy(categories)


def served_candidates(
    cand_ids: np.ndarray, n_items: int, titles: list[np.ndarray], categories: list[np.ndarray]
) -> dict[str, np.ndarray]:
    """Triton's candidate inputs: known items by index alone, new ones (UNSEEN) in the request's new-item table.

    `cand_ids` [B, C] marks each item the version has never seen with UNSEEN; `titles[b]` [k_b, title_dim] and
    `categories[b]` [k_b] describe request b's new items in the order they appear. Each of those becomes index
    `n_items + j`, row j of `new_titles` / `new_categories`, which always hold at least one (zero) row.
    """
    ids = cand_ids.astype(np.int64, copy=True)
    width = max(1, max(len(t) for t in titles))
    new_titles = np.zeros((len(ids), width, titles[0].shape[-1]), dtype=np.float32)
    new_categories = np.full((len(ids), width), PAD, dtype=np.int64)
    for b, (row, title, category) in enumerate(zip(ids, titles, categories, strict=True)):
        new = np.flatnonzero(row == UNSEEN)
        if len(new) != len(title) or len(new) != len(category):
            raise ValueError(f"request {b}: {len(new)} new items, {len(title)} titles, {len(category)} categories")
        row[new] = n_items + np.arange(len(new))
        new_titles[b, : len(new)] = title
        new_categories[b, : len(new)] = category
    return {"cand_ids": ids, "new_titles": new_titles, "new_categories": new_categories}
