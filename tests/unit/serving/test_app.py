"""The Ingress's own contract: which routes need the token, and which errors may degrade an answer."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from fastapi.routing import APIRoute

from seasonrec.config import Settings
from seasonrec.privacy.pseudonyms import Pseudonyms
from seasonrec.serving import app
from seasonrec.serving.api import RecommendationRequest
from seasonrec.serving.contracts import Fetched, Ranked, RankedItem, Scored
from seasonrec.serving.metrics import STAGE_SECONDS, UNKNOWN_CANDIDATES
from seasonrec.serving.rules import CandidateColumns
from seasonrec.serving.writes import StoreUnavailable

# Operational endpoints a probe or Prometheus calls without a token; the page holds no data of its own.
OPEN = {"/healthz", "/readyz", "/metrics", "/"}
TOPOLOGIES = ("fused", "graph")


def _routes(routes=None) -> list[APIRoute]:
    """Every endpoint of the app; Serve's ingress moves the class's own into an included router."""
    found = []
    for route in app.api.routes if routes is None else routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif (inner := getattr(route, "original_router", None) or getattr(route, "app", None)) is not None:
            found += _routes(getattr(inner, "routes", []))
    return found


def test_every_write_route_needs_the_write_token():
    writes = [r for r in _routes() if r.methods - {"GET", "HEAD"}]
    assert {r.path for r in writes} >= {"/v1/events", "/v1/users/{user_id:path}"}
    for route in writes:
        if route.path == "/v1/recommendations":  # a POST that only reads
            continue
        assert app.WRITE in route.dependencies, f"{sorted(route.methods)} {route.path} takes no write token"


def test_every_api_read_can_be_closed_by_protect_reads():
    assert {r.path for r in _routes()} >= OPEN | {"/v1/recommendations", "/v1/users/{user_id:path}/history"}
    for route in _routes():
        if route.path in OPEN:
            continue
        assert route.path.startswith("/v1/"), f"{route.path}: a new public path? add it to OPEN or /v1"
        assert app.READ in route.dependencies or app.WRITE in route.dependencies, f"{route.path} has no guard"


class _Remote:
    """A handle method: `.remote(...)` gives an awaitable, as Serve's DeploymentResponse is."""

    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        async def call():
            resolved = [await a if asyncio.iscoroutine(a) else a for a in args]
            result = await asyncio.to_thread(self.fn, *resolved)  # elsewhere, as a replica runs: not on this loop
            return await result if asyncio.iscoroutine(result) else result

        return call()


class _Handle:
    def __init__(self, **methods):
        for name, fn in methods.items():
            setattr(self, name, _Remote(fn))


def _ingress(fetch, topology: str) -> object:
    """An Ingress whose fetch does `fetch`, and whose scorer and re-ranker pass the columns through."""
    ingress = object.__new__(app.Ingress.func_or_class.__wrapped__)  # the class itself, not Serve's ASGI wrapper
    ingress.settings = Settings()
    ingress.pseudonyms = Pseudonyms(ingress.settings.privacy)
    ingress.stages, ingress.unknown_candidates = STAGE_SECONDS, UNKNOWN_CANDIDATES
    ingress.catalogue = {}

    def fallback(region, at):
        return Scored(CandidateColumns(["pool-item"], [0.5]), {}, "GB", model_version=None, degraded=True)

    def score(fetched, deadline):
        return Scored(CandidateColumns(["model-item"], [1.0]), {}, "GB", model_version="1", degraded=False)

    def rerank(scored, k, at):
        items = [RankedItem(i, 1.0, []) for i in scored.columns.item_id]
        return Ranked(items, scored.model_version, scored.degraded)

    if topology == "graph":
        handles = _Handle(fetch=fetch, fallback=fallback), _Handle(score=score), _Handle(rerank=rerank)
        ingress.path = app.Graph(*handles)
    else:  # the real Fused path, with its stages' work replaced
        path = object.__new__(app.Fused)
        path.fetch = SimpleNamespace(fetch=fetch, fallback=fallback)
        path.score = SimpleNamespace(score=lambda fetched, deadline: _now(score(fetched, deadline)))
        path.rerank = SimpleNamespace(rerank=rerank)
        ingress.path = path
    return ingress


async def _now(value):
    return value


def _ask(ingress):
    body = RecommendationRequest(user_id="u1", at=datetime.now(UTC))
    return asyncio.run(ingress.recommend(body))


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_an_answer_comes_from_the_model_through_either_topology(topology):
    answer = _ask(_ingress(lambda *args: Fetched({}, {}, "GB"), topology))
    assert not answer.degraded and answer.model_version == "1" and [i.item_id for i in answer.items] == ["model-item"]


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_store_outage_degrades_to_the_seasonal_pools(topology):
    def down(*args):
        raise StoreUnavailable("online store: ConnectionError")

    answer = _ask(_ingress(down, topology))
    assert answer.degraded and [i.item_id for i in answer.items] == ["pool-item"]


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_any_other_error_is_not_dressed_up_as_a_degraded_answer(topology):
    """A bug (here a calendar overflow) must surface as a 500, not as a 200 with seasonal popularity."""

    def broken(*args):
        raise ValueError("year 10000 is out of range")

    with pytest.raises(ValueError, match="out of range"):
        _ask(_ingress(broken, topology))


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_fetch_past_the_deadline_is_answered_from_the_seasonal_pools_in_time(topology):
    """A store read that hangs cannot be interrupted; the answer does not wait for it."""

    def hangs(*args):
        time.sleep(1.5)
        return Fetched({}, {}, "GB")

    ingress = _ingress(hangs, topology)
    ingress.settings = Settings(serving={"deadline_ms": 200})

    async def timed():
        started = time.perf_counter()
        answer = await ingress.recommend(RecommendationRequest(user_id="u1", at=datetime.now(UTC)))
        return answer, time.perf_counter() - started

    answer, seconds = asyncio.run(timed())  # asyncio.run then waits for the hung read's thread to end
    assert seconds < 1.0
    assert answer.degraded and [i.item_id for i in answer.items] == ["pool-item"]
