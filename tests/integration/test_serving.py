"""The whole serving stack through real HTTP: Feast, the embedded Triton, Ray Serve. No mocks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid

import httpx
import pytest
import yaml

from seasonrec.export.export import export_model
from seasonrec.features import store as feast_store
from seasonrec.features.store import sample_users
from seasonrec.model.train import TrainOptions, train
from seasonrec.processes import free_port
from seasonrec.serving.stack import ServeStack
from seasonrec.triton.server import TritonServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JULY, DECEMBER = "2024-07-10T12:00:00+00:00", "2024-12-10T12:00:00+00:00"


def _stack_settings(training_set, root, profile="embedded", redis="127.0.0.1:6379"):
    settings, path = training_set
    shutil.copytree(settings.paths.root, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("feast"))
    rules = root / "rules.yaml"
    shutil.copy(settings.paths.resolve(settings.serving.rules_path), rules)
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    settings = settings.model_copy(
        update={
            "paths": settings.paths.model_copy(update={"data_dir": root}),
            "feast": settings.feast.model_copy(
                update={"profile": profile, "redis_connection": redis, "project": f"serve_{uuid.uuid4().hex[:8]}"}
            ),
            "triton": settings.triton.model_copy(
                update={"repository": root / "repository", "timeout_ms": 2_000, **ports}
            ),
            "serving": settings.serving.model_copy(update={"port": free_port(), "rules_path": rules}),
        }
    )
    feast_store.apply(settings)
    feast_store.materialize(settings)
    train(settings, root / path.name, root / "ckpt", TrainOptions(epochs=1, batch_size=128))
    export_model(settings, root / "ckpt", training_set=root / path.name)
    return settings


@pytest.fixture(scope="module")
def stack(training_set, tmp_path_factory):
    settings = _stack_settings(training_set, tmp_path_factory.mktemp("serve"))
    server = ServeStack(settings)
    server.start()
    yield settings, server.url
    server.stop()


def _recommend(url, **body):
    reply = httpx.post(f"{url}/v1/recommendations", json=body, timeout=30)
    assert reply.status_code == 200, reply.text[:300]
    return reply.json()


def test_the_same_user_gets_different_items_in_july_and_december(stack):
    settings, url = stack
    user = sample_users(settings, 1)[0]
    july = _recommend(url, user_id=user, k=5, region="GB", at=JULY)
    december = _recommend(url, user_id=user, k=5, region="GB", at=DECEMBER)
    assert not july["degraded"] and not december["degraded"] and july["model_version"] == "1"
    assert [i["item_id"] for i in july["items"]] != [i["item_id"] for i in december["items"]]
    assert len(july["items"]) == 5 and all(isinstance(i["reasons"], list) for i in july["items"])


def test_a_purchase_event_removes_the_item_at_once(stack):
    settings, url = stack
    user = sample_users(settings, 2)[1]
    top = _recommend(url, user_id=user, k=5, region="GB", at=DECEMBER)["items"][0]["item_id"]
    event = {"user_id": user, "item_id": top, "event_type": "purchase", "at": "2024-12-10T11:00:00+00:00"}
    assert httpx.post(f"{url}/v1/events", json=event, timeout=30).status_code == 200
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
    assert "end 2024-12-01 is before start" in httpx.get(f"{url}/readyz", timeout=10).json()["rules"]["error"]
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
        ({"user_id": "x" * 1_000_000}, "user_id"),
    ],
    ids=["k-type", "user-type", "k-zero", "k-101", "10k-candidates", "unknown-region", "1MB-user-id"],
)
def test_malformed_bodies_are_422s_that_name_the_field_and_echo_nothing(stack, body, field):
    _, url = stack
    reply = httpx.post(f"{url}/v1/recommendations", json=body, timeout=30)
    assert reply.status_code == 422
    assert field in [loc for d in reply.json()["detail"] for loc in d["loc"]]
    assert len(reply.content) < 2_000  # the offending value is not sent back


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
    assert httpx.get(f"{url}/readyz").json()["triton"] is True
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


@pytest.fixture(scope="module")
def redis_stack(training_set, tmp_path_factory):
    """The Redis profile against a redis-server of this test's own, on a free port."""
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    settings = _stack_settings(training_set, tmp_path_factory.mktemp("serve-redis"), "redis", f"127.0.0.1:{port}")
    server = ServeStack(settings)
    server.start()
    yield settings, server.url, redis
    server.stop()
    if redis.poll() is None:
        redis.terminate()
        redis.wait(timeout=10)


def test_redis_profile_answers_and_degrades_when_its_redis_stops(redis_stack):
    settings, url, redis = redis_stack
    user = sample_users(settings, 1)[0]
    assert _recommend(url, user_id=user, k=5, region="GB", at=DECEMBER)["degraded"] is False
    redis.terminate()  # this test's own redis-server, never the machine's on 6379
    redis.wait(timeout=10)
    reply = _recommend(url, user_id=user, k=5, region="GB", at=DECEMBER)
    assert reply["degraded"] is True and reply["items"]
