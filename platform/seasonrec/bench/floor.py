"""The serving graph with its work taken out: what Ray Serve alone costs a request here.

Same shape as `seasonrec.serving.app`: a FastAPI Ingress validating the same
body, then three chained deployments handing on rows of the same size (one per
candidate, the same fields), but no Feast read, no Triton call and no rules.
`bench serve` runs it beside the real app, so the two are compared in one run.
"""

# No `from __future__ import annotations` here, as in serving/app.py: FastAPI must see the
# body's type itself, or it takes `body` for a query parameter.

import uuid
from datetime import datetime

from fastapi import FastAPI
from ray import serve

from seasonrec.serving.api import RecommendationRequest, RecommendationResponse

ROUTE = "/floor"
APP_NAME = "floor"
LIGHT = {"num_cpus": 0.1}

api = FastAPI()


@serve.deployment(name="FloorFetcher", ray_actor_options=LIGHT)
class Fetcher:
    def fetch(self, user_id: str, region: str | None, at: datetime, candidates: list[str] | None) -> dict:
        fields = ("category", "price", "stock", "launch_ts", "total_sales", "sales_7d", "sales_28d", "trend_ratio")
        items = [{"item_id": i, **dict.fromkeys(fields, 1.0)} for i in candidates or []]
        return {"user": {"user_id": user_id, "history_item_ids": ["x"] * 20}, "items": items, "region": region}


@serve.deployment(name="FloorScorer", ray_actor_options=LIGHT)
class Scorer:
    async def score(self, fetched: dict) -> dict:
        rows = [{"item_id": r["item_id"], "score": 0.0, "category": r["category"]} for r in fetched["items"]]
        return {"rows": rows, "region": fetched["region"]}


@serve.deployment(name="FloorReRanker", ray_actor_options=LIGHT)
class ReRanker:
    def rerank(self, scored: dict, k: int, at: datetime) -> dict:
        return {"items": [{"item_id": r["item_id"], "score": r["score"], "reasons": []} for r in scored["rows"][:k]]}


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
