"""Erasure against real stores: after `seasonrec privacy forget`, no file under the data folder and no key
or value in Redis holds the user's id or pseudonym, the offline tables lost exactly that user's rows, and
the API's DELETE leaves the user on the cold-start path of the running stack."""

from __future__ import annotations

import json
import shutil
import stat
import uuid
from pathlib import Path

import httpx
import polars as pl
import pytest
import redis
import yaml
from pydantic import SecretStr

from seasonrec import cli
from seasonrec import schema as s
from seasonrec.config import Settings
from seasonrec.data.ingest import ingest
from seasonrec.features import store as feast_store
from seasonrec.features.build_features import build_features
from seasonrec.privacy.erasure import AUDIT_FILE, PRIVACY_DIR
from seasonrec.privacy.pseudonyms import Pseudonyms
from seasonrec.processes import free_port, start_redis

pytestmark = [pytest.mark.integration]

TEST_KEY = "test-key-not-a-secret"


@pytest.fixture(scope="module")
def own_redis():
    """A redis-server of our own on a free port: every key in it is this module's, so all can be searched."""
    port = free_port()
    proc = start_redis(port)
    yield f"127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def _shop(tiny_shop: Settings, root: Path, profile: str, redis_at: str, pseudonymize: bool) -> Settings:
    """A copy of the tiny shop, its own Feast project applied and materialized (ingested with pseudonyms
    when `pseudonymize`), plus an evaluation output with a user column, as `seasonrec evaluate` leaves."""
    shutil.copytree(tiny_shop.paths.raw, root / "raw")
    privacy = tiny_shop.privacy.model_copy(update={"pseudonymize": pseudonymize, "key": SecretStr(TEST_KEY)})
    settings = tiny_shop.model_copy(
        update={
            "paths": tiny_shop.paths.model_copy(update={"data_dir": root}),
            "feast": tiny_shop.feast.model_copy(
                update={"profile": profile, "redis_connection": redis_at, "project": f"erase_{uuid.uuid4().hex[:8]}"}
            ),
            "privacy": privacy,
        }
    )
    ingest("canonical", settings.paths.raw, settings.paths.canonical, settings.ingest, settings.privacy)
    build_features(settings.paths.canonical, settings.paths.features, settings.features)
    events = pl.read_parquet(settings.paths.canonical / "events.parquet")
    (root / "evaluation").mkdir()
    events.select(s.USER_ID, s.ITEM_ID, s.EVENT_TS).write_parquet(root / "evaluation" / "served.parquet")
    feast_store.apply(settings)
    feast_store.materialize(settings)
    return settings


def _config_file(settings: Settings, path: Path) -> Path:
    """The settings as a YAML for the CLI; the HMAC key travels in the environment, as in production."""
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude={"privacy": {"key"}})))
    return path


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and _holds(p.read_bytes(), needles))


def _holds(data: bytes, needles: list[bytes]) -> bool:
    return any(n in data for n in needles)


def _redis_holding(at: str, project: str, needles: list[bytes]) -> tuple[int, list[bytes]]:
    """(keys of the project, keys whose name, field or value holds a needle): every key of our own Redis."""
    host, port = at.split(":")
    client = redis.Redis(host=host, port=int(port))
    hits, ours = [], 0
    for key in client.scan_iter(count=1000):
        ours += key.endswith(project.encode())
        fields = client.hgetall(key) if client.type(key) == b"hash" else {}
        if _holds(key, needles) or any(_holds(f, needles) or _holds(v, needles) for f, v in fields.items()):
            hits.append(key)
    return ours, hits


def _user_tables(root: Path) -> dict[str, pl.DataFrame]:
    return {
        str(p.relative_to(root)): pl.read_parquet(p)
        for p in sorted(root.rglob("*.parquet"))
        if s.USER_ID in pl.read_parquet_schema(p)
    }


@pytest.mark.parametrize(
    ("profile", "pseudonymize"),
    [("embedded", False), ("redis", False), ("embedded", True)],
    ids=["sqlite", "redis", "sqlite-pseudonymized"],
)
def test_forget_leaves_no_trace_of_the_user_anywhere(
    tiny_shop, own_redis, tmp_path, monkeypatch, capsys, profile, pseudonymize
):
    settings = _shop(tiny_shop, tmp_path / "data", profile, own_redis, pseudonymize)
    monkeypatch.setenv("SEASONREC__PRIVACY__KEY", TEST_KEY)
    config = _config_file(settings, tmp_path / "settings.yaml")
    raw = feast_store.sample_users(tiny_shop, 9)[8]  # a raw id: tiny_shop itself is never pseudonymized
    stored = Pseudonyms(settings.privacy).of(raw)
    assert (stored != raw) == pseudonymize
    needles = [raw.encode(), Pseudonyms(settings.privacy.model_copy(update={"pseudonymize": True})).of(raw).encode()]
    root = settings.paths.root
    # The CLI's last result of `features online --user` names the user: a file the erasure must delete.
    assert cli.main(["--config", str(config), "features", "online", "--user", raw]) == 0  # the shop's id, mapped
    assert (root / "runs" / "features-online.json").is_file()

    before = _user_tables(root)
    assert feast_store.online_features(settings, stored)["user"]["n_purchases"] > 0
    if pseudonymize:  # the stores hold the pseudonym, not the raw id (raw/ is the shop's own input)
        assert not (before["canonical/events.parquet"][s.USER_ID] == raw).any()
        assert (before["canonical/events.parquet"][s.USER_ID] == stored).any()
    if profile == "embedded":  # the search below would find the id in the database, were it there
        assert _holds((root / "feast" / "online.db").read_bytes(), [stored.encode()])
    else:
        keys_before, hits = _redis_holding(own_redis, settings.feast.project, needles)
        assert hits
    capsys.readouterr()

    assert cli.main(["--json", "--config", str(config), "privacy", "forget", "--user", raw]) == 0
    result = json.loads(capsys.readouterr().out)

    assert _files_holding(root, needles) == []
    after = _user_tables(root)
    assert after.keys() == before.keys()
    for name, table in before.items():
        mine = table.filter(table[s.USER_ID].is_in([raw, stored]))
        others = table.filter(~table[s.USER_ID].is_in([raw, stored]))
        assert after[name].height == table.height - mine.height, name
        assert after[name].equals(others), name  # other users' rows untouched, in order
        assert mine.height > 0 or "rejected" in name, name
        assert result["where"]["offline_rows"].get(name, 0) == mine.height, name
    assert result["removed"]["offline_rows"] == sum(t.height for t in before.values()) - sum(
        t.height for t in after.values()
    )
    assert result["removed"]["files"] == 1 and result["where"]["files"] == ["runs/features-online.json"]
    assert result["where"]["online_keys"][s.USER_ITEM_STATS if profile == "embedded" else "item_id+user_id"] > 0
    online = feast_store.online_features(settings, stored)["user"]
    assert all(v is None for k, v in online.items() if k != s.USER_ID)
    if profile == "redis":
        keys_after, hits = _redis_holding(own_redis, settings.feast.project, needles)
        assert hits == []
        assert keys_after == keys_before - result["removed"]["online_keys"]

    audit = root / PRIVACY_DIR / AUDIT_FILE
    record = json.loads(audit.read_text().splitlines()[-1])
    assert record["who"].startswith("cli:") and record["removed"] == result["removed"]
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600 and stat.S_IMODE(audit.parent.stat().st_mode) == 0o700

    # Again, and for an id nobody has: a no-op that says 0.
    for again in (raw, "NOBODY-" + uuid.uuid4().hex):
        assert cli.main(["--json", "--config", str(config), "privacy", "forget", "--user", again]) == 0
        assert json.loads(capsys.readouterr().out)["removed"]["total"] == 0
    assert len(audit.read_text().splitlines()) == 3


def test_forget_without_a_user_is_one_line_naming_the_field(tiny_shop, tmp_path, capsys):
    config = _config_file(tiny_shop, tmp_path / "settings.yaml")
    assert cli.main(["--config", str(config), "privacy", "forget", "--user", " "]) == 2
    assert capsys.readouterr().err.strip() == "error: --user: empty"


# --- the API, on the session's running stack ---------------------------------------------------------


def test_delete_user_erases_them_and_the_next_answer_is_cold_start(stack, writer):
    settings, url = stack
    # Not one of the users test_serving.py (the first 3) and test_web.py (the 6th) ask for.
    user = feast_store.sample_users(settings, 9)[8]
    history = httpx.get(f"{url}/v1/users/{user}/history", timeout=30)
    assert history.status_code == 200 and history.json()["events"]

    refused = httpx.delete(f"{url}/v1/users/{user}", timeout=30)
    assert refused.status_code == 401
    assert httpx.get(f"{url}/v1/users/{user}/history", timeout=30).json()["events"]  # nothing was erased

    reply = httpx.delete(f"{url}/v1/users/{user}", headers=writer, timeout=60)
    assert reply.status_code == 200, reply.text[:300]
    body = reply.json()
    assert body["removed"]["online_keys"] > 0 and body["removed"]["offline_rows"] > 0 and body["request_id"]
    record = json.loads((settings.paths.root / PRIVACY_DIR / AUDIT_FILE).read_text().splitlines()[-1])
    assert record["who"] == "api" and record["request_id"] == body["request_id"]
    assert user not in json.dumps(record)

    history = httpx.get(f"{url}/v1/users/{user}/history", timeout=30).json()
    assert history == {"user_id": user, "events": []}
    answer = httpx.post(f"{url}/v1/recommendations", json={"user_id": user, "k": 5, "region": "GB"}, timeout=30)
    assert answer.status_code == 200 and not answer.json()["degraded"] and answer.json()["items"]
    assert user not in feast_store.sample_users(settings, 50)

    again = httpx.delete(f"{url}/v1/users/{user}", headers=writer, timeout=60)
    assert again.status_code == 200 and again.json()["removed"]["total"] == 0


def test_a_user_id_holding_a_slash_has_a_history_and_can_be_erased(stack, writer):
    """A shop's ids may hold "/": sent as %2F, which the server decodes before it routes."""
    settings, url = stack
    user, quoted = "shop/4711", "shop%2F4711"
    item = pl.read_parquet(settings.paths.features / f"{s.ITEM_PROFILE}.parquet")[s.ITEM_ID][0]
    event = {"user_id": user, "item_id": item, "event_type": "view"}
    assert httpx.post(f"{url}/v1/events", json=event, headers=writer, timeout=30).status_code == 200
    history = httpx.get(f"{url}/v1/users/{quoted}/history", timeout=30)
    assert history.status_code == 200 and history.json()["user_id"] == user
    assert [e[s.ITEM_ID] for e in history.json()["events"]] == [item]
    reply = httpx.delete(f"{url}/v1/users/{quoted}", headers=writer, timeout=60)
    assert reply.status_code == 200 and reply.json()["removed"]["online_keys"] > 0, reply.text[:300]
    assert httpx.get(f"{url}/v1/users/{quoted}/history", timeout=30).json()["events"] == []


def test_delete_user_with_a_blank_id_is_a_422_naming_it(stack, writer):
    _, url = stack
    reply = httpx.delete(f"{url}/v1/users/%20", headers=writer, timeout=30)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["path", "user_id"]


def test_a_pseudonymized_stack_takes_raw_ids_and_no_raw_id_reaches_its_files_or_logs(
    tiny_shop, ranker_repository, tmp_path, monkeypatch
):
    """Serving with pseudonyms end to end: the shop keeps sending its own ids, the stack never writes one."""
    from seasonrec.serving.stack import ServeStack
    from seasonrec.triton.server import free_ports

    settings = _shop(tiny_shop, tmp_path / "data", "embedded", "", pseudonymize=True)
    shutil.copytree(ranker_repository, tmp_path / "repository")
    settings = settings.model_copy(
        update={
            "triton": settings.triton.model_copy(update={"repository": tmp_path / "repository", **free_ports()}),
            "serving": settings.serving.model_copy(update={"port": free_port()}),
        }
    )
    raw = feast_store.sample_users(tiny_shop, 3)[2]
    stack = ServeStack(settings)
    state = stack.start()
    try:
        url = state["url"]
        history = httpx.get(f"{url}/v1/users/{raw}/history", timeout=30).json()
        assert history["user_id"] == raw and history["events"]  # the raw id found the pseudonymized rows
        body = {"user_id": raw, "k": 10, "region": "GB", "at": "2024-12-10T12:00:00+00:00"}
        answer = httpx.post(f"{url}/v1/recommendations", json=body, timeout=30).json()
        assert not answer["degraded"] and any("source:repeat" in i["reasons"] for i in answer["items"])
        # Sent as a raw id, a pseudonym is hashed again: nobody has that id, so no history.
        stored = Pseudonyms(settings.privacy).of(raw)
        assert httpx.get(f"{url}/v1/users/{stored}/history", timeout=30).json()["events"] == []
        assert httpx.get(f"{url}/v1/users/{raw}/history", timeout=30).status_code == 200
        assert TEST_KEY.encode() not in (Path(state["settings"])).read_bytes()
        logs = [p for p in Path(state["temp_dir"]).rglob("*") if p.is_file() and p.suffix in (".log", ".out", ".err")]
        assert logs and not [str(p) for p in logs if raw.encode() in p.read_bytes()]
    finally:
        stack.stop()
    root = settings.paths.root
    # Parquet is compressed, so its cells are read, not its bytes; raw/ is the shop's own input, kept as given.
    for path in root.rglob("*.parquet"):
        if path.relative_to(root).parts[0] != "raw":
            frame = pl.read_parquet(path)
            assert not [c for c in frame.columns if frame[c].dtype == pl.String and (frame[c] == raw).any()], path
    assert [f for f in _files_holding(root, [raw.encode()]) if not f.endswith(".parquet")] == []
