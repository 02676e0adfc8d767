"""Ports and sessions of the servers seasonrec starts (Triton, a Ray head).

Each server starts a session of its own, so stopping it stops everything it
spawned, and only what seasonrec started is ever signalled. A session, not a
process group: Ray puts each worker in a group of its own, and Serve's HAProxy
outlives the Ray head unless it is stopped too.

A pid in a state file is only a number: once that process is gone, the kernel
hands it to the next one. So a server is recorded with its start time and
command line (`record`), and `stop_recorded` signals nothing unless both match.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

from seasonrec.errors import SeasonrecError

# Ray's workers take ports up to here by default (--max-worker-port).
RAY_WORKER_PORTS_END = 19999


_PORTS = random.SystemRandom()
_GIVEN: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free now, for a server that will bind it a moment later (Triton, a Ray head, Serve).

    Not one the kernel hands out for port 0: in that moment Ray's own processes, which bind port 0
    by the dozen while a head starts, could take it, and the server that was promised it would fail
    (a Ray head whose agent cannot listen exits). So the port comes from between Ray's worker range
    and the kernel's ephemeral range, which nothing takes unasked.
    """
    low, high = RAY_WORKER_PORTS_END + 1, _ephemeral_start()
    # A random source of our own: libraries seed the global one (training does), which would hand
    # out the same "random" port twice; and never a port this process handed out already.
    for port in _PORTS.sample(range(low, high), min(200, max(high - low, 0))):
        if port in _GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            _GIVEN.add(port)
            return port
    with socket.socket() as sock:  # no such range on this machine: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_state(path: Path) -> dict | None:
    """A server's recorded state: None without the file, {} for one that is not a JSON object (to be cleared)."""
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def start_redis(port: int, *options: str, timeout_s: float = 15) -> subprocess.Popen:
    """A redis-server of our own on 127.0.0.1:`port`, in a session of its own, once it listens.

    Nothing on disk unless `options` ask for it. Tests and the chaos run stop and start their
    own Redis this way; the machine's Redis is never touched.
    """
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", *options]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise SeasonrecError(f"redis-server on port {port} did not start within {timeout_s:.0f} s")


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _stat(pid: int) -> list[str] | None:
    """Fields 3 onwards of /proc/<pid>/stat (the command name, field 2, may hold spaces and parentheses)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def record(pid: int) -> dict | None:
    """What tells this process apart from a later one given the same pid; None if it is gone."""
    # A forged or corrupt file must never reach os.kill with 0 or a negative number: those mean whole groups.
    if type(pid) is not int or pid <= 0:
        return None
    fields = _stat(pid)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0")
    except OSError:
        return None
    if fields is None or fields[0] == "Z":
        return None
    # Field 22: the start time, in clock ticks since boot.
    return {"pid": pid, "start_time": int(fields[19]), "cmdline": cmdline.decode(errors="replace").split("\0")}


def record_started(proc: subprocess.Popen, timeout_s: float = 5) -> dict:
    """`record` of a server just launched, once its command line is there to read.

    Popen returns when the exec has closed the child's close-on-exec pipe, but the kernel sets the
    new program's argument area only after that: read in between, /proc/<pid>/cmdline is empty, and
    the record would never match the running server again (it would pass for dead, its ports held).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        recorded = record(proc.pid)
        if proc.poll() is not None or time.monotonic() > deadline or (recorded and any(recorded["cmdline"])):
            return recorded or {"pid": proc.pid}
        time.sleep(0.01)


def is_recorded(recorded: object) -> bool:
    """Whether the process `record` described is still alive (not a zombie) under its pid."""
    now = record(recorded.get("pid")) if isinstance(recorded, dict) else None
    return (
        now is not None
        and now["start_time"] == recorded.get("start_time")
        and now["cmdline"] == recorded.get("cmdline")
    )


def not_recorded_because(recorded: object) -> str:
    """Why `is_recorded` says no, in words for a log line; reaps the process if it is our zombie child."""
    pid = recorded.get("pid") if isinstance(recorded, dict) else None
    if type(pid) is not int or pid <= 0:
        return "no valid pid was recorded"
    fields = _stat(pid)
    if fields is None:
        return "it is gone"
    if fields[0] == "Z":
        try:
            _, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return "it exited (a zombie another process must reap)"
        # Our own child, so its session is ours too: what it started (a Triton's backend stubs,
        # still holding its ports) goes with it.
        stop_session(pid, grace_s=5)
        if os.WIFSIGNALED(status):
            return f"it was killed by signal {os.WTERMSIG(status)}; what it had started is stopped"
        return f"it exited with status {os.waitstatus_to_exitcode(status)}; what it had started is stopped"
    now = record(pid)
    if now is None:
        return "its /proc entry could not be read"
    if now["start_time"] != recorded.get("start_time"):
        return "the pid now belongs to another process"
    return f"its command line now reads {now['cmdline'][:2]}"


def stop_recorded(recorded: object, grace_s: float = 30) -> bool:
    """`stop_session` for a recorded process, if it is still that process; False, and no signal, if not."""
    if not is_recorded(recorded):
        return False
    stop_session(recorded["pid"], grace_s)
    return True


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of a session."""
    members = []
    for proc in Path("/proc").glob("[0-9]*"):
        fields = _stat(int(proc.name))
        if fields and int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(proc.name))
    return members


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(sid: int, seconds: float, leader_only: bool = False) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(sid, os.WNOHANG)  # reap the leader if it is our child
        members = session_members(sid)
        gone = sid not in members if leader_only else not members
        if gone:
            return True
        time.sleep(0.05)
    return False


def stop_session(sid: int, grace_s: float = 30) -> None:
    """SIGTERM the leader (it shuts its own children down in order), then whatever of the
    session is left; SIGKILL what is still there after `grace_s`.

    Only for a session this process knows it started: a pid read back from a file goes
    through `stop_recorded`. Once the leader is checked, its session's members are safe to
    signal: the kernel reuses no pid while a session still carries it as its id.
    """
    _signal_all([sid], signal.SIGTERM)
    _wait_gone(sid, grace_s, leader_only=True)
    _signal_all(session_members(sid), signal.SIGTERM)
    if not _wait_gone(sid, grace_s):
        _signal_all(session_members(sid), signal.SIGKILL)
        _wait_gone(sid, 5)
