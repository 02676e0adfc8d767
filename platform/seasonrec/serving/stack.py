"""`seasonrec serve start|stop|status`: the embedded stack on 127.0.0.1.

Feast as configured (SQLite by default), the embedded Triton, and a Ray head of
its own (never on 6379: that is Redis) running the Serve application. Each
process this starts is stopped by its own id; state lives in `<data_dir>/serve/`.
"""

from __future__ import annotations

import json
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

from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.processes import free_port, port_free, stop_session
from seasonrec.triton.server import TritonServer

APP_NAME = "seasonrec"


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
        self.config_path = config_path

    @property
    def url(self) -> str:
        return f"http://{self.settings.serving.host}:{self.settings.serving.port}"

    def state(self) -> dict | None:
        return json.loads(self.state_file.read_text()) if self.state_file.is_file() else None

    def _settings_file(self) -> Path:
        """The settings the Serve replicas load: exactly this process's, overrides included."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "settings.yaml"
        path.write_text(yaml.safe_dump(self.settings.model_dump(mode="json")))
        return path

    def start(self, timeout_s: float = 240) -> dict:
        if self.state():
            raise SeasonrecError(f"the stack is already running ({self.state_file}); `seasonrec serve stop` first")
        host, port = self.settings.serving.host, self.settings.serving.port
        if not port_free(host, port):
            raise SeasonrecError(f"port {port} (serving.port) is in use on {host}")
        triton = TritonServer(self.settings)
        started_triton = False
        if triton.state() is None:
            triton.start()
            started_triton = True
        settings_file = self._settings_file()
        ray_port = free_port()
        temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        # Ray requires token authentication; this head and its drivers share a fresh token,
        # kept where only this user can read it.
        shared = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16), **serve_env(temp)}
        self.driver_env_file.touch(mode=0o600)
        self.driver_env_file.write_text(json.dumps(shared))
        env = self._env()
        env["SEASONREC_CONFIG"] = str(settings_file)
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
                f"--temp-dir={temp}",
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
            "settings": str(settings_file),
            "temp_dir": str(temp),
        }
        self.state_file.write_text(json.dumps(state))
        try:
            _wait_port("127.0.0.1", ray_port, head, timeout_s)
            self._deploy(state, timeout_s)
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
        if state is None:
            raise SeasonrecError("the stack is not running; `seasonrec serve start` first")
        script = (
            "import ray; from ray import serve\n"
            f"ray.init(address={state['ray_address']!r}, logging_level='ERROR')\n{code}\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", script], env=self._env(), capture_output=True, text=True, timeout=timeout_s
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SeasonrecError(f"Ray Serve driver failed: {last[:300]} (see {self.state_dir / 'ray.log'})")

    def _deploy(self, state: dict, timeout_s: float) -> None:
        """Run the app from a short-lived driver; Serve keeps it running in the head."""
        host, port = self.settings.serving.host, self.settings.serving.port
        self.run_driver(
            "from seasonrec.serving.app import build_app, AppArgs\n"
            f"serve.start(http_options={{'host': {host!r}, 'port': {port}}})\n"
            f"serve.run(build_app(AppArgs(config={state['settings']!r})), name={APP_NAME!r},"
            " route_prefix='/', blocking=False)",
            timeout_s,
        )
        if not _ready(self.url, timeout_s):
            raise SeasonrecError(f"{self.url}/readyz did not answer 200 within {timeout_s:.0f} s")

    def stop(self) -> bool:
        state = self.state()
        if state is None:
            return False
        stop_session(state["ray_pid"])
        shutil.rmtree(state.get("temp_dir", ""), ignore_errors=True)
        self.driver_env_file.unlink(missing_ok=True)
        if state.get("triton_started"):
            TritonServer(self.settings).stop()
        self.state_file.unlink(missing_ok=True)
        return True

    def status(self) -> dict:
        state = self.state()
        if state is None:
            return {"running": False}
        import httpx

        try:
            ready = httpx.get(f"{state['url']}/readyz", timeout=5)
            return {"running": True, **state, "ready": ready.status_code == 200, "readyz": ready.json()}
        except httpx.HTTPError as exc:
            return {"running": True, **state, "ready": False, "error": type(exc).__name__}
