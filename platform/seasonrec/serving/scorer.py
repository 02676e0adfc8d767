"""Rows from the fetcher -> the live model version's tensors -> scores from Triton.

Item ids become indices with the vocabulary exported beside each version, and
every call names the version it encoded for, so a hot swap can never pair one
version's indices with another version's weights. The version holds every known
item's title and category; only items it has never seen (new launches) carry a
title embedding, from this process's own cache (`TitleEmbeddings`).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np

from seasonrec import schema as s
from seasonrec.config import Settings
from seasonrec.model.batch import CONTEXT_COLUMNS, ITEM_DENSE_COLUMNS, Vocab, dense_log, personal, served_candidates
from seasonrec.model.ranker import PAD, UNSEEN
from seasonrec.model.train import VOCAB_FILE
from seasonrec.serving.contracts import Fetched
from seasonrec.serving.fetcher import TitleEmbeddings
from seasonrec.serving.rules import CandidateColumns, rebuy_share
from seasonrec.triton.client import RankerClient, ScorerError, ScorerUnavailable

VERSION_CHECK_S = 2.0


class VersionShapes:
    def __init__(self, folder: Path):
        config = json.loads((folder / "config.json").read_text())
        self.vocab = Vocab.load(folder / VOCAB_FILE)
        self.items = self.vocab.item_index()
        self.categories = self.vocab.category_index()
        self.regions = self.vocab.region_index()
        self.n_items = self.vocab.sizes["n_items"]
        self.history_length = config["history_length"]
        self.title_dim = config["title_dim"]

    def unknown(self, item_ids: list[str]) -> list[str]:
        """The items this version has never seen, in order: the only ones whose titles a request carries."""
        return [i for i in item_ids if i not in self.items]


def encode(fetched: Fetched, shapes: VersionShapes, new_titles: np.ndarray) -> dict[str, np.ndarray]:
    """One request's tensors (batch of 1), exactly as `model.batch` encodes training rows.

    `fetched.items` holds one list per column (`fetcher.ITEM_COLUMNS`). A known candidate goes by its index
    alone: the version holds its title and category. `new_titles` [k, title_dim] are the titles of the
    `shapes.unknown` candidates, in the same order (`batch.served_candidates`).

    In numpy rather than polars: a request is one row and a few hundred items, where
    building DataFrames costs more than the arithmetic (a unit test keeps the two equal).
    """
    user, items, h = fetched.user, fetched.items, shapes.history_length
    index, categories, regions = shapes.items, shapes.categories, shapes.regions
    history = [index.get(i, UNSEEN) for i in (user.get(s.HISTORY_ITEM_IDS) or [])][-h:]
    ages = list(user.get(s.HISTORY_AGE_HOURS) or [])[-h:]
    logged = dense_log([user.get(c) for c in CONTEXT_COLUMNS])  # one numpy call, not one a column
    context = [
        (user.get(c) or 0.0) if c in (s.WEEK_SIN, s.WEEK_COS) else logged[i] for i, c in enumerate(CONTEXT_COLUMNS)
    ]
    last = user.get(s.LAST_PURCHASE_TS)
    days = (user[s.REQUEST_TS] - last) / 86_400.0 if last is not None and last > 0 else None
    context.append(float(np.log1p(max(days, 0.0))) if days is not None else 8.0)
    n = len(items[s.ITEM_ID])
    ids = np.array([[index.get(i, UNSEEN) for i in items[s.ITEM_ID]]], dtype=np.int64)
    new_categories = [categories.get(c, UNSEEN) for c, i in zip(items[s.CATEGORY], ids[0], strict=True) if i == UNSEEN]
    return {
        "history_ids": np.array([[PAD] * (h - len(history)) + history], dtype=np.int64),
        s.HISTORY_AGE_HOURS: np.array([[0.0] * (h - len(ages)) + ages], dtype=np.float32),
        "context": np.array([context], dtype=np.float32),
        "region": np.array([regions.get(user.get(s.REGION), UNSEEN)], dtype=np.int64),
        # One array, one pass: per column, numpy's call overhead outweighed 200 items' arithmetic.
        "cand_dense": dense_log([items[c] for c in ITEM_DENSE_COLUMNS]).T[None].astype(np.float32),
        "cand_personal": personal(*(_floats(items.get(c), n) for c in s.USER_ITEM_FEATURES), user[s.REQUEST_TS])[None],
        **served_candidates(ids, shapes.n_items, [new_titles], [np.array(new_categories, dtype=np.int64)]),
    }


def _floats(values: list | None, n: int) -> np.ndarray:
    """A column as float64, None (never bought, or a request without the column) as NaN, which `personal` reads
    as never bought. numpy turns None into NaN itself, in C: a Python pass over each column cost more."""
    return np.array(values, dtype=np.float64) if values is not None else np.full(n, np.nan)


class Scorer:
    """Create inside the event loop that will use it (the gRPC channel binds to it)."""

    def __init__(self, settings: Settings):
        self.folder = settings.paths.resolve(settings.triton.repository) / settings.triton.model
        self.client = RankerClient(settings.triton)
        self.titles = TitleEmbeddings(settings)
        self.shapes: dict[int, VersionShapes] = {}
        self.live: int | None = None
        self._checked = 0.0

    async def _live_version(self) -> int:
        if self.live is None or time.monotonic() - self._checked > VERSION_CHECK_S:
            ready = await self.client.ready_versions()
            if not ready:
                raise ScorerUnavailable(f"Triton at {self.client.url}: no ready version of the ranker")
            self.live, self._checked = max(ready), time.monotonic()
        if self.live not in self.shapes:
            self.shapes[self.live] = VersionShapes(self.folder / str(self.live))
        return self.live

    async def score(self, fetched: Fetched) -> tuple[list[float], str]:
        version = await self._live_version()
        try:
            return await self._score(fetched, version)
        except ScorerUnavailable:
            # A hot swap unloads the version this replica last saw: ask Triton again, and retry once if it now
            # serves another. Triton down, or the same version refused, stays an error (the caller falls back).
            # The version compared is the one this request asked for: concurrent requests share `self.live`.
            self.live = None
            newer = await self._live_version()
            if newer == version:
                raise
            return await self._score(fetched, newer)

    async def _score(self, fetched: Fetched, version: int) -> tuple[list[float], str]:
        shapes = self.shapes[version]
        unknown = shapes.unknown(fetched.items[s.ITEM_ID])
        # Only new launches carry a title, and the store read runs off the event loop, so a deadline can cut it.
        none = np.zeros((0, shapes.title_dim), dtype=np.float32)
        titles = await asyncio.to_thread(self.titles.lookup, unknown) if unknown else none
        batch = encode(fetched, shapes, titles)
        scores, answered = await self.client.score(batch, str(version))
        return scores[0].tolist(), answered


def scored_columns(fetched: Fetched, scores: list[float]) -> CandidateColumns:
    """What the re-ranker needs of each candidate: small, so it travels cheaply between replicas."""
    items = fetched.items
    if len(scores) != len(items[s.ITEM_ID]):
        raise ScorerError(f"{len(scores)} scores for {len(items[s.ITEM_ID])} candidates")
    n = len(scores)
    buys, rebuys = (items.get(c) or [None] * n for c in s.ITEM_REBUY_FEATURES)
    return CandidateColumns(
        item_id=items[s.ITEM_ID],
        score=[float(x) for x in scores],
        category=items[s.CATEGORY],
        stock=items[s.STOCK],
        launch_ts=items[s.LAUNCH_TS],
        demand_index=items[s.ITEM_WEEK_DEMAND],
        total_demand=items[s.TOTAL_DEMAND],
        demand_level=items.get(s.DEMAND_LEVEL),
        rebuy_share=[rebuy_share(b, r) for b, r in zip(buys, rebuys, strict=True)],
        trend_ratio=items[s.TREND_RATIO],
        sources=items.get(s.CANDIDATE_SOURCES_COLUMN) or [()] * len(scores),
        buy_days=items.get(s.ITEM_BUY_DAYS),
        first_buy_ts=items.get(s.ITEM_FIRST_BUY_TS),
        last_buy_ts=items.get(s.ITEM_LAST_BUY_TS),
    )
