"""Ports and sessions of the servers seasonrec starts (Triton, a Ray head).

Each server starts a session of its own, so stopping it stops everything it
spawned, and only what seasonrec started is ever signalled. A session, not a
process group: Ray puts each worker in a group of its own, and Serve's HAProxy
outlives the Ray head unless it is stopped too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of a session."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(stat.parent.name))
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
    session is left; SIGKILL what is still there after `grace_s`."""
    _signal_all([sid], signal.SIGTERM)
    _wait_gone(sid, grace_s, leader_only=True)
    _signal_all(session_members(sid), signal.SIGTERM)
    if not _wait_gone(sid, grace_s):
        _signal_all(session_members(sid), signal.SIGKILL)
        _wait_gone(sid, 5)
