"""Both serving topologies with their work taken out: what Ray Serve and HTTP alone cost a request here.

Same shapes as `seasonrec.serving.app`'s: a FastAPI Ingress validating the same body, then three stages
handing on the same typed columns (`serving.contracts`), but no Feast read, no Triton call and no rules.
`graph` chains three deployments; `fused` calls the same stages in the Ingress's process.
`bench serve` runs both beside the real app, so all are compared in one run.
"""

# No `from __future__ import annotations` here, as in serving/app.py: FastAPI must see the
# body's type itself, or it takes `body` for a query parameter.

import asyncio
import time
import uuid
from dataclasses import asdict
from datetime import datetime

from fastapi import FastAPI
from ray import serve

from seasonrec.schema import HISTORY_EVENT_TYPES, HISTORY_ITEM_IDS, HISTORY_TS, ITEM_ID
from seasonrec.serving.api import RecommendationRequest, RecommendationResponse
from seasonrec.serving.contracts import Fetched, Ranked, RankedItem, Scored
from seasonrec.serving.fetcher import ITEM_COLUMNS
from seasonrec.serving.rules import from_columns

LIGHT = {"num_cpus": 0.1}

api = FastAPI()


class Fetch:
    def fetch(self, user_id: str, region: str | None, at: datetime, candidates: list[str] | None) -> Fetched:
        ids = list(candidates or [])
        items = {column: ids if column == ITEM_ID else [1.0] * len(ids) for column in ITEM_COLUMNS}
        history = {HISTORY_ITEM_IDS: ["x"] * 20, HISTORY_TS: [0] * 20, HISTORY_EVENT_TYPES: ["view"] * 20}
        return Fetched(user={"user_id": user_id, **history}, items=items, region=region or "")


class Score:
    async def score(self, fetched: Fetched, deadline: float) -> Scored:
        from seasonrec.serving.scorer import scored_columns  # as the real Scorer: it imports the model code too

        scores = [0.0] * len(fetched.items[ITEM_ID])
        return Scored(scored_columns(fetched, scores), {}, fetched.region, model_version=None, degraded=False)


class Rerank:
    def rerank(self, scored: Scored, k: int, at: datetime) -> Ranked:
        top = from_columns(scored.columns)[:k]
        return Ranked([RankedItem(c.item_id, c.score, []) for c in top], model_version=None, degraded=False)


def _response(ranked: Ranked) -> RecommendationResponse:
    items = [asdict(item) for item in ranked.items]
    return RecommendationResponse(items=items, model_version=None, degraded=False, request_id=uuid.uuid4().hex)


Fetcher = serve.deployment(name="FloorFetcher", ray_actor_options=LIGHT)(Fetch)
Scorer = serve.deployment(name="FloorScorer", ray_actor_options=LIGHT)(Score)
ReRanker = serve.deployment(name="FloorReRanker", ray_actor_options=LIGHT)(Rerank)


@serve.deployment(name="FloorIngress", ray_actor_options=LIGHT)
@serve.ingress(api)
class Ingress:
    def __init__(self, fetcher, scorer, reranker):
        self.fetcher, self.scorer, self.reranker = fetcher, scorer, reranker

    @api.post("/v1/recommendations", response_model=RecommendationResponse)
    async def recommend(self, body: RecommendationRequest) -> RecommendationResponse:
        fetched = self.fetcher.fetch.remote(body.user_id, body.region, body.at, body.candidates)
        ranked = await self.reranker.rerank.remote(self.scorer.score.remote(fetched, time.time() + 1), body.k, body.at)
        return _response(ranked)


# A FastAPI app serves one ingress class: the fused floor has its own, with the same route.
fused_api = FastAPI()


@serve.deployment(name="FloorFusedIngress", ray_actor_options=LIGHT)
@serve.ingress(fused_api)
class FusedIngress:
    def __init__(self):
        self.fetcher, self.scorer, self.reranker = Fetch(), Score(), Rerank()

    @fused_api.post("/v1/recommendations", response_model=RecommendationResponse)
    async def recommend(self, body: RecommendationRequest) -> RecommendationResponse:
        fetched = await asyncio.to_thread(self.fetcher.fetch, body.user_id, body.region, body.at, body.candidates)
        ranked = self.reranker.rerank(await self.scorer.score(fetched, time.time() + 1), body.k, body.at)
        return _response(ranked)


def build_app(topology: str = "graph"):
    """The no-work copy of a topology: `fused` or `graph`."""
    if topology == "fused":
        return FusedIngress.bind()
    return Ingress.bind(Fetcher.bind(), Scorer.bind(), ReRanker.bind())
