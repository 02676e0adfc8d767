"""Real Feast stores over the tiny shop (SQLite on disk, and the machine's Redis), and one serving stack
that the API and browser tests share: each start costs about a minute."""

from __future__ import annotations

import contextlib
import shutil
import socket
import uuid

import pytest

from seasonrec.config import Settings
from seasonrec.features import store as feast_store
from seasonrec.features.training_set import build_training_set
from seasonrec.processes import free_port
from seasonrec.serving.stack import ServeStack
from seasonrec.triton.server import free_ports

# Few enough that a test reaches the limit; no other test of the stack sends events for new users.
NEW_USERS_PER_MINUTE = 3


def redis_up(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _applied(tiny_shop: Settings, tmp_path_factory, profile: str) -> Settings:
    root = tmp_path_factory.mktemp(f"feast-{profile}")
    shutil.copytree(tiny_shop.paths.root, root, dirs_exist_ok=True)
    shutil.rmtree(root / "feast", ignore_errors=True)
    # A fresh project name keeps test keys apart from anything else in the shared Redis.
    project = f"seasonrec_test_{uuid.uuid4().hex[:10]}"
    settings = tiny_shop.model_copy(
        update={
            "paths": tiny_shop.paths.model_copy(update={"data_dir": root}),
            "feast": tiny_shop.feast.model_copy(update={"profile": profile, "project": project}),
        }
    )
    feast_store.apply(settings)
    feast_store.materialize(settings)
    return settings


@pytest.fixture(scope="session", params=["embedded", "redis"])
def feast_settings(request, tiny_shop, tmp_path_factory):
    """Applied and materialized stores, once per profile; Redis keys are removed afterwards."""
    if request.param == "redis" and not redis_up():
        pytest.skip("Redis is not listening on 127.0.0.1:6379 (start it as described in README.md)")
    settings = _applied(tiny_shop, tmp_path_factory, request.param)
    yield settings
    feast_store.open_store(settings).teardown()


@pytest.fixture(scope="session")
def training_set(tiny_shop, tmp_path_factory):
    """The tiny shop applied to Feast, with a training set of 8-item groups: (settings, path)."""
    root = tmp_path_factory.mktemp("train")
    shutil.copytree(tiny_shop.paths.root, root, dirs_exist_ok=True)
    shutil.rmtree(root / "feast", ignore_errors=True)
    settings = tiny_shop.model_copy(
        update={
            "paths": tiny_shop.paths.model_copy(update={"data_dir": root}),
            "feast": tiny_shop.feast.model_copy(update={"project": "train_local"}),
        }
    )
    feast_store.apply(settings)
    build_training_set(settings, root / "train.parquet", negatives=7, seed=0)
    return settings, root / "train.parquet"


@pytest.fixture(scope="session")
def ranker_repository(training_set, tmp_path_factory):
    """A ranker trained one epoch on the tiny shop and exported: its model repository, for stacks to copy."""
    from seasonrec.export.export import export_model
    from seasonrec.model.train import TrainOptions, train

    settings, path = training_set
    root = tmp_path_factory.mktemp("ranker")
    train(settings, path, root / "ckpt", TrainOptions(epochs=1, batch_size=128))
    settings = settings.model_copy(update={"triton": settings.triton.model_copy(update={"repository": root / "repo"})})
    export_model(settings, root / "ckpt", training_set=path)
    return root / "repo"


def _stack_settings(training_set, repository, root, profile="embedded", redis="127.0.0.1:6379"):
    settings, _ = training_set
    shutil.copytree(settings.paths.root, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("feast"))
    rules = root / "rules.yaml"
    shutil.copy(settings.paths.resolve(settings.serving.rules_path), rules)
    ports = free_ports()
    settings = settings.model_copy(
        update={
            "paths": settings.paths.model_copy(update={"data_dir": root}),
            "feast": settings.feast.model_copy(
                update={"profile": profile, "redis_connection": redis, "project": f"serve_{uuid.uuid4().hex[:8]}"}
            ),
            "triton": settings.triton.model_copy(
                update={"repository": root / "repository", "timeout_ms": 2_000, **ports}
            ),
            # A deadline as generous as the Triton timeout above: these tests check answers, not latency, and
            # share a busy 2-core CI machine with Ray and Triton.
            "serving": settings.serving.model_copy(
                update={
                    "port": free_port(),
                    "rules_path": rules,
                    "new_user_events_per_minute": NEW_USERS_PER_MINUTE,
                    "deadline_ms": 5_000,
                }
            ),
        }
    )
    shutil.copytree(repository, root / "repository")
    feast_store.apply(settings)
    feast_store.materialize(settings)
    return settings


@pytest.fixture(scope="session")
def stack_for(training_set, ranker_repository, tmp_path_factory):
    """Start the whole serving stack on free ports in a given `serving.topology`: a context manager of
    (settings, url) that stops it on exit."""

    @contextlib.contextmanager
    def start(topology: str = "fused"):
        settings = _stack_settings(training_set, ranker_repository, tmp_path_factory.mktemp("serve"))
        settings = settings.model_copy(update={"serving": settings.serving.model_copy(update={"topology": topology})})
        server = ServeStack(settings)
        server.start()
        try:
            yield settings, server.url
        finally:
            server.stop()

    return start


@pytest.fixture(scope="session")
def stack(stack_for):
    """The whole serving stack on free ports, default topology: (settings, url)."""
    with stack_for() as started:
        yield started


@pytest.fixture(scope="session")
def writer(stack):
    """Headers that carry the token `serve start` made for this stack (none is configured)."""
    settings, _ = stack
    return {"Authorization": f"Bearer {ServeStack(settings).write_token()}"}
