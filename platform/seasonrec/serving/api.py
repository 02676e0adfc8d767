"""The HTTP contract: request and response bodies, 422s that name the field without echoing it, the
bearer token that guards writes, and the bounds every request body and timestamp must keep."""

# No `from __future__ import annotations`: Serve pickles `token_guard`'s dependency by value, without
# the module names its string annotations would need, and FastAPI would take its parameters for queries.

import base64
import hashlib
import hmac
import json
import logging
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

from seasonrec import schema as s
from seasonrec.config import AuthConfig, ServingConfig
from seasonrec.errors import SeasonrecError

log = logging.getLogger(__name__)

# Longest field name or location part a 422 echoes: a client's 1 MB extra key must not come back whole.
MAX_ECHOED = 64
# Reads `Authorization: Bearer ...` without refusing a request itself: `require_token` words the 401.
BEARER = HTTPBearer(auto_error=False)
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=s.MAX_ID_LENGTH)]
# The same bounds as a body's user_id, for ids in the URL path.
UserIdPath = Annotated[str, PathParam(min_length=1, max_length=s.MAX_ID_LENGTH)]
# `seasonrec export --metrics` copies the evaluation's plots here, inside the version's folder.
REPORT_DIR = "report"
ContextValue = Annotated[str, StringConstraints(max_length=256)] | int | float | bool


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendationRequest(_Body):
    user_id: ItemId
    k: int = Field(10, ge=1, le=100)
    region: Annotated[str, StringConstraints(min_length=2, max_length=8)] | None = None
    at: datetime | None = None
    candidates: list[ItemId] | None = Field(None, max_length=1_000)
    context: dict[Annotated[str, StringConstraints(max_length=64)], ContextValue] | None = Field(None, max_length=32)

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class RecommendedItem(BaseModel):
    item_id: str
    score: float | None
    reasons: list[str]
    title: str | None = None
    category: str | None = None


class RecommendationResponse(BaseModel):
    items: list[RecommendedItem]
    model_version: str | None
    degraded: bool
    request_id: str


class EventRequest(_Body):
    user_id: ItemId
    item_id: ItemId
    event_type: Literal["view", "cart", "purchase"]
    at: datetime | None = None
    region: Annotated[str, StringConstraints(min_length=2, max_length=8)] | None = None


class EventResponse(BaseModel):
    accepted: bool
    request_id: str


class HistoryEvent(BaseModel):
    item_id: str
    title: str | None
    category: str | None
    event_type: str | None
    at: datetime


class HistoryResponse(BaseModel):
    user_id: str
    events: list[HistoryEvent]  # newest first


class ErasureCounts(BaseModel):
    total: int
    offline_rows: int
    online_keys: int
    files: int
    cached: int


class ErasureResponse(BaseModel):
    """What `DELETE /v1/users/{user_id}` removed: counts, and per place (file, view) how many."""

    removed: ErasureCounts
    where: dict[str, Any]
    request_id: str


class UserList(BaseModel):
    user_ids: list[str]


class RegionList(BaseModel):
    regions: list[str]


class ModelResponse(BaseModel):
    model_version: str | None
    card: dict[str, Any] | None
    plots: list[str]


Catalogue = dict[str, tuple[str | None, str | None]]


def load_catalogue(canonical: Path) -> Catalogue:
    """item_id -> (title, category) from the canonical items table; {} (and one warning) when unreadable,
    since titles only decorate answers the service can give without them."""
    import polars as pl

    from seasonrec.data.validate import find_table, scan_table

    try:
        items = scan_table(find_table(canonical, s.ITEMS_TABLE)).select(s.ITEM_ID, s.TITLE, s.CATEGORY).collect()
    except (SeasonrecError, OSError, pl.exceptions.PolarsError) as exc:
        log.warning("no item titles in answers: %s", str(exc).splitlines()[0][:300])
        return {}
    return {item: (title, category) for item, title, category in items.iter_rows()}


def history_events(row: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """The newest `limit` events of an online history row (kept oldest first), newest first."""
    ids = list(row.get(s.HISTORY_ITEM_IDS) or [])
    times = list(row.get(s.HISTORY_TS) or [])
    types = list(row.get(s.HISTORY_EVENT_TYPES) or [])
    types += [None] * (len(ids) - len(types))  # rows written before event types were kept
    events = [
        {"item_id": item, "event_type": kind, "at": datetime.fromtimestamp(ts, UTC)}
        for item, ts, kind in zip(ids, times, types, strict=False)
        if item is not None and ts is not None
    ]
    return events[::-1][:limit]


def public_card(card: dict[str, Any]) -> dict[str, Any]:
    """The model card as the public API shows it: figures, not the server's file paths, and no NaN,
    which JSON cannot carry (a metric with no positives is NaN)."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    card = {k: v for k, v in card.items() if k != "source_checkpoint"}
    if isinstance(card.get("data_window"), dict):
        card["data_window"] = {k: v for k, v in card["data_window"].items() if k != "training_set"}
    return clean(card)


def read_card(version_dir: Path, card_file: str) -> dict[str, Any] | None:
    try:
        return public_card(json.loads((version_dir / card_file).read_text()))
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("%s: model card not readable (%s)", version_dir / card_file, type(exc).__name__)
        return None


def report_plots(version_dir: Path) -> list[str]:
    report = version_dir / REPORT_DIR
    if not report.is_dir():
        return []
    return sorted(p.name for p in report.glob("*.png") if p.is_file() and not p.is_symlink())


def report_plot(version_dir: Path, name: str) -> bytes | None:
    """A plot's bytes, only for a name `report_plots` lists: a name is never joined into a path unchecked."""
    if name not in report_plots(version_dir):
        return None
    return (version_dir / REPORT_DIR / name).read_bytes()


def page_csp(html: str) -> str:
    """The page's Content-Security-Policy: nothing from another origin, and only the page's own inline
    script and style, allowed by hash rather than 'unsafe-inline', so that markup injected by a bug
    could not run. Hashed from the file as served, so editing the page needs no second edit here."""

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
        digests = [base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in blocks]
        return " ".join(f"'sha256-{d}'" for d in digests) or "'none'"

    return (
        "default-src 'self'; "
        f"script-src {hashes('script')}; style-src {hashes('style')}; "
        # Plots are fetched with the token (reads may need it) and shown from blob: URLs.
        "img-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )


def require_token(credentials: HTTPAuthorizationCredentials | None, token: SecretStr | None, request: Request) -> None:
    """A 401 unless the request carries `Authorization: Bearer <token>`; the check every write endpoint makes.

    Compared in constant time, so the answer's timing tells nothing about how much of a guess was right.
    With no token configured nothing can match: writes are refused rather than left open.
    """
    challenge = {"WWW-Authenticate": "Bearer"}
    # The route's template (/v1/users/{user_id}), not the path: a path may carry a customer's id, and logs must not.
    route = request.scope.get("route")
    where = f"{request.method} {getattr(route, 'path', None) or request.url.path}"
    if token is None:
        log.warning("%s refused: no write token is configured (auth.write_token)", where)
        raise HTTPException(401, "no write token is configured on the server; writes are refused", challenge)
    given = credentials.credentials.encode() if credentials else b""
    if not hmac.compare_digest(given, token.get_secret_value().encode()):
        # The token itself never reaches the log, right or wrong.
        log.warning("%s refused: %s bearer token", where, "wrong" if given else "no")
        raise HTTPException(401, "a valid bearer token is required (Authorization: Bearer ...)", challenge)


def token_guard(auth: Callable[[], AuthConfig], reads: bool = False):
    """A dependency for an endpoint's `dependencies=[Depends(...)]`: writes always need the token,
    reads (`reads=True`) only with `auth.protect_reads`. FastAPI runs it before it validates the
    body's fields, so a caller without the token learns nothing from 422s either."""

    async def guard(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
    ) -> None:
        settings = auth()
        if not reads or settings.protect_reads:
            require_token(credentials, settings.write_token, request)

    return guard


def at_outside(at: datetime, serving: ServingConfig, now: datetime) -> str | None:
    """Why `at` lies outside [now - at_past_days, now + at_future_s], or None when it lies inside.

    Seasonal features of year 1 or 9999 are nonsense (and overflow the calendar code), and a
    far-future event would otherwise outrank every real one.
    """
    earliest = now - timedelta(days=serving.at_past_days)
    latest = now + timedelta(seconds=serving.at_future_s)
    if earliest <= at <= latest:
        return None
    return f"must lie between {earliest:%Y-%m-%dT%H:%M:%SZ} and {latest:%Y-%m-%dT%H:%M:%SZ}"


def unprocessable(field: str, msg: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["body", field], "msg": msg, "type": "value_error"}]}, status_code=422)


async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with where and what, never the offending value: it may be huge, binary or hostile."""
    errors = [
        {
            "loc": [str(p)[:MAX_ECHOED] for p in e.get("loc", ())][:6],
            "msg": str(e.get("msg", "invalid"))[:200],
            "type": e.get("type", ""),
        }
        for e in exc.errors()[:10]
    ]
    return JSONResponse({"detail": errors}, status_code=422)


class Utf8Bodies:
    """A body longer than the limit is a 413, one that is not UTF-8 a 422 naming the body.

    The length is checked from Content-Length before anything is read, and again as the
    chunks of a streamed body arrive, so no body longer than the limit is ever held whole.
    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs
    every request through extra tasks and streams, a cost paid on every recommendation.
    `max_body_bytes` is asked per request: the Serve replica learns its settings only after
    the app is built.
    """

    def __init__(self, app, max_body_bytes: Callable[[], int]):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_body_bytes()
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > limit:
            return await _too_large(limit)(scope, receive, send)
        if scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        chunks, size, message = [], 0, {"more_body": True}
        while message.get("more_body"):
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                return await self.app(scope, _replay(message, receive), send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await _too_large(limit)(scope, receive, send)
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            detail = [{"loc": ["body"], "msg": "the body is not valid UTF-8", "type": "unicode_error"}]
            return await JSONResponse({"detail": detail}, status_code=422)(scope, receive, send)
        return await self.app(scope, _replay({"type": "http.request", "body": body, "more_body": False}, receive), send)


def _too_large(limit: int) -> JSONResponse:
    detail = [{"loc": ["body"], "msg": f"the body is longer than {limit} bytes", "type": "too_large"}]
    return JSONResponse({"detail": detail}, status_code=413)


def _replay(first: dict, receive):
    """A `receive` that hands out `first` once, then reads on from the client."""
    pending = [first]

    async def replayed():
        return pending.pop() if pending else await receive()

    return replayed
