"""The request path's three stages: fetch (features and candidates) -> score (Triton) -> re-rank (rules).

Both topologies of `serving.topology` run these same classes. `fused` builds all three in the Ingress's own
process; `graph` makes each its own Serve deployment (`app.py`). They hand each other the typed objects of
`contracts.py`.

Each stage takes the request's deadline (`time.time()` seconds, comparable across processes on one clock)
and gives up work it can no longer finish in time: the scorer answers with the seasonal pools' scores
rather than wait on Triton past it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from pathlib import Path

from seasonrec import schema as s
from seasonrec.config import load_settings
from seasonrec.errors import SeasonrecError
from seasonrec.serving.api import history_events, read_card, report_plot, report_plots
from seasonrec.serving.contracts import Fetched, Ranked, RankedItem, Scored
from seasonrec.serving.rules import CandidateColumns, purchases

log = logging.getLogger(__name__)


def remaining_s(deadline: float) -> float:
    return deadline - time.time()


class Fetch:
    """Features and candidates from Feast's online store; the seasonal pools when the store is down.

    Its calls block on the store: the graph's FeatureFetcher runs them on Serve's threads, the fused Ingress
    with `asyncio.to_thread`.
    """

    def __init__(self, config: str | None):
        from seasonrec.serving.fetcher import FeatureReader

        self.reader = FeatureReader(load_settings(config))

    def fetch(self, user_id: str, region: str | None, at: datetime, candidates: list[str] | None) -> Fetched:
        return self.reader.request(user_id, region, at, candidates)

    def fallback(self, region: str | None, at: datetime) -> Scored:
        """Seasonal popularity from the offline pools, shaped like the scorer's answer."""
        region = region or s.POOL_ALL_REGIONS
        pool = self.reader.fallback_pool(region, at)
        columns = CandidateColumns(item_id=[item for item, _ in pool], score=[score for _, score in pool])
        return Scored(columns, purchases={}, region=region, model_version=None, degraded=True)

    def push(self, user_id: str, item_id: str, event_type: str, at: datetime) -> None:
        self.reader.push_event(user_id, item_id, event_type, at)

    def history(self, user_id: str, limit: int) -> list[dict]:
        return history_events(self.reader.user(user_id), limit)

    def forget(self, user_ids: list[str]) -> dict[str, int]:
        """The online part of an erasure; this stage keeps no user rows besides (see FeatureReader.forget)."""
        return self.reader.forget(user_ids)

    def regions(self) -> list[str]:
        # Pools are also kept per hemisphere ("north", "south"): scopes, not regions a shopper is in.
        return sorted({r for r, _ in self.reader.fallback_pools if r not in ("north", "south")} | {s.POOL_ALL_REGIONS})


class Score:
    """Scores from the ranker in Triton (async gRPC); the seasonal pools' scores, `degraded`, when it fails."""

    def __init__(self, config: str | None):
        # Imported now, not on the first request: the model code takes seconds to import, past any deadline.
        from seasonrec.serving import scorer

        self.settings = load_settings(config)
        self.scoring, self.scorer = scorer, None

    def _get(self):
        """Made on first use, inside the event loop that calls it: the gRPC channel binds to that loop."""
        if self.scorer is None:
            self.scorer = self.scoring.Scorer(self.settings)
        return self.scorer

    async def score(self, fetched: Fetched, deadline: float) -> Scored:
        started = time.perf_counter()
        degraded, version = False, None
        try:
            timeout = min(self.settings.triton.timeout_ms / 1000, remaining_s(deadline))
            if timeout <= 0:
                raise TimeoutError
            scores = []
            # No candidate left (all the caller's were unknown): nothing to ask the model.
            if fetched.items[s.ITEM_ID]:
                scores, version = await asyncio.wait_for(self._get().score(fetched), timeout)
        except (SeasonrecError, TimeoutError) as exc:
            log.warning("scoring failed (%s); seasonal fallback", type(exc).__name__)
            scores, degraded = fetched.items["pool_score"], True
        return Scored(
            columns=self.scoring.scored_columns(fetched, scores),
            purchases=purchases(fetched.user),
            region=fetched.region,
            model_version=version,
            degraded=degraded,
            unknown_candidates=fetched.unknown_candidates,
            elapsed_ms={**fetched.elapsed_ms, "score": (time.perf_counter() - started) * 1000},
        )

    async def ready(self) -> bool:
        return await self._get().client.ready()

    async def _live_dir(self) -> tuple[int, Path] | None:
        """The live version and its folder: this stage reads that folder already, the Ingress may not see it."""
        from seasonrec.errors import SeasonrecError

        scorer = self._get()
        try:
            ready = await scorer.client.ready_versions()
        except SeasonrecError:
            return None
        return (max(ready), scorer.folder / str(max(ready))) if ready else None

    async def model(self) -> dict:
        from seasonrec.export.repository import CARD_FILE

        live = await self._live_dir()
        if live is None:
            return {"model_version": None, "card": None, "plots": []}
        version, folder = live
        return {"model_version": str(version), "card": read_card(folder, CARD_FILE), "plots": report_plots(folder)}

    async def plot(self, name: str) -> bytes | None:
        live = await self._live_dir()
        return report_plot(live[1], name) if live else None


class Rerank:
    """The business rules (`rules.yaml`, re-read when it changes) over the scored candidates."""

    def __init__(self, config: str | None):
        from seasonrec.serving.rules import RuleBook

        settings = load_settings(config)
        self.book = RuleBook(settings.paths.resolve(settings.serving.rules_path))

    def rerank(self, scored: Scored, k: int, at: datetime) -> Ranked:
        from seasonrec.serving.rules import from_columns, rerank

        started = time.perf_counter()
        candidates = from_columns(scored.columns)
        ranked = rerank(candidates, self.book.current(), k, at, scored.region, scored.purchases)
        fallback = ["fallback:seasonal_popularity"] if scored.degraded else []
        return Ranked(
            items=[RankedItem(c.item_id, _finite(c.score), c.reasons + fallback) for c in ranked],
            model_version=scored.model_version,
            degraded=scored.degraded,
            unknown_candidates=scored.unknown_candidates,
            elapsed_ms={**scored.elapsed_ms, "rerank": (time.perf_counter() - started) * 1000},
        )


def _finite(x: float) -> float | None:
    return None if x != x else round(float(x), 6)  # NaN: a pinned item that was not scored
