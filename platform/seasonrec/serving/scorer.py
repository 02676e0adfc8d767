"""Rows from the fetcher -> the live model version's tensors -> scores from Triton.

Item ids become indices with the vocabulary exported beside each version, and
every call names the version it encoded for, so a hot swap can never pair one
version's indices with another version's weights.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import polars as pl

from seasonrec import schema as s
from seasonrec.config import Settings
from seasonrec.model.batch import CONTEXT_COLUMNS, ITEM_DENSE_COLUMNS, Vocab, item_arrays, user_arrays
from seasonrec.model.train import VOCAB_FILE
from seasonrec.triton.client import RankerClient, ScorerUnavailable

VERSION_CHECK_S = 2.0

USER_SCHEMA = {
    s.HISTORY_ITEM_IDS: pl.List(pl.String),
    s.HISTORY_AGE_HOURS: pl.List(pl.Float64),
    s.REQUEST_TS: pl.Int64,
    "last_purchase_ts": pl.Int64,
    s.REGION: pl.String,
    **{c: pl.Float64 for c in CONTEXT_COLUMNS},
}
ITEM_SCHEMA = {
    s.ITEM_ID: pl.String,
    s.CATEGORY: pl.String,
    s.TITLE_EMBEDDING: pl.List(pl.Float32),
    **{c: pl.Float64 for c in ITEM_DENSE_COLUMNS},
}


class VersionShapes:
    def __init__(self, folder: Path):
        config = json.loads((folder / "config.json").read_text())
        self.vocab = Vocab.load(folder / VOCAB_FILE)
        self.history_length = config["history_length"]
        self.title_dim = config["title_dim"]


def encode(fetched: dict, shapes: VersionShapes) -> dict[str, np.ndarray]:
    """One request's tensors, batch of 1."""
    user = pl.DataFrame([{k: fetched["user"].get(k) for k in USER_SCHEMA}], schema=USER_SCHEMA)
    items = pl.DataFrame([{k: row.get(k) for k in ITEM_SCHEMA} for row in fetched["items"]], schema=ITEM_SCHEMA)
    batch = user_arrays(user, shapes.vocab, shapes.history_length)
    batch.update({k: v[None] for k, v in item_arrays(items, shapes.vocab, shapes.title_dim).items()})
    return batch


class Scorer:
    """Create inside the event loop that will use it (the gRPC channel binds to it)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.folder = settings.paths.resolve(settings.triton.repository) / settings.triton.model
        self.client = RankerClient(settings.triton)
        self.shapes: dict[int, VersionShapes] = {}
        self.live: int | None = None
        self._checked = 0.0

    async def _live_version(self) -> int:
        if self.live is None or time.monotonic() - self._checked > VERSION_CHECK_S:
            try:
                index = await self.client._client.get_model_repository_index(
                    as_json=True, client_timeout=self.client.timeout_s
                )
            except Exception as exc:
                raise ScorerUnavailable(f"Triton at {self.client.url}: {type(exc).__name__}") from exc
            ready = [
                int(m["version"])
                for m in index.get("models", [])
                if m.get("name") == self.settings.triton.model and m.get("state") == "READY"
            ]
            if not ready:
                raise ScorerUnavailable(f"Triton at {self.client.url}: no ready version of the ranker")
            self.live, self._checked = max(ready), time.monotonic()
        if self.live not in self.shapes:
            self.shapes[self.live] = VersionShapes(self.folder / str(self.live))
        return self.live

    async def score(self, fetched: dict) -> tuple[list[float], str]:
        version = await self._live_version()
        batch = encode(fetched, self.shapes[version])
        try:
            scores, answered = await self.client.score(batch, str(version))
        except ScorerUnavailable:
            self.live = None  # the version may have been swapped out: look again next time
            raise
        return scores[0].tolist(), answered
