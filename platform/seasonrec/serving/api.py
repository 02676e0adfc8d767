"""The HTTP contract: request and response bodies, and 422s that name the field without echoing it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_ID_LENGTH = 128
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
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


async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with where and what, never the offending value: it may be huge, binary or hostile."""
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())][:6], "msg": e.get("msg", "invalid"), "type": e.get("type", "")}
        for e in exc.errors()[:10]
    ]
    return JSONResponse({"detail": errors}, status_code=422)


class Utf8Bodies:
    """A POST body that is not UTF-8 is a 422 naming the body, not FastAPI's bare 400.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs
    every request through extra tasks and streams, a cost paid on every recommendation.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks, message = [], {"more_body": True}
        while message.get("more_body"):
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                return await self.app(scope, _replay(message, receive), send)
            chunks.append(message.get("body", b""))
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            detail = [{"loc": ["body"], "msg": "the body is not valid UTF-8", "type": "unicode_error"}]
            return await JSONResponse({"detail": detail}, status_code=422)(scope, receive, send)
        return await self.app(scope, _replay({"type": "http.request", "body": body, "more_body": False}, receive), send)


def _replay(first: dict, receive):
    """A `receive` that hands out `first` once, then reads on from the client."""
    pending = [first]

    async def replayed():
        return pending.pop() if pending else await receive()

    return replayed
