"""`seasonrec triton stop|status` with a state file: only the tritonserver `start` launched is signalled."""

from __future__ import annotations

import json
import logging

import pytest

from seasonrec.processes import free_port, record
from seasonrec.triton.server import TritonServer


@pytest.fixture
def server(settings_for, tmp_path) -> TritonServer:
    settings = settings_for(tmp_path)
    # Nothing listens here: the unload before the signals finds no server.
    triton = settings.triton.model_copy(update={"http_port": free_port()})
    server = TritonServer(settings.model_copy(update={"triton": triton}))
    server.state_dir.mkdir(parents=True)
    return server


def _write_state(server: TritonServer, state: dict) -> None:
    server.state_file.write_text(json.dumps(state))


@pytest.mark.parametrize(
    "process",
    [
        lambda pid: {"process": {**record(pid), "start_time": record(pid)["start_time"] - 1}},
        lambda pid: {},
        lambda pid: {"process": None},
    ],
    ids=["pid-reused", "state-file-of-an-older-version", "edited-state-file"],
)
def test_a_stale_state_file_signals_nothing_and_is_cleaned_up(server, stranger, process, caplog):
    _write_state(server, {"pid": stranger.pid, **process(stranger.pid)})
    assert server.state() is None
    assert server.status() == {"running": False}

    with caplog.at_level(logging.WARNING):
        assert server.stop() is False

    assert stranger.poll() is None, "stop signalled a process Triton's start did not launch"
    assert not server.state_file.exists()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(server.state_file) in warning and "nothing signalled" in warning and "\n" not in warning


def test_a_corrupt_state_file_is_cleaned_up_not_a_traceback(server):
    server.state_file.write_text("[1, 2")
    assert server.state() is None
    assert server.stop() is False
    assert not server.state_file.exists()


def test_the_recorded_server_is_stopped(server, stranger):
    _write_state(server, {"pid": stranger.pid, "process": record(stranger.pid)})
    assert server.state()["pid"] == stranger.pid
    assert server.stop() is True
    assert stranger.wait(timeout=10) is not None
