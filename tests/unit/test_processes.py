"""A pid read back from a file is signalled only while it is still the process recorded."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import pytest

from seasonrec.processes import is_recorded, record, record_started, session_members, stop_recorded


@pytest.fixture
def spawn():
    """`spawn(*argv, **popen)`: a process of the test's own, in a session of its own, killed afterwards."""
    started: list[subprocess.Popen] = []

    def start(*argv: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(list(argv), start_new_session=True, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        for pid in session_members(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


def test_a_process_is_recorded_with_its_start_time_and_command_line(spawn):
    proc = spawn("sleep", "60")
    recorded = record_started(proc)
    assert recorded["pid"] == proc.pid
    assert recorded["cmdline"] == ["sleep", "60"]
    assert is_recorded(recorded)
    proc.kill()
    proc.wait()
    assert record(proc.pid) is None
    assert not is_recorded(recorded)


@pytest.mark.parametrize(
    "change",
    [{"start_time": -1}, {"cmdline": ["/usr/bin/ray", "start", "--head"]}, {"start_time": None, "cmdline": None}],
    ids=["started-at-another-time", "another-command", "old-state-file"],
)
def test_a_reused_pid_is_not_signalled(spawn, change):
    """The pid now belongs to someone else: a record of an earlier process must not stop it."""
    proc = spawn("sleep", "60")
    stale = {**record(proc.pid), **change}
    assert stop_recorded(stale, grace_s=1) is False
    assert proc.poll() is None, "an unrelated process was signalled"


def test_a_dead_leader_is_never_signalled_nor_what_is_left_of_its_session(spawn):
    # The shell leads the session, leaves a sleep behind in it and exits.
    shell = spawn("sh", "-c", "sleep 60 & read line", stdin=subprocess.PIPE)
    recorded = record(shell.pid)
    shell.communicate(b"\n")
    left = session_members(shell.pid)
    assert len(left) == 1
    assert stop_recorded(recorded, grace_s=1) is False
    assert session_members(shell.pid) == left


def test_the_recorded_process_is_stopped_with_its_whole_session(spawn):
    shell = spawn("sh", "-c", "sleep 60 & wait")
    recorded = record(shell.pid)
    assert stop_recorded(recorded, grace_s=5) is True
    assert shell.poll() is not None
    assert session_members(shell.pid) == []


@pytest.mark.parametrize("pid", [0, -1, "1", None])
def test_a_forged_pid_is_refused_before_any_signal(pid):
    """0 and -1 would mean whole process groups to os.kill."""
    assert record(pid) is None
    assert stop_recorded({"pid": pid, "start_time": 0, "cmdline": []}) is False


def test_a_free_port_is_one_no_port_0_bind_can_take_before_its_server_binds_it():
    import random

    from seasonrec.processes import RAY_WORKER_PORTS_END, _ephemeral_start, free_port

    ports = []
    for _ in range(50):
        random.seed(0)  # as training does: the ports must not follow the global generator
        ports.append(free_port())
    assert all(RAY_WORKER_PORTS_END < p < _ephemeral_start() for p in ports)
    assert len(set(ports)) == len(ports)  # never the same port twice, as a head's several ports need


def test_a_server_is_recorded_by_its_own_command_line_not_the_empty_one_of_its_exec(monkeypatch):
    # Between the exec's closing of the pipe Popen waits on and the kernel's setting up the new
    # argument area, /proc/<pid>/cmdline reads empty: such a record would never match the server again.
    from seasonrec import processes

    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    real, reads = processes.record, []

    def early_then_real(pid):
        reads.append(pid)
        found = real(pid)
        return {**found, "cmdline": [""]} if len(reads) < 3 else found

    monkeypatch.setattr(processes, "record", early_then_real)
    try:
        recorded = processes.record_started(proc)
        assert recorded["cmdline"] == ["sleep", "30"] and len(reads) == 3
        monkeypatch.setattr(processes, "record", real)
        assert processes.is_recorded(recorded)
    finally:
        proc.kill()
        proc.wait()
