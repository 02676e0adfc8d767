"""The Ray Serve application: Ingress -> FeatureFetcher -> Scorer -> ReRanker.

`build_app` composes the graph with `.bind()` from typed arguments; the Helm
chart's serveConfigV2 and `seasonrec serve start` both call it. Each stage is
its own deployment, so each scales on its own.
"""

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime

from fastapi import FastAPI, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from ray import serve

from seasonrec import schema as s
from seasonrec.config import load_settings
from seasonrec.serving.api import (
    EventRequest,
    EventResponse,
    RecommendationRequest,
    RecommendationResponse,
    Utf8Bodies,
    validation_error,
)

log = logging.getLogger(__name__)

# Every stage waits on I/O far more than it computes; a whole CPU each would not fit four
# stages, the proxy and the controller on a 2-core machine. The chart sets real requests.
LIGHT = {"num_cpus": 0.1}

api = FastAPI(title="seasonrec", description="Seasonal product recommendations.", version="0.1.0")
api.add_exception_handler(RequestValidationError, validation_error)
api.add_middleware(Utf8Bodies)


class AppArgs(BaseModel):
    """What serveConfigV2's `args` may hold."""

    model_config = ConfigDict(extra="forbid")
    config: str | None = None  # settings YAML; default $SEASONREC_CONFIG or configs/local.yaml


@serve.deployment(name="FeatureFetcher", ray_actor_options=LIGHT)
class FeatureFetcher:
    def __init__(self, config: str | None):
        from seasonrec.serving.fetcher import FeatureReader

        self.reader = FeatureReader(load_settings(config))

    def fetch(self, user_id: str, region: str | None, at: datetime, candidates: list[str] | None) -> dict:
        return self.reader.request(user_id, region, at, candidates)

    def fallback(self, region: str | None, at: datetime) -> dict:
        """Seasonal popularity from the offline pools, shaped like the Scorer's answer."""
        region = region or s.POOL_ALL_REGIONS
        pool = self.reader.fallback_pool(region, at)
        columns = {"item_id": [item for item, _ in pool], "score": [score for _, score in pool]}
        return {"columns": columns, "purchases": {}, "region": region, "model_version": None, "degraded": True}

    def push(self, user_id: str, item_id: str, event_type: str, at: datetime) -> None:
        self.reader.push_event(user_id, item_id, event_type, at)

    def regions(self) -> list[str]:
        # Pools are also kept per hemisphere ("north", "south"): scopes, not regions a shopper is in.
        return sorted({r for r, _ in self.reader.fallback_pools if r not in ("north", "south")} | {s.POOL_ALL_REGIONS})


@serve.deployment(name="Scorer", ray_actor_options=LIGHT)
class Scorer:
    def __init__(self, config: str | None):
        self.settings = load_settings(config)
        self.scorer = None

    def _get(self):
        from seasonrec.serving.scorer import Scorer as RankerScorer

        if self.scorer is None:
            self.scorer = RankerScorer(self.settings)
        return self.scorer

    async def score(self, fetched: dict) -> dict:
        """Scores and the re-ranker's columns; seasonal popularity with `degraded` when Triton fails."""
        from seasonrec.errors import SeasonrecError
        from seasonrec.serving.rules import purchases
        from seasonrec.serving.scorer import scored_columns

        started = time.perf_counter()
        degraded, version = False, None
        try:
            timeout = self.settings.triton.timeout_ms / 1000
            scores, version = await asyncio.wait_for(self._get().score(fetched), timeout)
        except (SeasonrecError, TimeoutError) as exc:
            log.warning("scoring failed (%s); seasonal fallback", type(exc).__name__)
            scores, degraded = fetched["items"]["pool_score"], True
        elapsed = {**fetched["elapsed_ms"], "score": (time.perf_counter() - started) * 1000}
        return {
            "columns": scored_columns(fetched, scores),
            "purchases": purchases(fetched["user"]),
            "region": fetched["region"],
            "model_version": version,
            "degraded": degraded,
            "elapsed_ms": elapsed,
        }

    async def ready(self) -> bool:
        return await self._get().client.ready()


@serve.deployment(name="ReRanker", ray_actor_options=LIGHT)
class ReRanker:
    def __init__(self, config: str | None):
        from seasonrec.serving.rules import RuleBook

        settings = load_settings(config)
        self.book = RuleBook(settings.paths.resolve(settings.serving.rules_path))

    def rerank(self, scored: dict, k: int, at: datetime) -> dict:
        from seasonrec.serving.rules import from_columns, rerank

        started = time.perf_counter()
        candidates = from_columns(scored["columns"])
        ranked = rerank(candidates, self.book.current(), k, at, scored["region"], scored["purchases"])
        fallback = ["fallback:seasonal_popularity"] if scored["degraded"] else []
        items = [{"item_id": c.item_id, "score": _finite(c.score), "reasons": c.reasons + fallback} for c in ranked]
        elapsed = {**scored.get("elapsed_ms", {}), "rerank": (time.perf_counter() - started) * 1000}
        return {
            "items": items,
            "model_version": scored["model_version"],
            "degraded": scored["degraded"],
            "elapsed_ms": elapsed,
        }

    def rules_status(self) -> dict:
        self.book.current()
        return {"path": str(self.book.path), "version": self.book.rules.version, "error": self.book.error}


def _finite(x: float) -> float | None:
    return None if x != x else round(float(x), 6)  # NaN: a pinned item that was not scored


def _unprocessable(field: str, msg: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["body", field], "msg": msg, "type": "value_error"}]}, status_code=422)


@serve.deployment(name="Ingress", ray_actor_options=LIGHT)
@serve.ingress(api)
class Ingress:
    def __init__(self, fetcher, scorer, reranker, config: str | None):
        from seasonrec.serving.metrics import STAGE_SECONDS

        self.fetcher, self.scorer, self.reranker = fetcher, scorer, reranker
        self.stages = STAGE_SECONDS
        self.settings = load_settings(config)
        self.known_regions: set[str] | None = None

    async def _regions(self) -> set[str]:
        if self.known_regions is None:
            self.known_regions = set(await self.fetcher.regions.remote())
        return self.known_regions

    @api.post("/v1/recommendations", response_model=RecommendationResponse)
    async def recommend(self, body: RecommendationRequest) -> RecommendationResponse | JSONResponse:
        request_id = uuid.uuid4().hex
        if body.region is not None and body.region not in await self._regions():
            return _unprocessable("region", "unknown region")
        if body.candidates and len(body.candidates) > self.settings.serving.max_candidates:
            return _unprocessable("candidates", f"at most {self.settings.serving.max_candidates} candidates")
        at = body.at or datetime.now(UTC)
        started = time.perf_counter()
        # One chain: each stage hands its result straight to the next, not back through here.
        fetched = self.fetcher.fetch.remote(body.user_id, body.region, at, body.candidates)
        try:
            result = await self.reranker.rerank.remote(self.scorer.score.remote(fetched), body.k, at)
        except Exception as exc:  # the online store is down: serve the seasonal pools kept in memory
            log.warning("request %s: feature fetch failed (%s); seasonal fallback", request_id, type(exc).__name__)
            result = await self.reranker.rerank.remote(self.fetcher.fallback.remote(body.region, at), body.k, at)
        for stage, ms in result["elapsed_ms"].items():
            self.stages.labels(stage).observe(ms / 1000)
        self.stages.labels("total").observe(time.perf_counter() - started)
        return RecommendationResponse(
            items=result["items"],
            model_version=result["model_version"],
            degraded=result["degraded"],
            request_id=request_id,
        )

    @api.post("/v1/events", response_model=EventResponse)
    async def event(self, body: EventRequest) -> EventResponse | JSONResponse:
        if body.region is not None and body.region not in await self._regions():
            return _unprocessable("region", "unknown region")
        try:
            await self.fetcher.push.remote(body.user_id, body.item_id, body.event_type, body.at or datetime.now(UTC))
        except Exception:
            return JSONResponse({"detail": "online store unavailable; event not recorded"}, status_code=503)
        return EventResponse(accepted=True, request_id=uuid.uuid4().hex)

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        triton = await self.scorer.ready.remote()
        rules = await self.reranker.rules_status.remote()
        body = {"triton": triton, "rules": rules}
        return JSONResponse(body, status_code=200 if triton else 503)

    @api.get("/metrics")
    async def metrics(self) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def build_app(args: AppArgs):
    """The application: `serve run seasonrec.serving.app:build_app config=PATH`."""
    if isinstance(args, dict):
        args = AppArgs.model_validate(args)
    config = args.config
    return Ingress.bind(FeatureFetcher.bind(config), Scorer.bind(config), ReRanker.bind(config), config)
