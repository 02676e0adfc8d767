"""The HTTP contract: body limits, small 422s, the bearer token on writes, and the bounds of `at`."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, SecretStr

from seasonrec.config import AuthConfig, ServingConfig
from seasonrec.serving.api import Utf8Bodies, at_outside, token_guard, validation_error

LIMIT = 64 * 1024


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


def _client(limit: int = LIMIT, auth: AuthConfig | None = None) -> TestClient:
    auth = auth or AuthConfig(write_token=SecretStr("s3cret"))
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(Utf8Bodies, max_body_bytes=lambda: limit)

    @app.post("/echo")
    async def echo(body: Echo) -> Echo:
        return body

    @app.post("/write", dependencies=[Depends(token_guard(lambda: auth))])
    async def write(body: Echo) -> Echo:
        return body

    @app.post("/read", dependencies=[Depends(token_guard(lambda: auth, reads=True))])
    async def read(body: Echo) -> Echo:
        return body

    @app.get("/ping")
    async def ping() -> dict:
        return {"ok": True}

    return TestClient(app)


def _run(middleware: Utf8Bodies, scope: dict, chunks: list[dict]) -> tuple[list[dict], list[dict]]:
    """Drive the middleware by hand: what the app saw, and what went back to the client."""
    seen, sent = [], []

    async def app(scope, receive, send):
        seen.append(await receive())

    middleware.app = app

    async def receive():
        return chunks.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(middleware({"type": "http", "method": "POST", "headers": [], **scope}, receive, send))
    return seen, sent


def test_a_body_that_is_not_utf8_is_a_422_naming_the_body():
    reply = _client().post("/echo", content=b'{"text": "\xff\xfe"}', headers={"content-type": "application/json"})
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body"]


def test_a_utf8_body_reaches_the_app_whole():
    text = "Weihnachtsstern – ünïcödé " * 2_000
    reply = _client().post("/echo", json={"text": text})
    assert reply.status_code == 200 and reply.json() == {"text": text}


def test_a_body_sent_in_chunks_is_checked_whole_and_handed_on_whole():
    # "ü" is split across the two chunks: each chunk alone is not UTF-8, the body is.
    chunks = [{"type": "http.request", "body": "Gl\u00fc".encode()[:-1], "more_body": True}]
    chunks.append({"type": "http.request", "body": "Gl\u00fchwein".encode()[3:], "more_body": False})
    seen, _ = _run(Utf8Bodies(None, lambda: LIMIT), {}, chunks)
    assert seen == [{"type": "http.request", "body": "Glühwein".encode(), "more_body": False}]


def test_requests_without_a_body_pass_through():
    assert _client().get("/ping").json() == {"ok": True}


def test_a_body_declared_longer_than_the_limit_is_a_413_before_any_of_it_is_read():
    chunks = [{"type": "http.request", "body": b"x" * 10, "more_body": False}]
    seen, sent = _run(Utf8Bodies(None, lambda: 100), {"headers": [(b"content-length", b"101")]}, chunks)
    assert sent[0]["status"] == 413 and seen == []
    assert len(chunks) == 1  # not one byte was read


def test_a_streamed_body_is_cut_off_with_a_413_as_soon_as_it_passes_the_limit():
    chunks = [{"type": "http.request", "body": b"x" * 60, "more_body": True} for _ in range(100)]
    seen, sent = _run(Utf8Bodies(None, lambda: 100), {}, chunks)
    assert sent[0]["status"] == 413 and seen == []
    assert len(chunks) == 98  # two chunks read, the other 98 never were


def test_a_body_at_the_limit_is_accepted_and_one_byte_more_is_a_413():
    text = "x" * (LIMIT - len('{"text": ""}'))
    body = f'{{"text": "{text}"}}'.encode()
    headers = {"content-type": "application/json"}
    assert _client().post("/echo", content=body, headers=headers).status_code == 200
    reply = _client().post("/echo", content=body + b" ", headers=headers)
    assert reply.status_code == 413 and reply.json()["detail"][0]["loc"] == ["body"]


def test_a_huge_extra_key_gives_a_small_422_that_names_it_shortened():
    key = "k" * 1_000_000
    reply = _client(limit=4_000_000).post("/echo", json={"text": "t", key: 1})
    assert reply.status_code == 422 and len(reply.content) < 1_000
    assert reply.json()["detail"][0]["loc"] == ["body", "k" * 64]


def test_a_write_without_the_token_is_a_401_with_a_bearer_challenge():
    reply = _client().post("/write", json={"text": "t"})
    assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"


def test_a_write_with_a_wrong_token_is_a_401_and_the_log_never_holds_either_token(caplog):
    with caplog.at_level(logging.WARNING):
        reply = _client().post("/write", json={"text": "t"}, headers={"Authorization": "Bearer guess-token"})
    assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
    assert "POST /write refused: wrong bearer token" in caplog.text
    assert "guess-token" not in caplog.text and "s3cret" not in caplog.text


def test_a_write_with_the_token_goes_through():
    reply = _client().post("/write", json={"text": "t"}, headers={"Authorization": "Bearer s3cret"})
    assert reply.status_code == 200 and reply.json() == {"text": "t"}


def test_without_a_configured_token_every_write_is_refused_and_says_why():
    reply = _client(auth=AuthConfig()).post("/write", json={"text": "t"}, headers={"Authorization": "Bearer "})
    assert reply.status_code == 401 and "no write token is configured" in reply.json()["detail"]


def test_the_token_is_checked_before_the_body_so_a_stranger_gets_no_422():
    assert _client().post("/write", json={"wrong": 1}).status_code == 401


def test_reads_are_open_unless_protect_reads_is_set():
    assert _client().post("/read", json={"text": "t"}).status_code == 200
    closed = _client(auth=AuthConfig(write_token=SecretStr("s3cret"), protect_reads=True))
    assert closed.post("/read", json={"text": "t"}).status_code == 401
    assert closed.post("/read", json={"text": "t"}, headers={"Authorization": "Bearer s3cret"}).status_code == 200


NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
SERVING = ServingConfig(at_past_days=365, at_future_s=300)


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        (NOW, True),
        (NOW - timedelta(days=365), True),
        (NOW + timedelta(seconds=300), True),
        (NOW - timedelta(days=365, seconds=1), False),
        (NOW + timedelta(seconds=301), False),
        (datetime(1, 1, 1, tzinfo=UTC), False),
        (datetime(9999, 12, 31, 23, 59, tzinfo=UTC), False),
        (datetime(2200, 1, 1, tzinfo=UTC), False),
    ],
    ids=["now", "oldest", "newest", "too-old", "too-new", "year-1", "year-9999", "year-2200"],
)
def test_at_must_lie_within_the_configured_window(at, inside):
    why = at_outside(at, SERVING, NOW)
    assert (why is None) == inside
    if not inside:
        assert why == "must lie between 2025-06-01T12:00:00Z and 2026-06-01T12:05:00Z"
