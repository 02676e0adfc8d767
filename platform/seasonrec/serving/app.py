"""The Ray Serve application: fetch -> score -> re-rank behind one HTTP Ingress.

`serving.topology` picks one of two shapes of the same stages (`stages.py`):
`fused` runs all three inside the Ingress's process (the default: no hop between
replicas); `graph` makes each its own deployment, Ingress -> FeatureFetcher ->
Scorer -> ReRanker, so each scales on its own (docs/architecture.md says when).
`build_app` composes either with `.bind()`; the Helm chart's serveConfigV2 and
`seasonrec serve start` both call it.
"""

import asyncio
import logging
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve.handle import DeploymentHandle

from seasonrec.config import Settings, load_settings
from seasonrec.privacy.pseudonyms import Pseudonyms
from seasonrec.serving.api import (
    ErasureResponse,
    EventRequest,
    EventResponse,
    HistoryResponse,
    ModelResponse,
    RecommendationRequest,
    RecommendationResponse,
    RegionList,
    UserIdPath,
    UserList,
    Utf8Bodies,
    at_outside,
    load_catalogue,
    page_csp,
    token_guard,
    unprocessable,
    validation_error,
)
from seasonrec.serving.contracts import Ranked
from seasonrec.serving.stages import Fetch, Rerank, Score

log = logging.getLogger(__name__)

# Every stage waits on I/O far more than it computes; a whole CPU each would not fit four
# stages, the proxy and the controller on a 2-core machine. The chart sets real requests.
LIGHT = {"num_cpus": 0.1}
PAGE = Path(__file__).parent / "web" / "index.html"
# The page's user picker offers at most this many of the shop's most active users.
MAX_SUGGESTED = 50


def _settings() -> Settings:
    """The Ingress replica's settings. Serve runs a copy of `api` made at import, before any settings
    are loaded, so its middleware and dependencies ask the replica for them on each request."""
    return serve.get_replica_context().servable_object.settings


api = FastAPI(title="seasonrec", description="Seasonal product recommendations.", version="0.1.0")
api.add_exception_handler(RequestValidationError, validation_error)
api.add_middleware(Utf8Bodies, max_body_bytes=lambda: _settings().serving.max_body_bytes)
WRITE = Depends(token_guard(lambda: _settings().auth))
READ = Depends(token_guard(lambda: _settings().auth, reads=True))


class AppArgs(BaseModel):
    """What serveConfigV2's `args` may hold."""

    model_config = ConfigDict(extra="forbid")
    config: str | None = None  # settings YAML; default $SEASONREC_CONFIG or configs/local.yaml
    # Overrides settings.serving.topology: `bench serve` runs both shapes beside each other from one settings file.
    topology: Literal["fused", "graph"] | None = None


# The `graph` topology: each stage its own deployment, so each scales on its own.
FeatureFetcher = serve.deployment(name="FeatureFetcher", ray_actor_options=LIGHT)(Fetch)
Scorer = serve.deployment(name="Scorer", ray_actor_options=LIGHT)(Score)
ReRanker = serve.deployment(name="ReRanker", ray_actor_options=LIGHT)(Rerank)


class Graph:
    """The `graph` topology's request path: each stage in its own deployment, reached through its handle.

    A recommendation is one chain: each stage hands its result straight to the next, not back through here.
    """

    def __init__(self, fetch: DeploymentHandle, score: DeploymentHandle, rerank: DeploymentHandle):
        self.fetch, self.score, self.rerank = fetch, score, rerank

    async def recommend(self, user_id: str, region: str | None, at: datetime, candidates, k: int, deadline: float):
        fetched = self.fetch.fetch.remote(user_id, region, at, candidates)
        return await self.rerank.rerank.remote(self.score.score.remote(fetched, deadline), k, at)

    async def fallback(self, region: str | None, at: datetime, k: int) -> Ranked:
        return await self.rerank.rerank.remote(self.fetch.fallback.remote(region, at), k, at)

    async def push(self, user_id: str, item_id: str, event_type: str, at: datetime) -> None:
        await self.fetch.push.remote(user_id, item_id, event_type, at)

    async def history(self, user_id: str, limit: int) -> list[dict]:
        return await self.fetch.history.remote(user_id, limit)

    async def forget(self, user_ids: list[str]) -> dict[str, int]:
        return await self.fetch.forget.remote(user_ids)

    async def regions(self) -> list[str]:
        return await self.fetch.regions.remote()

    async def ready(self) -> bool:
        return await self.score.ready.remote()

    async def model(self) -> dict:
        return await self.score.model.remote()

    async def plot(self, name: str) -> bytes | None:
        return await self.score.plot.remote(name)


class Fused:
    """The `fused` topology's request path: the same stages, in the Ingress's own process, with no hop between
    replicas. The fetch stage's store reads block, so they run on a thread; scoring is async gRPC to Triton."""

    def __init__(self, config: str | None):
        self.fetch, self.score, self.rerank = Fetch(config), Score(config), Rerank(config)

    async def recommend(self, user_id: str, region: str | None, at: datetime, candidates, k: int, deadline: float):
        fetched = await asyncio.to_thread(self.fetch.fetch, user_id, region, at, candidates)
        return self.rerank.rerank(await self.score.score(fetched, deadline), k, at)

    async def fallback(self, region: str | None, at: datetime, k: int) -> Ranked:
        return self.rerank.rerank(self.fetch.fallback(region, at), k, at)

    async def push(self, user_id: str, item_id: str, event_type: str, at: datetime) -> None:
        await asyncio.to_thread(self.fetch.push, user_id, item_id, event_type, at)

    async def history(self, user_id: str, limit: int) -> list[dict]:
        return await asyncio.to_thread(self.fetch.history, user_id, limit)

    async def forget(self, user_ids: list[str]) -> dict[str, int]:
        return await asyncio.to_thread(self.fetch.forget, user_ids)

    async def regions(self) -> list[str]:
        return self.fetch.regions()

    async def ready(self) -> bool:
        return await self.score.ready()

    async def model(self) -> dict:
        return await self.score.model()

    async def plot(self, name: str) -> bytes | None:
        return await self.score.plot(name)


def _reason(exc: BaseException) -> str:
    """The replica's own message: a remote error's text also carries the whole remote traceback."""
    return str(getattr(exc, "cause", None) or exc).splitlines()[0][:300]


@serve.deployment(name="Ingress", ray_actor_options=LIGHT)
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        config: str | None,
        fetcher: DeploymentHandle | None = None,
        scorer: DeploymentHandle | None = None,
        reranker: DeploymentHandle | None = None,
    ):
        """`fused` without handles: the stages run here; `graph` with the three stages' handles."""
        from seasonrec.serving.metrics import STAGE_SECONDS, UNKNOWN_CANDIDATES

        self.path = Fused(config) if fetcher is None else Graph(fetcher, scorer, reranker)
        self.stages, self.unknown_candidates = STAGE_SECONDS, UNKNOWN_CANDIDATES
        self.settings = load_settings(config)
        # Callers use the shop's raw ids; the stores hold what ingest wrote (a pseudonym when pseudonymizing).
        self.pseudonyms = Pseudonyms(self.settings.privacy)
        self.known_regions: set[str] | None = None
        self.suggested: list[str] | None = None
        self.catalogue = load_catalogue(self.settings.paths.canonical)
        self.page = PAGE.read_text()
        self.page_headers = {
            "Content-Security-Policy": page_csp(self.page),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }

    def _described(self, item: dict) -> dict:
        title, category = self.catalogue.get(item["item_id"], (None, None))
        return {**item, "title": title, "category": category}

    async def _regions(self) -> set[str]:
        if self.known_regions is None:
            self.known_regions = set(await self.path.regions())
        return self.known_regions

    async def _invalid(self, region: str | None, at: datetime) -> JSONResponse | None:
        """A 422 for what the body's own schema cannot know: the regions we serve, and `at`'s bounds."""
        if region is not None and region not in await self._regions():
            return unprocessable("region", "unknown region")
        outside = at_outside(at, self.settings.serving, datetime.now(UTC))
        return unprocessable("at", outside) if outside else None

    @api.post("/v1/recommendations", response_model=RecommendationResponse, dependencies=[READ])
    async def recommend(self, body: RecommendationRequest) -> RecommendationResponse | JSONResponse:
        from seasonrec.serving.writes import StoreUnavailable

        request_id = uuid.uuid4().hex
        at = body.at or datetime.now(UTC)
        if invalid := await self._invalid(body.region, at):
            return invalid
        if body.candidates and len(body.candidates) > self.settings.serving.max_candidates:
            return unprocessable("candidates", f"at most {self.settings.serving.max_candidates} candidates")
        started = time.perf_counter()
        deadline = time.time() + self.settings.serving.deadline_ms / 1000
        user_id = self.pseudonyms.of(body.user_id)
        try:
            ranked = await asyncio.wait_for(
                self.path.recommend(user_id, body.region, at, body.candidates, body.k, deadline),
                max(deadline - time.time(), 0.0),
            )
        except StoreUnavailable as exc:  # serve the seasonal pools kept in memory; any other error is a bug: a 500
            log.warning("request %s: feature fetch failed (%s); seasonal fallback", request_id, _reason(exc))
            ranked = await self.path.fallback(body.region, at, body.k)
        except TimeoutError:  # the deadline passed in a stage that could not give up sooner (a slow store read)
            deadline_ms = self.settings.serving.deadline_ms
            log.warning("request %s: past its %d ms deadline; seasonal fallback", request_id, deadline_ms)
            ranked = await self.path.fallback(body.region, at, body.k)
        for stage, ms in ranked.elapsed_ms.items():
            self.stages.labels(stage).observe(ms / 1000)
        self.stages.labels("total").observe(time.perf_counter() - started)
        self.unknown_candidates.inc(ranked.unknown_candidates)
        return RecommendationResponse(
            items=[self._described(asdict(item)) for item in ranked.items],
            model_version=ranked.model_version,
            degraded=ranked.degraded,
            request_id=request_id,
        )

    @api.post("/v1/events", response_model=EventResponse, dependencies=[WRITE])
    async def event(self, body: EventRequest) -> EventResponse | JSONResponse:
        from seasonrec.serving.writes import NewUserLimit, StoreUnavailable, UnknownItem

        at = body.at or datetime.now(UTC)
        if invalid := await self._invalid(body.region, at):
            return invalid
        # Ray re-raises a replica's error as a subclass of its own type, so these match remote errors.
        try:
            await self.path.push(self.pseudonyms.of(body.user_id), body.item_id, body.event_type, at)
        except UnknownItem:
            return unprocessable("item_id", "unknown item")
        except NewUserLimit:
            detail = "too many events for new users this minute; retry later"
            return JSONResponse({"detail": detail}, status_code=429, headers={"Retry-After": "60"})
        except StoreUnavailable as exc:
            log.warning("event not recorded: %s", _reason(exc))
            detail = "online store unavailable; event not recorded, retry later"
            return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})
        return EventResponse(accepted=True, request_id=uuid.uuid4().hex)

    @api.get("/v1/users/suggested", response_model=UserList, dependencies=[READ])
    async def suggested_users(self, n: Annotated[int, Query(ge=1, le=MAX_SUGGESTED)] = 8) -> UserList:
        """The shop's most active users, for the page's user picker; read once from the offline table."""
        from seasonrec.errors import SeasonrecError
        from seasonrec.features.store import sample_users

        if self.pseudonyms.active:
            # The offline tables hold pseudonyms: offering one would show it, and the API would map it
            # again into an id nobody has. The page's picker stays empty; typing a raw id still works.
            return UserList(user_ids=[])
        if self.suggested is None:
            try:
                self.suggested = await asyncio.to_thread(sample_users, self.settings, MAX_SUGGESTED)
            except SeasonrecError as exc:
                log.warning("no suggested users: %s", exc)
                self.suggested = []
        return UserList(user_ids=self.suggested[:n])

    # `:path`: a shop's id may hold "/" (sent as %2F, which the server decodes before it routes).
    @api.get("/v1/users/{user_id:path}/history", response_model=HistoryResponse, dependencies=[READ])
    async def history(
        self, user_id: UserIdPath, limit: Annotated[int, Query(ge=1, le=100)] = 20
    ) -> HistoryResponse | JSONResponse:
        """The user's recent events from the online history, newest first; none for a user never seen."""
        from seasonrec.serving.writes import StoreUnavailable

        try:
            events = await self.path.history(self.pseudonyms.of(user_id), limit)
        except StoreUnavailable as exc:
            log.warning("history not read: %s", _reason(exc))
            detail = "online store unavailable; retry later"
            return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})
        # The caller's own (raw) id: the pseudonym never leaves the server.
        return HistoryResponse(user_id=user_id, events=[self._described(e) for e in events])

    @api.delete("/v1/users/{user_id:path}", response_model=ErasureResponse, dependencies=[WRITE])
    async def forget(self, user_id: UserIdPath) -> ErasureResponse | JSONResponse:
        """Erase a user (the shop's raw id): online rows, offline rows, files naming them; audited.

        The online part runs in the FeatureFetcher, under the user's event lock. The offline part runs
        here: on one machine `<data_dir>` is local; in Kubernetes it is the chart's data volume, which the
        Serve pods mount too (the files are rewritten there, for every pod at once). Other Ingress replicas
        keep their own suggested-user list until they restart (docs/operations.md, "Privacy").
        An unknown id is no error: every count is 0.
        """
        from seasonrec.errors import SeasonrecError
        from seasonrec.privacy.erasure import finish, stored_ids
        from seasonrec.serving.writes import StoreUnavailable

        request_id = uuid.uuid4().hex
        try:
            ids = stored_ids(self.settings, user_id, field="user_id")
        except SeasonrecError as exc:
            detail = [{"loc": ["path", "user_id"], "msg": str(exc).removeprefix("user_id: "), "type": "value_error"}]
            return JSONResponse({"detail": detail}, status_code=422)
        try:
            online = await self.path.forget(ids)
        except StoreUnavailable as exc:
            log.warning("request %s: erasure not done: %s", request_id, _reason(exc))
            detail = "online store unavailable; nothing was erased, retry later"
            return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})
        cached = self._forget_cached(ids)
        try:
            result = await asyncio.to_thread(finish, self.settings, ids, online, "api", request_id, cached)
        except (SeasonrecError, OSError) as exc:
            # The online rows are gone; an erasure can be repeated, and a retry finishes the files.
            log.warning("request %s: offline part of the erasure failed: %s", request_id, _reason(exc))
            detail = "the online rows were erased, the offline files not yet; retry (erasing again is safe)"
            return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})
        return ErasureResponse(removed=result["removed"], where=result["where"], request_id=request_id)

    def _forget_cached(self, ids: list[str]) -> int:
        """Drop the user from this replica's suggested users (read from the offline table); how many went."""
        if not self.suggested:
            return 0
        before = len(self.suggested)
        self.suggested = [u for u in self.suggested if u not in ids]
        return before - len(self.suggested)

    @api.get("/v1/regions", response_model=RegionList, dependencies=[READ])
    async def regions(self) -> RegionList:
        return RegionList(regions=sorted(await self._regions()))

    @api.get("/v1/model", response_model=ModelResponse, dependencies=[READ])
    async def model(self) -> ModelResponse:
        """The live model version, its model card and the names of its evaluation plots (nulls: no model ready)."""
        return ModelResponse(**await self.path.model())

    @api.get(
        "/v1/model/plots/{name}",
        dependencies=[READ],
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, 404: {"description": "no such plot"}},
    )
    async def plot(self, name: str) -> Response:
        """One of the live version's evaluation plots, by a name `GET /v1/model` lists."""
        png = await self.path.plot(name)
        if png is None:
            return JSONResponse({"detail": "no such plot"}, status_code=404)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})

    @api.get("/", include_in_schema=False)
    async def page(self) -> HTMLResponse:
        return HTMLResponse(self.page, headers=self.page_headers)

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """Only the status: what is wrong goes to the log (a refused rules file: the ReRanker's)."""
        triton = await self.path.ready()
        if not triton:
            log.warning("not ready: Triton or its model is not ready")
        return JSONResponse({"status": "ready" if triton else "not ready"}, status_code=200 if triton else 503)

    @api.get("/metrics")
    async def metrics(self) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def build_app(args: AppArgs):
    """The application: `serve run seasonrec.serving.app:build_app config=PATH`; `serving.topology` picks its shape."""
    if isinstance(args, dict):
        args = AppArgs.model_validate(args)
    config = args.config
    settings = load_settings(config)
    # Serve's access log writes each request's path, and /v1/users/{id}/... carries the shop's raw id:
    # with pseudonymous ids, no raw id may reach a log, so the Ingress keeps none.
    ingress = Ingress.options(logging_config={"enable_access_log": not settings.privacy.pseudonymize})
    if (args.topology or settings.serving.topology) == "fused":
        return ingress.bind(config)
    return ingress.bind(config, FeatureFetcher.bind(config), Scorer.bind(config), ReRanker.bind(config))
