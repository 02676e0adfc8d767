"""The HTTP contract: body limits, small 422s, the bearer token on writes, and the bounds of `at`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, SecretStr

from seasonrec import schema as s
from seasonrec.config import AuthConfig, ServingConfig
from seasonrec.serving.api import (
    REPORT_DIR,
    RecommendedItem,
    UserIdPath,
    Utf8Bodies,
    at_outside,
    history_events,
    load_catalogue,
    page_csp,
    public_card,
    report_plot,
    report_plots,
    token_guard,
    validation_error,
)

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

    @app.delete("/users/{user_id}", dependencies=[Depends(token_guard(lambda: auth))])
    async def forget(user_id: str) -> dict:
        return {"forgotten": True}

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


def test_a_refused_write_logs_the_route_not_a_customer_id_in_its_path(caplog):
    with caplog.at_level(logging.WARNING):
        assert _client().delete("/users/CUSTOMER-4711").status_code == 401
    assert "DELETE /users/{user_id} refused: no bearer token" in caplog.text and "CUSTOMER-4711" not in caplog.text


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


# --- the web page's API pieces ----------------------------------------------------------------------
PAGE = Path(__file__).resolve().parents[3] / "platform" / "seasonrec" / "serving" / "web" / "index.html"


def test_history_comes_newest_first_limited_with_times_in_utc():
    row = {
        s.HISTORY_ITEM_IDS: ["I1", "I2", "I3"],
        s.HISTORY_TS: [1_700_000_000, 1_700_000_100, 1_700_000_200],
        s.HISTORY_EVENT_TYPES: ["view", "cart", "purchase"],
    }
    events = history_events(row, 2)
    assert [e["item_id"] for e in events] == ["I3", "I2"]
    assert events[0] == {"item_id": "I3", "event_type": "purchase", "at": datetime.fromtimestamp(1_700_000_200, UTC)}


def test_history_of_an_unknown_user_is_empty_and_old_rows_without_types_still_read():
    assert history_events({}, 20) == []
    events = history_events({s.HISTORY_ITEM_IDS: ["I1", "I2"], s.HISTORY_TS: [1, 2], s.HISTORY_EVENT_TYPES: None}, 20)
    assert [(e["item_id"], e["event_type"]) for e in events] == [("I2", None), ("I1", None)]


def test_the_catalogue_maps_items_to_title_and_category(tmp_path):
    import polars as pl

    pl.DataFrame({s.ITEM_ID: ["I1", "I2"], s.TITLE: ["Beach towel", "Wool scarf"], s.CATEGORY: ["summer", None]}).join(
        pl.DataFrame({s.ITEM_ID: ["I1", "I2"], "price": [9.5, 12.0]}), on=s.ITEM_ID
    ).write_parquet(tmp_path / f"{s.ITEMS_TABLE}.parquet")
    assert load_catalogue(tmp_path) == {"I1": ("Beach towel", "summer"), "I2": ("Wool scarf", None)}


def test_without_an_items_table_titles_are_none_with_one_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert load_catalogue(tmp_path / "missing") == {}
    assert len([r for r in caplog.records if "no item titles" in r.getMessage()]) == 1
    assert RecommendedItem(item_id="I1", score=0.5, reasons=[]).title is None


def test_the_public_card_drops_server_paths_and_nan():
    card = {
        "source_checkpoint": "/srv/ckpt",
        "data_window": {"training_set": "/srv/train.parquet", "first_request": "2024-01-01"},
        "metrics": {"test": {"served": {"all": {"ndcg@10": 0.31, "auc": math.nan}}}},
    }
    shown = public_card(card)
    assert "source_checkpoint" not in shown and shown["data_window"] == {"first_request": "2024-01-01"}
    assert shown["metrics"]["test"]["served"]["all"] == {"ndcg@10": 0.31, "auc": None}


def test_a_plot_is_served_only_by_a_name_that_is_listed(tmp_path):
    version = tmp_path / "ranker" / "1"
    (version / REPORT_DIR).mkdir(parents=True)
    (version / REPORT_DIR / "views.png").write_bytes(b"\x89PNG views")
    (version / REPORT_DIR / "notes.txt").write_text("not a plot")
    (version / "model.onnx").write_bytes(b"weights")
    assert report_plots(version) == ["views.png"]
    assert report_plot(version, "views.png") == b"\x89PNG views"
    for name in ("notes.txt", "../model.onnx", "..", "/etc/passwd", "report/views.png", "VIEWS.PNG"):
        assert report_plot(version, name) is None, name
    assert report_plots(tmp_path / "no-such-version") == []


def test_the_csp_allows_exactly_the_pages_own_inline_script_and_style_and_nothing_remote():
    html = PAGE.read_text()
    csp = page_csp(html)
    for tag in ("script", "style"):
        (block,) = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}';" in csp
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "http" not in csp
    assert "script-src 'none'" in page_csp("<p>no script</p>")


def test_the_page_inserts_no_markup_from_data_and_loads_nothing_from_elsewhere():
    html = PAGE.read_text()
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html and "document.write" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


def test_a_user_id_in_the_path_is_bounded_like_one_in_a_body():
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, validation_error)

    @app.get("/users/{user_id}")
    async def user(user_id: UserIdPath) -> dict:
        return {"user_id": user_id}

    client = TestClient(app)
    assert client.get("/users/u1").json() == {"user_id": "u1"}
    reply = client.get(f"/users/{'x' * (s.MAX_ID_LENGTH + 1)}")
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["path", "user_id"]
