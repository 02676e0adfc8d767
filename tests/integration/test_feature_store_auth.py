"""Feast's Redis profile against a password-protected redis-server of this test's own (never the machine's)."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from pydantic import SecretStr
from redis.exceptions import AuthenticationError

from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.features import store as feast_store
from seasonrec.processes import free_port, start_redis

pytestmark = pytest.mark.integration

# '=' and quotes: Feast splits its options on '=' and reads values as JSON where it can.
PASSWORD = 'p@ss="word"=null'


@pytest.fixture(scope="module")
def protected_redis():
    """A redis-server on a free port that answers nothing without the password: its connection string."""
    port = free_port()
    server = start_redis(port, "--requirepass", PASSWORD)
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait()


def _settings(tiny_shop: Settings, root, connection: str, password: str | None) -> Settings:
    return tiny_shop.model_copy(
        update={
            "paths": tiny_shop.paths.model_copy(update={"data_dir": root}),
            "feast": tiny_shop.feast.model_copy(
                update={
                    "profile": "redis",
                    "redis_connection": connection,
                    "redis_password": SecretStr(password) if password is not None else None,
                    "project": f"auth_{uuid.uuid4().hex[:8]}",
                }
            ),
        }
    )


@pytest.fixture(scope="module")
def applied(tiny_shop, tmp_path_factory, protected_redis) -> Settings:
    root = tmp_path_factory.mktemp("feast-auth")
    shutil.copytree(tiny_shop.paths.root, root, dirs_exist_ok=True)
    shutil.rmtree(root / "feast", ignore_errors=True)
    settings = _settings(tiny_shop, root, protected_redis, PASSWORD)
    feast_store.apply(settings)
    feast_store.materialize(settings)
    return settings


def test_a_store_opened_with_the_password_writes_and_reads(applied):
    user = feast_store.sample_users(applied, 1)[0]
    assert feast_store.online_features(applied, user)["user"]["n_purchases"] > 0


def test_the_password_stays_out_of_the_connection_setting_and_the_environment(applied):
    feast_store.open_store(applied)
    assert PASSWORD not in applied.feast.redis_connection
    # Every child process inherits the environment: Ray's workers, Triton, a shell.
    assert not [key for key, value in os.environ.items() if PASSWORD in value]


def test_without_the_password_redis_refuses_with_a_clear_error(applied):
    user = feast_store.sample_users(applied, 1)[0]
    anonymous = applied.model_copy(update={"feast": applied.feast.model_copy(update={"redis_password": None})})
    with pytest.raises(AuthenticationError, match="Authentication required"):
        feast_store.online_features(anonymous, user)


def test_a_wrong_password_is_refused(applied):
    user = feast_store.sample_users(applied, 1)[0]
    wrong = applied.model_copy(update={"feast": applied.feast.model_copy(update={"redis_password": SecretStr("no")})})
    with pytest.raises(AuthenticationError):
        feast_store.online_features(wrong, user)


def test_a_password_feast_cannot_carry_is_a_one_line_error(applied):
    comma = applied.model_copy(update={"feast": applied.feast.model_copy(update={"redis_password": SecretStr("a,b")})})
    with pytest.raises(SeasonrecError, match=r"^feast.redis_password: must not contain ','"):
        feast_store.open_store(comma)
