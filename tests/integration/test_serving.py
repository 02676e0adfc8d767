"""The whole serving stack through real HTTP: Feast, the embedded Triton, Ray Serve. No mocks.

The event writes are also driven straight through the FeatureReader, from several
threads and processes at once, against real Feast SQLite and Redis stores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import polars as pl
import pytest
import yaml

from seasonrec import schema as s
from seasonrec.features.store import sample_users
from seasonrec.serving import fetcher, writes
from seasonrec.serving.fetcher import FeatureReader
from seasonrec.serving.stack import ServeStack
from seasonrec.serving.writes import NewUserLimit, StoreUnavailable, UnknownItem
from seasonrec.triton.server import TritonServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module", params=["fused", "graph"])
def stack(request, stack_for):
    """Every test of this module runs against each `serving.topology`: (settings, url)."""
    with stack_for(request.param) as started:
        yield started


@pytest.fixture(scope="module")
def writer(stack):
    settings, _ = stack
    return {"Authorization": f"Bearer {ServeStack(settings).write_token()}"}


JULY, DECEMBER = "2024-07-10T12:00:00+00:00", "2024-12-10T12:00:00+00:00"


def _recommend(url, **body):
    reply = httpx.post(f"{url}/v1/recommendations", json=body, timeout=30)
    assert reply.status_code == 200, reply.text[:300]
    return reply.json()


def _catalogue(settings) -> list[str]:
    items = pl.read_parquet(settings.paths.features / f"{s.ITEM_PROFILE}.parquet", columns=[s.ITEM_ID])
    return items[s.ITEM_ID].unique().sort().to_list()


def test_the_same_user_gets_different_items_in_july_and_december(stack):
    settings, url = stack
    user = sample_users(settings, 1)[0]
    july = _recommend(url, user_id=user, k=5, region="GB", at=JULY)
    december = _recommend(url, user_id=user, k=5, region="GB", at=DECEMBER)
    assert not july["degraded"] and not december["degraded"] and july["model_version"] == "1"
    assert [i["item_id"] for i in july["items"]] != [i["item_id"] for i in december["items"]]
    assert len(july["items"]) == 5 and all(isinstance(i["reasons"], list) for i in july["items"])


def test_a_purchase_event_removes_the_item_at_once(stack, writer):
    settings, url = stack
    user = sample_users(settings, 2)[1]
    top = _recommend(url, user_id=user, k=5, region="GB", at=DECEMBER)["items"][0]["item_id"]
    event = {"user_id": user, "item_id": top, "event_type": "purchase", "at": "2024-12-10T11:00:00+00:00"}
    assert httpx.post(f"{url}/v1/events", json=event, timeout=30).status_code == 401  # writes need the token
    assert httpx.post(f"{url}/v1/events", json=event, headers=writer, timeout=30).status_code == 200
    after = _recommend(url, user_id=user, k=5, region="GB", at=DECEMBER)
    assert top not in [i["item_id"] for i in after["items"]]


def test_a_campaign_pins_its_item_inside_its_window_only_and_rules_reload_live(stack):
    settings, url = stack
    user = sample_users(settings, 3)[2]
    before = _recommend(url, user_id=user, k=5, region="GB", at=DECEMBER)["items"]
    pinned = _recommend(url, user_id=user, k=50, region="GB", at=DECEMBER)["items"][-1]["item_id"]
    rules = yaml.safe_load(settings.serving.rules_path.read_text())
    rules["campaigns"] = [
        {"name": "advent", "start": "2024-12-01", "end": "2024-12-24", "regions": ["GB"], "pin": [pinned]}
    ]
    settings.serving.rules_path.write_text(yaml.safe_dump(rules))
    deadline = time.time() + 20
    while time.time() < deadline:  # the ReRanker looks at the file at most once a second
        inside = _recommend(url, user_id=user, k=5, region="GB", at=DECEMBER)["items"]
        if inside[0]["item_id"] == pinned:
            break
        time.sleep(0.5)
    assert inside[0]["item_id"] == pinned and "campaign:advent:pin" in inside[0]["reasons"]
    outside = _recommend(url, user_id=user, k=5, region="GB", at=JULY)["items"]
    assert all("campaign:advent:pin" not in i["reasons"] for i in outside)
    # A broken file is refused; the last good rules keep answering.
    settings.serving.rules_path.write_text("campaigns: [{name: x, start: 2024-12-30, end: 2024-12-01}]\n")
    time.sleep(1.5)
    still = _recommend(url, user_id=user, k=5, region="GB", at=DECEMBER)["items"]
    assert still[0]["item_id"] == pinned
    assert httpx.get(f"{url}/readyz", timeout=10).json() == {"status": "ready"}  # the error is in the log only
    assert before  # the user had recommendations before any campaign


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "u", "k": "ten"}, "k"),
        ({"user_id": 12, "k": 5}, "user_id"),
        ({"user_id": "u", "k": 0}, "k"),
        ({"user_id": "u", "k": 101}, "k"),
        ({"user_id": "u", "candidates": [f"I{i}" for i in range(10_000)]}, "candidates"),
        ({"user_id": "u", "region": "XX"}, "region"),
        ({"user_id": "x" * 200_000}, "user_id"),
        ({"user_id": "u", "k" * 200_000: 1}, "k" * 64),
        ({"user_id": "u", "at": "0001-01-01T00:00:00+00:00"}, "at"),
        ({"user_id": "u", "at": "9999-12-31T23:59:59+00:00"}, "at"),
        ({"user_id": "u", "at": "2200-01-01T00:00:00+00:00"}, "at"),
    ],
    ids=[
        "k-type",
        "user-type",
        "k-zero",
        "k-101",
        "10k-candidates",
        "unknown-region",
        "200KB-user-id",
        "200KB-extra-key",
        "year-1",
        "year-9999",
        "year-2200",
    ],
)
def test_malformed_bodies_are_422s_that_name_the_field_and_echo_nothing(stack, body, field):
    _, url = stack
    reply = httpx.post(f"{url}/v1/recommendations", json=body, timeout=30)
    assert reply.status_code == 422
    assert field in [loc for d in reply.json()["detail"] for loc in d["loc"]]
    assert len(reply.content) < 2_000  # the offending value is not sent back


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"item_id": "NO-SUCH-ITEM"}, 422, "item_id"),
        ({"at": "0001-01-01T00:00:00+00:00"}, 422, "at"),
        ({"at": "9999-12-31T23:59:59+00:00"}, 422, "at"),
        ({"at": "2200-01-01T00:00:00+00:00"}, 422, "at"),
        ({"region": "XX"}, 422, "region"),
    ],
    ids=["unknown-item", "year-1", "year-9999", "year-2200", "unknown-region"],
)
def test_an_event_with_a_bad_field_is_a_422_naming_it(stack, writer, change, status, field):
    settings, url = stack
    event = {"user_id": sample_users(settings, 1)[0], "item_id": _catalogue(settings)[0], "event_type": "view"}
    reply = httpx.post(f"{url}/v1/events", json={**event, **change}, headers=writer, timeout=30)
    assert reply.status_code == status, reply.text[:300]
    assert field in [loc for d in reply.json()["detail"] for loc in d["loc"]]


def test_writes_need_the_right_token(stack, writer):
    settings, url = stack
    event = {"user_id": sample_users(settings, 1)[0], "item_id": _catalogue(settings)[0], "event_type": "view"}
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": writer["Authorization"][7:]}):
        reply = httpx.post(f"{url}/v1/events", json=event, headers=headers, timeout=30)
        assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
    assert httpx.post(f"{url}/v1/events", json=event, headers=writer, timeout=30).json()["accepted"] is True


def test_events_of_new_users_are_accepted_up_to_their_rate_then_429(stack, writer):
    settings, url = stack
    item = _catalogue(settings)[0]
    codes = [
        httpx.post(
            f"{url}/v1/events",
            json={"user_id": f"new-customer-{uuid.uuid4().hex}", "item_id": item, "event_type": "view"},
            headers=writer,
            timeout=30,
        ).status_code
        for _ in range(settings.serving.new_user_events_per_minute + 1)
    ]
    assert codes == [200] * settings.serving.new_user_events_per_minute + [429]
    known = {"user_id": sample_users(settings, 1)[0], "item_id": item, "event_type": "view"}
    assert httpx.post(f"{url}/v1/events", json=known, headers=writer, timeout=30).status_code == 200


def test_a_body_over_the_limit_is_a_413_whether_declared_or_streamed(stack):
    settings, url = stack
    big = json.dumps({"user_id": "u", "candidates": ["I"] * 200_000}).encode()
    assert len(big) > settings.serving.max_body_bytes
    headers = {"content-type": "application/json"}
    declared = httpx.post(f"{url}/v1/recommendations", content=big, headers=headers, timeout=30)
    assert declared.status_code == 413

    def chunks():
        for start in range(0, len(big), 16_384):
            yield big[start : start + 16_384]

    streamed = httpx.post(f"{url}/v1/recommendations", content=chunks(), headers=headers, timeout=30)
    assert streamed.status_code == 413


def test_made_up_candidates_are_dropped_counted_and_never_returned(stack):
    settings, url = stack
    user = sample_users(settings, 1)[0]
    real = _catalogue(settings)[:5]
    made_up = [f"MADE-UP-{i}" for i in range(995)]
    # July: outside the campaign an earlier test may have left pinning an item in December.
    reply = _recommend(url, user_id=user, k=10, region="GB", at=JULY, candidates=made_up + real)
    # The rules may still hide some (diversity, recent purchases); the made-up ids never come back.
    assert reply["items"] and {i["item_id"] for i in reply["items"]} <= set(real) and not reply["degraded"]
    none = _recommend(url, user_id=user, k=3, region="GB", at=JULY, candidates=made_up[:10])
    assert none["items"] == [] and none["degraded"] is False
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    counted = [line for line in metrics.splitlines() if line.startswith("seasonrec_unknown_candidates_dropped_total")]
    assert counted and float(counted[0].split()[-1]) >= 1_005


def test_a_body_that_is_not_utf8_is_a_422(stack):
    _, url = stack
    reply = httpx.post(
        f"{url}/v1/recommendations",
        content=b'{"user_id": "\xff\xfe", "k": 3}',
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["body"]


def test_health_readiness_metrics_and_openapi(stack):
    _, url = stack
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/readyz").json() == {"status": "ready"}
    assert "seasonrec_stage_seconds_bucket" in httpx.get(f"{url}/metrics").text
    assert "/v1/recommendations" in httpx.get(f"{url}/openapi.json").json()["paths"]
    assert httpx.get(f"{url}/docs").status_code == 200


def test_schemathesis_finds_no_server_error(stack):
    import sys
    from pathlib import Path

    _, url = stack
    cli = Path(sys.executable).parent / "schemathesis"
    run = subprocess.run(
        [
            str(cli),
            "run",
            f"{url}/openapi.json",
            "-c",
            "not_a_server_error",
            "-n",
            "25",
            "--phases",
            "coverage,fuzzing",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:]


def test_a_model_swap_under_load_fails_no_request_and_the_new_version_answers(stack):
    """Next to last: it leaves version 2 live. Four clients ask without pause while Triton swaps 1 for 2."""
    settings, url = stack
    users = sample_users(settings, 4)
    model = settings.triton.repository / settings.triton.model
    shutil.copytree(model / "1", model / "2")  # the same weights: what is tested is the swap, not the model
    answers, failures, done = [], [], threading.Event()

    def ask(user):
        with httpx.Client(timeout=30) as http:
            while not done.is_set():
                reply = http.post(f"{url}/v1/recommendations", json={"user_id": user, "k": 5, "at": DECEMBER})
                body = reply.json() if reply.status_code == 200 else {}
                if reply.status_code != 200 or body["degraded"]:
                    failures.append((reply.status_code, reply.text[:200]))
                else:
                    answers.append(body["model_version"])

    clients = [threading.Thread(target=ask, args=(u,)) for u in users]
    [c.start() for c in clients]
    try:
        time.sleep(1)
        TritonServer(settings).swap(2)
        # The Scorer re-reads the live version every couple of seconds (scorer.VERSION_CHECK_S).
        deadline = time.monotonic() + 30
        while (not answers or answers[-1] != "2") and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1)
    finally:
        done.set()
        [c.join() for c in clients]
    assert failures == [], failures[:3]
    # The old version answered first; a second after the new one first answered, only it does.
    assert answers[0] == "1" and answers[-10:] == ["2"] * 10, answers[-10:]


def test_killing_triton_gives_degraded_answers_not_errors(stack):
    """Last of the module: it takes Triton away."""
    settings, url = stack
    user = sample_users(settings, 1)[0]
    pid = TritonServer(settings).state()["pid"]
    os.killpg(pid, signal.SIGKILL)
    time.sleep(1)
    reply = _recommend(url, user_id=user, k=5, region="GB", at=DECEMBER)
    assert reply["degraded"] is True and reply["items"]
    assert all("fallback:seasonal_popularity" in i["reasons"] for i in reply["items"])
    # Not ready, and the body says only that: which server is down, and where, goes to the log.
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert (ready.status_code, ready.json()) == (503, {"status": "not ready"})


# --- event writes straight through the FeatureReader, on both stores ----------------------------------
# One process of the concurrent test: two threads, each sending its share of the events once told to go.
WRITER = """
import json, sys, threading
from datetime import datetime
from seasonrec.config import Settings
from seasonrec.serving.fetcher import FeatureReader
from seasonrec.serving.writes import StoreUnavailable
settings, user, events = Settings.model_validate_json(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
reader, accepted, refused = FeatureReader(settings), [], []
def send(share):
    for n, item, at in share:
        try:
            reader.push_event(user, item, "view", datetime.fromisoformat(at))
            accepted.append(n)
        except StoreUnavailable:
            refused.append(n)
threads = [threading.Thread(target=send, args=(events[i::2],)) for i in range(2)]
print("ready", flush=True)
sys.stdin.readline()
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"accepted": accepted, "refused": refused}))
"""


def _long_history(settings, **serving):
    """Room in the history for every event of a test; the serving settings as given."""
    return settings.model_copy(
        update={
            "features": settings.features.model_copy(update={"history_length": 64}),
            "serving": settings.serving.model_copy(update=serving),
        }
    )


def test_concurrent_events_of_one_user_are_all_kept_or_refused(feast_settings):
    """2 processes x 2 threads x 15 events for one user: each is in the history, or was refused (a 503)."""
    settings = _long_history(feast_settings)
    user, items = f"busy-{uuid.uuid4().hex[:8]}", _catalogue(settings)
    base = datetime.now(UTC) - timedelta(hours=1)
    events = [(n, items[n % len(items)], (base + timedelta(seconds=n)).isoformat()) for n in range(60)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, settings.model_dump_json(), user, json.dumps(events[i::2])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:  # both have imported Feast and opened the store: start them together
        while proc.stdout.readline().strip() != "ready":
            assert proc.poll() is None, "a writer process failed to start"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [json.loads(proc.communicate(timeout=180)[0].strip().splitlines()[-1]) for proc in procs]
    accepted = sorted(n for r in results for n in r["accepted"])
    assert accepted and len(accepted) + sum(len(r["refused"]) for r in results) == 60
    history = FeatureReader(settings).user(user)
    assert sorted(history[s.HISTORY_TS]) == [int((base + timedelta(seconds=n)).timestamp()) for n in accepted]


def test_an_event_dated_ahead_does_not_hide_the_next_one(feast_settings):
    """The store keeps the newest row: the row's time is the server's, the event's own time is in the history."""
    reader = FeatureReader(_long_history(feast_settings))
    user, (first, second) = sample_users(feast_settings, 1)[0], _catalogue(feast_settings)[:2]
    now = datetime.now(UTC).replace(microsecond=0)
    reader.push_event(user, first, "view", now + timedelta(seconds=200))
    reader.push_event(user, second, "cart", now)
    history = reader.user(user)
    assert history[s.HISTORY_ITEM_IDS][-2:] == [first, second]
    assert history[s.HISTORY_TS][-2:] == [int(now.timestamp()) + 200, int(now.timestamp())]


def test_an_event_after_the_servers_clock_stepped_back_is_still_kept(feast_settings, monkeypatch):
    """Two replicas' clocks differ, or one steps back: the Redis store would skip the older row silently."""
    reader = FeatureReader(_long_history(feast_settings))
    user, (first, second) = sample_users(feast_settings, 1)[0], _catalogue(feast_settings)[:2]
    now = datetime.now(UTC).replace(microsecond=0)
    reader.push_event(user, first, "view", now)
    monkeypatch.setattr(fetcher, "utc_now", lambda: datetime.now(UTC) - timedelta(hours=1))
    reader.push_event(user, second, "cart", now + timedelta(seconds=1))
    assert reader.user(user)[s.HISTORY_ITEM_IDS][-2:] == [first, second]


def test_a_write_that_outlived_its_redis_lock_is_refused_not_written(feast_settings, monkeypatch):
    """A Redis lock frees itself after LOCK_HOLD_S; a writer that stalled past it may no longer write."""
    if feast_settings.feast.profile != "redis":
        pytest.skip("only a Redis lock expires; a file lock is held until released")
    reader = FeatureReader(feast_settings)
    user, item = sample_users(feast_settings, 1)[0], _catalogue(feast_settings)[0]
    before = reader.user(user)[s.HISTORY_TS]
    monkeypatch.setattr(writes, "LOCK_HOLD_S", 0.2)
    read = reader._read_stamped

    def stalled(*args):
        time.sleep(0.5)
        return read(*args)

    monkeypatch.setattr(reader, "_read_stamped", stalled)
    with pytest.raises(StoreUnavailable, match="lost it"):
        reader.push_event(user, item, "view", datetime.now(UTC))
    assert reader.user(user)[s.HISTORY_TS] == before


def test_an_event_waiting_too_long_for_the_users_lock_is_refused(feast_settings, monkeypatch):
    reader = FeatureReader(feast_settings)
    user, item = sample_users(feast_settings, 1)[0], _catalogue(feast_settings)[0]
    monkeypatch.setattr(writes, "LOCK_WAIT_S", 0.3)
    outcome = []

    def push():
        try:
            reader.push_event(user, item, "view", datetime.now(UTC))
            outcome.append("accepted")
        except StoreUnavailable:
            outcome.append("refused")

    with reader.locks.hold(user):
        waiter = threading.Thread(target=push)
        waiter.start()
        waiter.join(timeout=10)
    assert outcome == ["refused"]
    push()  # the lock is free again
    assert outcome == ["refused", "accepted"]


def test_events_name_known_items_and_new_users_are_rate_limited(feast_settings):
    reader = FeatureReader(_long_history(feast_settings, new_user_events_per_minute=2))
    known_user, item = sample_users(feast_settings, 1)[0], _catalogue(feast_settings)[0]
    with pytest.raises(UnknownItem):
        reader.push_event(known_user, "NO-SUCH-ITEM", "view", datetime.now(UTC))
    newcomers = [f"newcomer-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for user in newcomers[:2]:
        reader.push_event(user, item, "view", datetime.now(UTC))
        reader.push_event(user, item, "cart", datetime.now(UTC))  # now known: not counted again
    with pytest.raises(NewUserLimit):
        reader.push_event(newcomers[2], item, "view", datetime.now(UTC))
    reader.push_event(known_user, item, "view", datetime.now(UTC))
    assert reader.user(newcomers[2]) == {} and reader.user(newcomers[0])[s.HISTORY_EVENT_TYPES] == ["view", "cart"]
