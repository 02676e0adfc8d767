"""The HTTP contract's middleware: non-UTF-8 bodies are 422s, every other body reaches the app intact."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from seasonrec.serving.api import Utf8Bodies


class Echo(BaseModel):
    text: str


def _client() -> TestClient:
    app = FastAPI()
    app.add_middleware(Utf8Bodies)

    @app.post("/echo")
    async def echo(body: Echo) -> Echo:
        return body

    @app.get("/ping")
    async def ping() -> dict:
        return {"ok": True}

    return TestClient(app)


def test_a_body_that_is_not_utf8_is_a_422_naming_the_body():
    reply = _client().post("/echo", content=b'{"text": "\xff\xfe"}', headers={"content-type": "application/json"})
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body"]


def test_a_utf8_body_reaches_the_app_whole():
    text = "Weihnachtsstern – ünïcödé " * 2_000
    reply = _client().post("/echo", json={"text": text})
    assert reply.status_code == 200 and reply.json() == {"text": text}


def test_a_body_sent_in_chunks_is_checked_whole_and_handed_on_whole():
    seen = []

    async def app(scope, receive, send):
        seen.append(await receive())

    # "ü" is split across the two chunks: each chunk alone is not UTF-8, the body is.
    chunks = [{"type": "http.request", "body": "Gl\u00fc".encode()[:-1], "more_body": True}]
    chunks.append({"type": "http.request", "body": "Gl\u00fchwein".encode()[3:], "more_body": False})

    async def receive():
        return chunks.pop(0)

    asyncio.run(Utf8Bodies(app)({"type": "http", "method": "POST"}, receive, None))
    assert seen == [{"type": "http.request", "body": "Glühwein".encode(), "more_body": False}]


def test_requests_without_a_body_pass_through():
    assert _client().get("/ping").json() == {"ok": True}
