"""The serving graph with its work taken out: what Ray Serve alone costs a request here.

Same shape as `seasonrec.serving.app`: a FastAPI Ingress validating the same
body, then three chained deployments handing on the same columns (one value per
candidate), but no Feast read, no Triton call and no rules.
`bench serve` runs it beside the real app, so the two are compared in one run.
"""

# No `from __future__ import annotations` here, as in serving/app.py: FastAPI must see the
# body's type itself, or it takes `body` for a query parameter.

import uuid
from datetime import datetime

from fastapi import FastAPI
from ray import serve

from seasonrec.schema import HISTORY_EVENT_TYPES, HISTORY_ITEM_IDS, HISTORY_TS, ITEM_ID
from seasonrec.serving.api import RecommendationRequest, RecommendationResponse
from seasonrec.serving.fetcher import ITEM_COLUMNS
from seasonrec.serving.rules import from_columns

ROUTE = "/floor"
APP_NAME = "floor"
LIGHT = {"num_cpus": 0.1}

api = FastAPI()


@serve.deployment(name="FloorFetcher", ray_actor_options=LIGHT)
class Fetcher:
    def fetch(self, user_id: str, region: str | None, at: datetime, candidates: list[str] | None) -> dict:
        ids = list(candidates or [])
        items = {column: ids if column == ITEM_ID else [1.0] * len(ids) for column in ITEM_COLUMNS}
        history = {HISTORY_ITEM_IDS: ["x"] * 20, HISTORY_TS: [0] * 20, HISTORY_EVENT_TYPES: ["view"] * 20}
        return {"user": {"user_id": user_id, **history}, "items": items, "region": region}


@serve.deployment(name="FloorScorer", ray_actor_options=LIGHT)
class Scorer:
    async def score(self, fetched: dict) -> dict:
        from seasonrec.serving.scorer import scored_columns  # as the real Scorer: it imports the model code too

        scores = [0.0] * len(fetched["items"][ITEM_ID])
        return {"columns": scored_columns(fetched, scores), "region": fetched["region"]}


@serve.deployment(name="FloorReRanker", ray_actor_options=LIGHT)
class ReRanker:
    def rerank(self, scored: dict, k: int, at: datetime) -> dict:
        top = from_columns(scored["columns"])[:k]
        return {"items": [{"item_id": c.item_id, "score": c.score, "reasons": []} for c in top]}


@serve.deployment(name="FloorIngress", ray_actor_options=LIGHT)
@serve.ingress(api)
class Ingress:
    def __init__(self, fetcher, scorer, reranker):
        self.fetcher, self.scorer, self.reranker = fetcher, scorer, reranker

    @api.post("/v1/recommendations", response_model=RecommendationResponse)
    async def recommend(self, body: RecommendationRequest) -> RecommendationResponse:
        fetched = self.fetcher.fetch.remote(body.user_id, body.region, body.at, body.candidates)
        result = await self.reranker.rerank.remote(self.scorer.score.remote(fetched), body.k, body.at)
        return RecommendationResponse(
            items=result["items"], model_version=None, degraded=False, request_id=uuid.uuid4().hex
        )


def build_app():
    return Ingress.bind(Fetcher.bind(), Scorer.bind(), ReRanker.bind())
