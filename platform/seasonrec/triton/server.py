"""The embedded Triton server: the `tritonserver` binary from the nvidia-pytriton wheel.

It needs no GPU and no Docker. `start` prepares a backend folder whose Python
stub matches this interpreter, checks the ports, launches the server in its own
session with explicit model control, and waits until the server and its
model are ready. `stop` ends that session, so no stub process outlives it.
State (pid, ports, log) lives in `<data_dir>/triton/`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.processes import (
    free_port,
    is_recorded,
    not_recorded_because,
    port_free,
    read_state,
    record_started,
    stop_recorded,
)

log = logging.getLogger(__name__)
STATE_FILE = "server.json"
LOG_FILE = "tritonserver.log"


def _pytriton_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    return Path(spec.origin).parent if spec and spec.origin else None


def _binary(settings: Settings) -> Path:
    if settings.triton.binary:
        path = Path(settings.triton.binary)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SeasonrecError(f"{path}: tritonserver binary not found or not executable (triton.binary)")
        return path
    root = _pytriton_dir()
    if root is None or not (root / "tritonserver" / "bin" / "tritonserver").is_file():
        raise SeasonrecError(
            "tritonserver binary not found: install the nvidia-pytriton wheel (`make install` does),"
            " or set triton.binary"
        )
    return root / "tritonserver" / "bin" / "tritonserver"


def _backends(state_dir: Path) -> Path:
    """A backend folder with the Python backend and the stub built for this interpreter's version."""
    root = _pytriton_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise SeasonrecError(f"{stub}: nvidia-pytriton has no Python backend stub for Python {version}")
    target = state_dir / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for source in [*(root / "tritonserver" / "backends" / "python").glob("*.*"), stub]:
        if source.is_file():
            shutil.copy2(source, target / source.name)
    return target.parent


def _environment(binary: Path, python_env: Path) -> dict[str, str]:
    python = python_env / "bin" / "python"
    if not python.is_file():
        raise SeasonrecError(
            f"{python_env}: no Python environment for Triton's Python backend (triton.python_env); run `make install`"
        )
    env = dict(os.environ)
    libs = [str(binary.parents[3] / "nvidia_pytriton.libs")] if _pytriton_dir() else []
    # The stub embeds this interpreter's libpython and takes its packages from the first
    # `python` on PATH: a venv of its own, because the stub is built against numpy 1.x and
    # hands back empty tensors when it meets numpy 2 (which Feast needs in the main venv).
    libdir = sysconfig.get_config_var("LIBDIR")
    env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    env["PYTHONHOME"] = sys.base_prefix
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def last_error(log: Path) -> str:
    if not log.is_file():
        return "no log written"
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E") or "error" in line.lower()]
    return (errors or lines or ["empty log"])[-1].strip()[:300]


def free_ports() -> dict[str, int]:
    """Free HTTP, gRPC and metrics ports, for a Triton of its own beside any other (benches, tests)."""
    return {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}


class TritonServer:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.cfg = settings.triton
        self.state_dir = settings.paths.root / "triton"
        self.state_file = self.state_dir / STATE_FILE
        self.log = self.state_dir / LOG_FILE
        self.repository = settings.paths.resolve(self.cfg.repository)

    @property
    def http_url(self) -> str:
        return f"{self.cfg.host}:{self.cfg.http_port}"

    def _recorded(self) -> dict | None:
        """What `start` recorded, running or not; {} for a file that is not its JSON."""
        return read_state(self.state_file)

    def state(self) -> dict | None:
        """The running server's state: None unless its pid is still the tritonserver `start` launched."""
        state = self._recorded()
        return state if state and is_recorded(state.get("process", {})) else None

    def start(self, load: bool = True) -> dict:
        running = self.state()
        if running:
            raise SeasonrecError(f"Triton is already running (pid {running['pid']}); `seasonrec triton stop` first")
        binary = _binary(self.settings)
        for key in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self.cfg, key)
            if not port_free(self.cfg.host, port):
                raise SeasonrecError(f"port {port} (triton.{key}) is in use on {self.cfg.host}")
        if not self.repository.is_dir():
            raise SeasonrecError(f"{self.repository}: model repository not found (triton.repository)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(binary),
            f"--model-repository={self.repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={_backends(self.state_dir)}",
            f"--http-address={self.cfg.host}",
            f"--http-port={self.cfg.http_port}",
            f"--grpc-address={self.cfg.host}",
            f"--grpc-port={self.cfg.grpc_port}",
            f"--metrics-address={self.cfg.host}",
            f"--metrics-port={self.cfg.metrics_port}",
            "--exit-timeout-secs=3",  # in-flight requests take milliseconds
            "--log-verbose=0",
        ]
        has_versions = (self.repository / self.cfg.model).is_dir() and any(
            p.name.isdigit() for p in (self.repository / self.cfg.model).iterdir()
        )
        if load and has_versions:
            command.append(f"--load-model={self.cfg.model}")
        with self.log.open("w") as log:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_environment(binary, self.settings.paths.resolve(self.cfg.python_env)),
                start_new_session=True,
            )
        state = {
            "pid": proc.pid,
            "http": self.http_url,
            "grpc": f"{self.cfg.host}:{self.cfg.grpc_port}",
            "metrics": f"{self.cfg.host}:{self.cfg.metrics_port}",
            "repository": str(self.repository),
            "log": str(self.log),
            "model": self.cfg.model if load and has_versions else None,
            "process": record_started(proc),
        }
        self.state_file.write_text(json.dumps(state))
        try:
            self._wait_ready(proc, state["model"])
        except BaseException:
            self.stop()
            raise
        return state

    def _wait_ready(self, proc: subprocess.Popen, model: str | None) -> None:
        import tritonclient.http as http

        deadline = time.monotonic() + self.cfg.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SeasonrecError(f"{self.log}: tritonserver exited ({proc.returncode}): {last_error(self.log)}")
            client = http.InferenceServerClient(self.http_url)
            try:
                if client.is_server_live() and (model is None or client.is_model_ready(model)):
                    return
            except Exception:  # not listening yet
                pass
            finally:
                client.close()  # an open connection would hold up the server's shutdown
            time.sleep(0.25)
        raise SeasonrecError(f"{self.log}: Triton not ready after {self.cfg.start_timeout_s} s: {last_error(self.log)}")

    def stop(self) -> bool:
        """Stop our server and everything it started; False if none was running.

        Models are unloaded first, so Triton ends its Python-backend stubs itself;
        then the session gets SIGTERM, and SIGKILL only if it will not go.
        """
        state = self._recorded()
        if state is None:
            return False
        if self.state() is not None:
            self._unload_all()
        recorded = state.get("process", {})
        why = not_recorded_because(recorded) if not is_recorded(recorded) else ""
        stopped = stop_recorded(recorded)
        if not stopped:
            log.warning(
                "%s: the tritonserver it records (pid %s) is not running (%s): nothing signalled, stale state"
                " removed; its log's last error: %s",
                self.state_file,
                state.get("pid"),
                why,
                last_error(self.log),
            )
        self.state_file.unlink(missing_ok=True)
        return stopped

    def _unload_all(self) -> None:
        import tritonclient.http as http

        try:
            client = http.InferenceServerClient(self.http_url, network_timeout=30)
            for model in client.get_model_repository_index():
                if model.get("state") == "READY":
                    client.unload_model(model["name"])
            client.close()
        except Exception:  # the server is unhealthy: the signals below still stop it
            return

    def status(self) -> dict:
        state = self.state()
        if state is None:
            return {"running": False}
        import tritonclient.http as http

        client = http.InferenceServerClient(self.http_url)
        try:
            models = client.get_model_repository_index()
        except Exception as exc:
            return {"running": True, "ready": False, "pid": state["pid"], "error": str(exc).splitlines()[0]}
        return {"running": True, "ready": client.is_server_ready(), **state, "models": models}

    def load(self, versions: list[int] | None = None) -> None:
        """Load the model: the config's version policy, or exactly `versions` side by side."""
        import tritonclient.http as http
        from tritonclient.utils import InferenceServerException

        client = http.InferenceServerClient(self.http_url, network_timeout=self.cfg.start_timeout_s)
        config = None
        if versions:
            current = client.get_model_config(self.cfg.model) if client.is_model_ready(self.cfg.model) else None
            if current is None:
                current = _file_config(self.repository / self.cfg.model / "config.pbtxt")
            current["version_policy"] = {"specific": {"versions": sorted(versions)}}
            config = json.dumps(current)
        try:
            client.load_model(self.cfg.model, config=config)
        except InferenceServerException as exc:
            raise SeasonrecError(f"{self.cfg.model}: Triton could not load the model: {exc.message()}") from exc

    def live_versions(self) -> list[int]:
        import tritonclient.http as http

        index = http.InferenceServerClient(self.http_url).get_model_repository_index()
        return sorted(int(m["version"]) for m in index if m.get("name") == self.cfg.model and m.get("state") == "READY")

    def swap(self, to: int | None = None) -> dict:
        """Serve version `to` (default: the newest) with no downtime, also to roll back.

        The target loads beside the live versions; once it is ready the others are
        unloaded, and Triton lets their in-flight requests finish first.
        """
        from seasonrec.export.repository import ModelRepository

        if self.state() is None:
            raise SeasonrecError("Triton is not running; `seasonrec triton start` first")
        versions = ModelRepository(self.repository, self.cfg.model).versions()
        target = to if to is not None else (versions[-1] if versions else None)
        if target not in versions:
            raise SeasonrecError(f"{self.repository / self.cfg.model}: no version {target} to serve (have {versions})")
        before = self.live_versions()
        self.load(sorted({*before, target}))
        self.load([target])
        return {"from": before, "to": target, "live": self.live_versions()}


def _file_config(path: Path) -> dict:
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(config, preserving_proto_field_name=True)
