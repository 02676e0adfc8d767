"""The embedded stack's state folder: what `start` writes there, and what `stop` may signal or delete."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from seasonrec.config import load_settings
from seasonrec.errors import SeasonrecError
from seasonrec.processes import record
from seasonrec.serving.stack import HAPROXY_SOCKET_MAX, HAPROXY_SOCKET_TAIL, TEMP_MARKER, ServeStack

WRITE_TOKEN, REDIS_PASSWORD = "write-token-from-a-secret", "redis-password-from-a-secret"
PSEUDONYM_KEY = "pseudonym-key-from-a-secret"


@pytest.fixture
def stack(settings_for, tmp_path) -> ServeStack:
    return ServeStack(settings_for(tmp_path))


def _with_secrets(stack: ServeStack) -> ServeStack:
    settings = stack.settings.model_copy(
        update={
            "auth": stack.settings.auth.model_copy(update={"write_token": SecretStr(WRITE_TOKEN)}),
            "feast": stack.settings.feast.model_copy(update={"redis_password": SecretStr(REDIS_PASSWORD)}),
            "privacy": stack.settings.privacy.model_copy(
                update={"pseudonymize": True, "key": SecretStr(PSEUDONYM_KEY)}
            ),
        }
    )
    return ServeStack(settings)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _files(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.is_file()]


def _write_state(stack: ServeStack, state: dict) -> None:
    stack.state_dir.mkdir(parents=True, exist_ok=True)
    stack.state_file.write_text(json.dumps(state))


def test_a_stale_state_file_stops_nothing_and_deletes_nothing_it_did_not_create(stack, stranger, tmp_path, caplog):
    """The recorded pid now belongs to an unrelated process, and the temp folder to someone else."""
    precious = tmp_path / "someone-elses-folder"
    precious.mkdir()
    (precious / "data").write_text("keep me")
    earlier = {**record(stranger.pid), "start_time": record(stranger.pid)["start_time"] - 1}
    _write_state(stack, {"ray_pid": stranger.pid, "ray_head": earlier, "temp_dir": str(precious)})

    with caplog.at_level(logging.WARNING):
        assert stack.stop() is False

    assert stranger.poll() is None, "stop signalled a process the stack did not start"
    assert (precious / "data").read_text() == "keep me"
    assert not stack.state_file.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(stack.state_file) in w and "nothing signalled" in w for w in warnings)
    assert all("\n" not in w for w in warnings)


def test_a_state_file_from_before_the_start_time_was_recorded_stops_nothing(stack, stranger):
    _write_state(stack, {"ray_pid": stranger.pid, "url": stack.url})
    assert stack.stop() is False
    assert stranger.poll() is None


def test_a_corrupt_state_file_is_cleared_away_not_a_traceback(stack):
    _write_state(stack, {})
    stack.state_file.write_text("{not json")
    assert stack.status() == {"running": False}
    assert stack.stop() is False
    assert stack.state() is None


def test_the_recorded_head_is_stopped_and_its_temp_folder_deleted(stack, stranger):
    _, files = stack._prepare()
    temp = Path(files["temp_dir"])
    _write_state(stack, {"ray_pid": stranger.pid, "ray_head": record(stranger.pid), **files})
    assert stack.running()

    assert stack.stop() is True

    assert stranger.wait(timeout=10) is not None
    assert not temp.exists()
    assert not stack.state_file.exists()


def test_temp_folders_keep_haproxy_sockets_short_and_are_deleted_only_as_created(settings_for, tmp_path):
    # A state folder as deep as pytest's: HAProxy's sockets must still fit (they did not inside it).
    stack = ServeStack(settings_for(tmp_path / ("deep" * 8)))
    _, files = stack._prepare()
    temp = Path(files["temp_dir"])
    assert temp.is_dir() and (temp / TEMP_MARKER).is_file()
    assert len(str(temp)) + HAPROXY_SOCKET_TAIL <= HAPROXY_SOCKET_MAX
    _write_state(stack, {"ray_pid": 0, **files})
    stack.stop()
    assert not temp.exists()


def test_secrets_reach_the_head_by_its_environment_never_by_a_file(stack):
    """settings.yaml is what the Serve replicas load: with the head's environment they get the real secrets."""
    stack = _with_secrets(stack)
    env, files = stack._prepare()
    temp = Path(files["temp_dir"])
    try:
        settings_file = Path(files["settings"])
        for path in _files(stack.state_dir, temp):
            text = path.read_text(errors="replace")
            assert WRITE_TOKEN not in text and REDIS_PASSWORD not in text and PSEUDONYM_KEY not in text, path
            assert "**********" not in text, path
        loaded = load_settings(settings_file, environ=env)
        assert loaded.auth.write_token.get_secret_value() == WRITE_TOKEN
        assert loaded.feast.redis_password.get_secret_value() == REDIS_PASSWORD
        # The replicas hash callers' ids with the real key, not with pydantic's "**********".
        assert loaded.privacy.pseudonymize and loaded.privacy.key.get_secret_value() == PSEUDONYM_KEY
        secret = {"auth", "feast", "privacy"}
        assert loaded.model_dump(exclude=secret) == stack.settings.model_dump(exclude=secret)
        assert stack.write_token() == WRITE_TOKEN
        assert "write_token_file" not in files
    finally:
        shutil.rmtree(temp)


def test_state_files_are_private_from_their_first_byte(stack):
    """Even over leftovers of an earlier version, and whatever the umask."""
    stack.state_dir.mkdir(parents=True)
    stack.state_dir.chmod(0o755)
    for name in ("settings.yaml", "driver_env.json", "write_token"):
        (stack.state_dir / name).write_text("left over")
        (stack.state_dir / name).chmod(0o644)
    before = os.umask(0)
    try:
        env, files = stack._prepare()
    finally:
        os.umask(before)
    temp = Path(files["temp_dir"])
    try:
        assert _mode(stack.state_dir) == 0o700
        for name in ("settings.yaml", "driver_env.json", "write_token"):
            assert _mode(stack.state_dir / name) == 0o600, name
        # A secret is only ever in a file no one else can read.
        secrets = [env["RAY_AUTH_TOKEN"], stack.write_token()]
        for path in _files(stack.state_dir, temp):
            if any(secret in path.read_text(errors="replace") for secret in secrets):
                assert _mode(path) == 0o600, path
    finally:
        shutil.rmtree(temp)


def test_the_stack_makes_a_write_token_when_none_is_configured(stack):
    with pytest.raises(SeasonrecError, match="serve start"):
        stack.write_token()
    env, files = stack._prepare()
    token = stack.write_token()
    assert len(token) >= 32
    assert Path(files["write_token_file"]) == stack.write_token_file
    assert token not in json.dumps(files)
    # The replicas read it from their environment.
    assert load_settings(files["settings"], environ=env).auth.write_token.get_secret_value() == token
    _write_state(stack, {"ray_pid": 0, **files})
    stack.stop()
    assert not stack.write_token_file.exists()
    with pytest.raises(SeasonrecError, match="no write token"):
        stack.write_token()
