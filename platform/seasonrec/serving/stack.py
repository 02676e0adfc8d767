"""`seasonrec serve start|stop|status`: the embedded stack on 127.0.0.1.

Feast as configured (SQLite by default), the embedded Triton, and a Ray head of
its own (never on 6379: that is Redis) running the Serve application. Each
process this starts is stopped by its own id, and only while its start time and
command line show it is still that process. State lives in `<data_dir>/serve/`,
which only its owner can open; the files holding secrets only its owner can read.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from seasonrec.config import ENV_PREFIX, Settings
from seasonrec.errors import SeasonrecError
from seasonrec.processes import free_port, is_recorded, port_free, read_state, record_started, stop_recorded
from seasonrec.progress import Task, task
from seasonrec.triton.server import TritonServer

log = logging.getLogger(__name__)

APP_NAME = "seasonrec"
# Settings never written to the stack's settings.yaml; the head gets them in its environment.
SECRETS = {"auth": {"write_token"}, "feast": {"redis_password"}, "privacy": {"key"}}
# The longest unix socket path HAProxy accepts, and the longest it makes under the temp dir (a folder
# named by a 56-character hash); Ray's own sockets (plasma store, raylet) are shorter still.
HAPROXY_SOCKET_MAX = 97
HAPROXY_SOCKET_TAIL = len("/haproxy/" + "0" * 56 + "/metrics.sock")
TEMP_MARKER = ".seasonrec-stack"


def serve_timeout_s(deadline_ms: int) -> float:
    """Serve's `request_timeout_s`: a second above the app's own deadline, whose degraded answer comes first."""
    return deadline_ms / 1000 + 1.0


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, from its first byte: a fresh file, so no older mode carries over."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def serve_env(temp_dir: Path) -> dict[str, str]:
    """Ray Serve's fast request path, measured in docs/benchmarks.md (`bench serve`).

    HAProxy, not the Python proxy actor, takes HTTP and hands it straight to the
    Ingress replica's own HTTP server, one Python hop fewer, and replicas call each
    other over direct gRPC. HAProxy's files and side ports are this stack's own,
    so two stacks on one machine never collide; its sockets need a short path.
    """
    haproxy = temp_dir / "haproxy"
    haproxy.mkdir(parents=True, exist_ok=True)
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(haproxy / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(haproxy / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(haproxy / "metrics.sock"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        # Serve keeps a Python proxy behind HAProxy for draining; its default ports are fixed.
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_port()),
    }


def _ready(url: str, timeout_s: float) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _wait_port(host: str, port: int, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SeasonrecError(f"the Ray head exited ({proc.returncode}) before it listened on port {port}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise SeasonrecError(f"the Ray head did not listen on port {port} within {timeout_s:.0f} s")


class ServeStack:
    def __init__(self, settings: Settings, config_path: Path | None = None):
        self.settings = settings
        self.state_dir = settings.paths.root / "serve"
        self.state_file = self.state_dir / "stack.json"
        self.driver_env_file = self.state_dir / "driver_env.json"
        self.write_token_file = self.state_dir / "write_token"
        self.config_path = config_path

    @property
    def url(self) -> str:
        return f"http://{self.settings.serving.host}:{self.settings.serving.port}"

    def state(self) -> dict | None:
        """What `start` recorded; {} for a file that is not its JSON, which `stop` then clears away."""
        return read_state(self.state_file)

    def write_token(self) -> str:
        """The bearer token writes to this stack need: the configured one, else the one `start` made."""
        if self.settings.auth.write_token is not None:
            return self.settings.auth.write_token.get_secret_value()
        if not self.write_token_file.is_file():
            raise SeasonrecError(
                f"{self.write_token_file}: no write token; `seasonrec serve start` makes one (or set auth.write_token)"
            )
        return self.write_token_file.read_text()

    def _prepare(self) -> tuple[dict[str, str], dict]:
        """The state folder's files, the Ray head's environment and what the state records of them.

        Secrets (Ray's token, the write token, the Redis password) reach the head through its
        environment or files only this user can read, never through settings.yaml.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        settings_file = self.state_dir / "settings.yaml"
        # Exactly this process's settings, overrides included, less the secrets (pydantic would write
        # them as "**********", which the replicas would then take for the real thing).
        plain = self.settings.model_dump(mode="json", exclude=SECRETS)
        _write_private(settings_file, yaml.safe_dump(plain))
        temp = self._make_temp()
        # Ray requires token authentication; this head and its drivers share a fresh token.
        shared = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16), **serve_env(temp)}
        _write_private(self.driver_env_file, json.dumps(shared))
        state = {"settings": str(settings_file), "temp_dir": str(temp)}
        if self.settings.auth.write_token is None:
            _write_private(self.write_token_file, secrets.token_urlsafe(32))
            state["write_token_file"] = str(self.write_token_file)
        env = self._env()
        env["SEASONREC_CONFIG"] = str(settings_file)
        env[f"{ENV_PREFIX}AUTH__WRITE_TOKEN"] = self.write_token()
        if self.settings.feast.redis_password is not None:
            env[f"{ENV_PREFIX}FEAST__REDIS_PASSWORD"] = self.settings.feast.redis_password.get_secret_value()
        return {**env, **self._privacy_env()}, state

    def _privacy_env(self) -> dict[str, str]:
        """The pseudonym key, for whatever loads these settings (the head, the deploying driver)."""
        key = self.settings.privacy.key
        return {f"{ENV_PREFIX}PRIVACY__KEY": key.get_secret_value()} if key is not None else {}

    def _make_temp(self) -> Path:
        """Ray's and HAProxy's folder: a short one in /tmp, since HAProxy's sockets under it leave
        only about 19 characters for its path (`HAPROXY_SOCKET_MAX`), too few for any state folder.

        It holds a marker naming this stack's state folder, and `stop` deletes no folder without
        it: a stale or edited state file must never make it delete someone else's.
        """
        temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        if len(str(temp)) + HAPROXY_SOCKET_TAIL > HAPROXY_SOCKET_MAX:
            temp.rmdir()
            raise SeasonrecError(f"{temp}: too long a path for HAProxy's sockets ({HAPROXY_SOCKET_MAX} bytes at most)")
        _write_private(temp / TEMP_MARKER, str(self.state_dir))
        return temp

    def _remove_temp(self, recorded: object) -> None:
        if not isinstance(recorded, str) or not recorded:
            return
        path, marker = Path(recorded), Path(recorded) / TEMP_MARKER
        try:
            ours = not path.is_symlink() and not marker.is_symlink() and marker.read_text() == str(self.state_dir)
        except OSError:
            ours = False
        if ours:
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            log.warning("%s: left in place: this stack did not create it (%s names it)", path, self.state_file)

    def running(self) -> bool:
        state = self.state()
        return state is not None and is_recorded(state.get("ray_head", {}))

    def start(self, timeout_s: float = 240) -> dict:
        if self.running():
            raise SeasonrecError(f"the stack is already running ({self.state_file}); `seasonrec serve stop` first")
        self.stop()  # what a stack that is gone left behind (after a reboot, say)
        host, port = self.settings.serving.host, self.settings.serving.port
        if not port_free(host, port):
            raise SeasonrecError(f"port {port} (serving.port) is in use on {host}")
        with task("serve start", total=4) as bar:
            return self._start(bar, timeout_s)

    def _start(self, bar: Task, timeout_s: float) -> dict:
        triton = TritonServer(self.settings)
        started_triton = False
        bar.note("Triton")
        if triton.state() is None:
            triton.start()
            started_triton = True
        bar.advance()
        ray_port = free_port()
        env, files = self._prepare()
        # Ray starts workers at nice 15 so its own daemons come first; a Serve replica
        # answering requests must not wait behind every batch process on the machine.
        env.setdefault("RAY_worker_niceness", "0")
        head = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "ray"),
                "start",
                "--head",
                "--block",
                f"--port={ray_port}",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
                # Ray's agent listens on 52365 unless told: a second head on the machine (another stack,
                # a test's) would lose its agent, and with it job submission.
                f"--dashboard-agent-listen-port={free_port()}",
                f"--temp-dir={files['temp_dir']}",
            ],
            stdout=(self.state_dir / "ray.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        state = {
            "ray_pid": head.pid,
            "ray_address": f"127.0.0.1:{ray_port}",
            "url": self.url,
            "triton_started": started_triton,
            **files,
            "ray_head": record_started(head),
        }
        _write_private(self.state_file, json.dumps(state))
        try:
            bar.note("Ray head")
            _wait_port("127.0.0.1", ray_port, head, timeout_s)
            bar.advance()
            bar.note("Serve deployments")
            self._deploy(state, timeout_s, bar)
        except BaseException:
            self.stop()
            raise
        return state

    def _env(self) -> dict[str, str]:
        """This process's environment, less seasonrec overrides, plus the head's token and Serve settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEASONREC__")}
        env.update(json.loads(self.driver_env_file.read_text()))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run_driver(self, code: str, timeout_s: float = 240) -> None:
        """Run Python against the running head, from a short-lived driver (`ray`, `serve` imported)."""
        state = self.state()
        if not self.running():
            raise SeasonrecError("the stack is not running; `seasonrec serve start` first")
        script = (
            "import ray; from ray import serve\n"
            f"ray.init(address={state['ray_address']!r}, logging_level='ERROR')\n{code}\n"
        )
        env = {**self._env(), **self._privacy_env()}  # build_app loads the settings, which need the key
        proc = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout_s
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SeasonrecError(f"Ray Serve driver failed: {last[:300]} (see {self.state_dir / 'ray.log'})")

    def _deploy(self, state: dict, timeout_s: float, bar: Task) -> None:
        """Run the app from a short-lived driver; Serve keeps it running in the head."""
        host, port = self.settings.serving.host, self.settings.serving.port
        http = {"host": host, "port": port, "request_timeout_s": serve_timeout_s(self.settings.serving.deadline_ms)}
        self.run_driver(
            "from seasonrec.serving.app import build_app, AppArgs\n"
            f"serve.start(http_options={http!r})\n"
            f"serve.run(build_app(AppArgs(config={state['settings']!r})), name={APP_NAME!r},"
            " route_prefix='/', blocking=False)",
            timeout_s,
        )
        bar.advance()
        bar.note(f"{self.url}/readyz")
        if not _ready(self.url, timeout_s):
            raise SeasonrecError(f"{self.url}/readyz did not answer 200 within {timeout_s:.0f} s")
        bar.advance()
        bar.note(self.url)

    def stop(self) -> bool:
        """Stop the head and what it started; False, signalling nothing, if it is not running."""
        state = self.state()
        if state is None:
            return False
        stopped = stop_recorded(state.get("ray_head", {}))
        if not stopped:
            log.warning(
                "%s: the Ray head it records (pid %s) has exited or is another process now:"
                " nothing signalled, stale state removed",
                self.state_file,
                state.get("ray_pid"),
            )
        self._remove_temp(state.get("temp_dir"))
        self.driver_env_file.unlink(missing_ok=True)
        self.write_token_file.unlink(missing_ok=True)
        if state.get("triton_started"):
            TritonServer(self.settings).stop()
        self.state_file.unlink(missing_ok=True)
        return stopped

    def status(self) -> dict:
        state = self.state()
        if not self.running():
            return {"running": False}
        import httpx

        try:
            ready = httpx.get(f"{state['url']}/readyz", timeout=5)
            return {"running": True, **state, "ready": ready.status_code == 200, "readyz": ready.json()}
        except httpx.HTTPError as exc:
            return {"running": True, **state, "ready": False, "error": type(exc).__name__}
