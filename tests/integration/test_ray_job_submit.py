"""`ray job submit` of ray_jobs/ entrypoints to a real local head, exactly as their docstrings show."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from seasonrec import schema as s
from seasonrec.processes import free_port, stop_session

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def clean_env() -> dict[str, str]:
    """This environment without seasonrec overrides: the job must follow its --config alone."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SEASONREC")}


# Ray 2.59+ requires token authentication; the test's cluster and its client share this token.
TOKEN_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A head on free ports (never 6379: that is Redis), stopped by its own session."""
    port, dashboard, client = free_port(), free_port(), free_port()
    temp = tmp_path_factory.mktemp("ray")
    head = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={client}",
            # Not the default 52365: a stack of the same session may hold it, and a head whose agent
            # cannot listen takes no job ("No available agent to submit job").
            f"--dashboard-agent-listen-port={free_port()}",
            f"--temp-dir={temp}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # The job's `python` is the one this venv installed seasonrec into, as on a cluster image.
        env={**clean_env(), **TOKEN_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", dashboard), timeout=1):
                break
        except OSError:
            time.sleep(1)
    else:
        stop_session(head.pid)
        pytest.fail("the Ray head's dashboard did not come up in 120 s")
    yield address
    stop_session(head.pid)


def submit(address: str, script: str, *args) -> subprocess.CompletedProcess:
    """`ray job submit ... -- python SCRIPT ARGS` exactly as the docstrings show; asserts SUCCEEDED."""
    env = {**clean_env(), **TOKEN_ENV}
    command = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".", "--", "python", script]
    deadline, command = time.time() + 30, [*command, *map(str, args)]
    while True:
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
        # The dashboard answers before the head's job agent has registered (slower on a busy machine):
        # nothing was submitted then, so asking again is safe.
        if proc.returncode == 0 or "No available agent" not in proc.stderr or time.time() > deadline:
            break
        time.sleep(2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    job_id = re.search(r"Job '(raysubmit_\w+)' submitted", proc.stdout + proc.stderr).group(1)
    # In a child process: Ray keeps the first auth token it loads for the life of a process,
    # and this one must not leak into later tests' local clusters.
    query = f"from ray.job_submission import JobSubmissionClient as C; print(C('{address}').get_job_status('{job_id}'))"
    status = subprocess.run([sys.executable, "-c", query], capture_output=True, text=True, env=env, timeout=60)
    assert status.stdout.strip() == "SUCCEEDED", status.stderr[-2000:]
    return proc


def test_train_job_succeeds_and_writes_a_checkpoint(ray_head, training_set, tmp_path):
    settings, path = training_set
    config = tmp_path / "job.yaml"
    config.write_text(
        yaml.safe_dump({"paths": {"data_dir": str(settings.paths.root)}, "features": {"title_encoder": "hashing"}})
    )
    out = tmp_path / "ckpt"
    submit(
        ray_head,
        "ray_jobs/train.py",
        "--config",
        config,
        "--training-set",
        path,
        "--workers",
        1,
        "--epochs",
        1,
        "--out",
        out,
    )
    assert (out / "config.json").is_file() and (out / "vocab.json").is_file()
    assert json.loads((out / "training_history.json").read_text())["epochs"]


def test_materialize_job_succeeds_and_fills_the_online_store(ray_head, tiny_shop, tmp_path):
    from seasonrec.features import store as feast_store

    # An applied but empty store of its own: a fresh folder and a project name no other test uses.
    shutil.copytree(tiny_shop.paths.root, tmp_path / "data")
    shutil.rmtree(tmp_path / "data" / "feast", ignore_errors=True)
    project = f"seasonrec_job_{uuid.uuid4().hex[:10]}"
    settings = tiny_shop.model_copy(
        update={
            "paths": tiny_shop.paths.model_copy(update={"data_dir": tmp_path / "data"}),
            "feast": tiny_shop.feast.model_copy(update={"profile": "embedded", "project": project}),
        }
    )
    feast_store.apply(settings)
    user = feast_store.sample_users(settings, 1)[0]
    assert feast_store.online_features(settings, user)["user"]["n_purchases"] is None
    config = tmp_path / "job.yaml"
    config.write_text(
        yaml.safe_dump(
            {"paths": {"data_dir": str(settings.paths.root)}, "feast": {"profile": "embedded", "project": project}}
        )
    )
    proc = submit(ray_head, "ray_jobs/materialize.py", "--config", config, "--end", "2024-07-01T00:00:00")
    summary = next(json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"profile"'))
    assert summary["profile"] == "embedded" and summary["end"] == "2024-07-01T00:00:00+00:00"
    assert s.USER_STATS in summary["views"]
    assert feast_store.online_features(settings, user)["user"]["n_purchases"] > 0
