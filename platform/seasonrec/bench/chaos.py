"""`seasonrec bench chaos`: closed-loop load while the stack's parts fail and come back.

The run builds a stack of its own beside whatever is running: Feast's Redis
profile against a redis-server it starts on a free port (never the machine's
Redis), the embedded Triton and Ray Serve, all on free ports, under
`<data_dir>/chaos/`. Four clients send recommendations and purchase events
without pause while, one after another:

- Triton is killed (SIGKILL) and started again;
- the Redis server is stopped and started again (its append-only file keeps what was accepted);
- a broken `rules.yaml` replaces the live one, then a good one;
- a new model version is published and swapped in.

A client treats a 503 to an event as the API means it: not recorded, try again
later. It retries that event until it is accepted or the run ends, so an event
is either accepted or reported as refused. Afterwards every accepted event is
looked for in the online history.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from seasonrec import schema as s
from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.processes import free_port, start_redis
from seasonrec.progress import progress
from seasonrec.triton.server import free_ports

AT = "2024-12-10T12:00:00+00:00"  # recommendations are asked for inside the shop's log
EVENT_EVERY = 4  # one request in four is a purchase event


@dataclass
class Fault:
    name: str
    injected: float  # monotonic time the fault began
    repaired: float = 0.0  # the repair step finished
    recovered: float | None = None  # healthy again after the repair (see `_recovered`)
    version: str | None = None  # swap_model: the version it swapped in


@dataclass
class Tally:
    """What the clients saw, and when (monotonic seconds) each healthy answer came."""

    sent: int = 0
    statuses: Counter = field(default_factory=Counter)  # (recommendation | event, HTTP status)
    degraded: list[float] = field(default_factory=list)  # when each degraded answer came
    transport_errors: int = 0
    refused_events: int = 0  # 503 answers to events: not recorded, retried
    accepted: list[tuple[str, str, int]] = field(default_factory=list)  # (user, item, at seconds)
    unaccepted: int = 0  # events still refused when the run ended
    healthy: list[tuple[float, str]] = field(default_factory=list)  # (when, model version): non-degraded answers
    events_ok: list[float] = field(default_factory=list)  # when each event was accepted
    slowest: tuple[float, str, float] = (0.0, "", 0.0)  # (seconds, what, when): a hang shows here, not as an error
    unplanned: list[str] = field(default_factory=list)  # why Triton was found down when no fault had it down

    def degraded_between(self, start: float, end: float) -> int:
        return sum(start <= t <= end for t in self.degraded)


def _redis(port: int, folder: Path) -> subprocess.Popen:
    """This run's Redis. `appendfsync always`: an event acknowledged is on disk, and survives the restart."""
    folder.mkdir(parents=True, exist_ok=True)
    return start_redis(port, "--dir", str(folder), "--appendonly", "yes", "--appendfsync", "always")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


def chaos_settings(settings: Settings, root: Path, redis_port: int) -> Settings:
    """`settings` moved to `root` and free ports: its own Feast project, Redis, Triton, Serve and rules."""
    from seasonrec.export.repository import ModelRepository

    features = settings.paths.features
    if not (features / f"{s.ITEM_PROFILE}.parquet").is_file():
        raise SeasonrecError(f"{features}: no features; run `seasonrec features build` (or `make demo`) first")
    repository = settings.paths.resolve(settings.triton.repository)
    versions = ModelRepository(repository, settings.triton.model).versions()
    if not versions:
        raise SeasonrecError(f"{repository}: no model version; run `seasonrec export` (or `make demo`) first")
    shutil.copytree(features, root / "features")
    # Only the newest version: the run publishes another beside it, never into the shop's repository.
    model = root / "repository" / settings.triton.model
    shutil.copytree(repository / settings.triton.model, model, ignore=shutil.ignore_patterns("[0-9]*", ".staging*"))
    shutil.copytree(repository / settings.triton.model / str(versions[-1]), model / "1")
    rules = root / "rules.yaml"
    shutil.copy(settings.paths.resolve(settings.serving.rules_path), rules)
    return settings.model_copy(
        update={
            "paths": settings.paths.model_copy(update={"data_dir": root}),
            "feast": settings.feast.model_copy(
                update={
                    "profile": "redis",
                    "redis_connection": f"127.0.0.1:{redis_port}",
                    "redis_password": None,  # this run's own Redis asks for none
                    "project": f"chaos_{uuid.uuid4().hex[:8]}",
                }
            ),
            "triton": settings.triton.model_copy(update={"repository": root / "repository", **free_ports()}),
            "serving": settings.serving.model_copy(update={"port": free_port(), "rules_path": rules}),
        }
    )


class ChaosRun:
    """The stack under test and the faults done to it."""

    def __init__(self, settings: Settings, root: Path):
        self.root = root
        self.redis_port = free_port()
        self.redis_dir = root / "redis"
        self.settings = chaos_settings(settings, root, self.redis_port)
        self.redis: subprocess.Popen | None = None
        self.stack = None

    def start(self) -> None:
        from seasonrec.features import store as feast_store
        from seasonrec.serving.stack import ServeStack

        self.redis = _redis(self.redis_port, self.redis_dir)
        feast_store.apply(self.settings)
        feast_store.materialize(self.settings)
        self.stack = ServeStack(self.settings)
        self.stack.start()

    def close(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        if self.redis is not None:
            _stop(self.redis)

    def supervise(self) -> str | None:
        """What Kubernetes does between faults: a Triton found down unasked is started again.

        Returns the last error in its log when it had to, so the summary says what went wrong
        instead of the next fault failing on a server that is no longer there.
        """
        from seasonrec.triton.server import TritonServer, last_error

        triton = TritonServer(self.settings)
        if triton.state() is not None:
            return None
        why = last_error(triton.log)
        triton.stop()  # clears the stale state
        triton.start()
        return why

    # --- the faults: each returns once its repair is done -----------------------------------------
    def kill_triton(self, down_s: float) -> None:
        from seasonrec.triton.server import TritonServer

        triton = TritonServer(self.settings)
        os.killpg(triton.state()["pid"], signal.SIGKILL)
        time.sleep(down_s)
        triton.stop()  # the recorded server is gone: this only clears its state
        triton.start()

    def restart_redis(self, down_s: float) -> None:
        _stop(self.redis)
        time.sleep(down_s)
        self.redis = _redis(self.redis_port, self.redis_dir)

    def break_rules(self, down_s: float) -> None:
        path = self.settings.serving.rules_path
        good = path.read_text()
        path.write_text("campaigns: [{name: broken, start: 2024-12-30, end: 2024-12-01}]\n")
        time.sleep(down_s)
        path.write_text(good)

    def swap_model(self, down_s: float) -> str:
        from seasonrec.export.repository import ModelRepository
        from seasonrec.triton.server import TritonServer

        repository = ModelRepository(self.settings.triton.repository, self.settings.triton.model)
        live = repository.versions()[-1]
        target = repository.next_version()
        with repository.staging(target) as stage:
            shutil.copytree(repository.model_dir / str(live), stage, dirs_exist_ok=True)
        TritonServer(self.settings).swap(target)
        return str(target)


FAULTS = ("kill_triton", "restart_redis", "break_rules", "swap_model")


async def _load(run: ChaosRun, token: str, tally: Tally, stop: asyncio.Event, requests: int) -> None:
    import httpx
    import polars as pl

    from seasonrec.features.store import sample_users

    settings = run.settings
    users = sample_users(settings, 2_000)
    items = pl.read_parquet(settings.paths.features / f"{s.ITEM_PROFILE}.parquet", columns=[s.ITEM_ID])
    catalogue = items[s.ITEM_ID].unique().sort().to_list()
    base = f"http://{settings.serving.host}:{settings.serving.port}"
    auth = {"Authorization": f"Bearer {token}"}

    async def timed(call, what: str) -> httpx.Response:
        started = time.monotonic()
        try:
            return await call
        finally:
            took = time.monotonic() - started
            if took > tally.slowest[0]:
                tally.slowest = (took, what, started)

    async def event(http: httpx.AsyncClient, n: int) -> None:
        user, item = users[n % len(users)], catalogue[(n * 7919) % len(catalogue)]
        while True:
            at = datetime.now(UTC).replace(microsecond=0)
            body = {"user_id": user, "item_id": item, "event_type": "purchase", "at": at.isoformat()}
            reply = await timed(http.post(f"{base}/v1/events", json=body, headers=auth), "event")
            tally.statuses["event", reply.status_code] += 1
            if reply.status_code == 200:
                tally.accepted.append((user, item, int(at.timestamp())))
                tally.events_ok.append(time.monotonic())
                return
            if reply.status_code != 503 or stop.is_set():
                tally.unaccepted += 1
                return
            tally.refused_events += 1
            await asyncio.sleep(float(reply.headers.get("retry-after", "0.2") or 0.2))

    async def recommend(http: httpx.AsyncClient, n: int) -> None:
        body = {"user_id": users[n % len(users)], "k": 10, "region": "GB", "at": AT}
        reply = await timed(http.post(f"{base}/v1/recommendations", json=body), "recommendation")
        tally.statuses["recommendation", reply.status_code] += 1
        if reply.status_code == 200:
            answer = reply.json()
            if answer["degraded"]:
                tally.degraded.append(time.monotonic())
            else:
                tally.healthy.append((time.monotonic(), answer["model_version"]))

    async def client() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while not stop.is_set() and tally.sent < requests:
                n = tally.sent
                tally.sent += 1
                try:
                    await (event(http, n // EVENT_EVERY) if n % EVENT_EVERY == 0 else recommend(http, n))
                except httpx.HTTPError:
                    tally.transport_errors += 1

    await asyncio.gather(*(client() for _ in range(4)))


def _lost(settings: Settings, accepted: list[tuple[str, str, int]]) -> int:
    """Accepted events missing from the online history."""
    from seasonrec.serving.fetcher import FeatureReader

    reader = FeatureReader(settings)
    wanted: dict[str, Counter] = {}
    for user, item, at in accepted:
        wanted.setdefault(user, Counter())[(item, at)] += 1
    lost = 0
    for user, events in wanted.items():
        row = reader.user(user)
        found = Counter(zip(row.get(s.HISTORY_ITEM_IDS) or [], row.get(s.HISTORY_TS) or [], strict=False))
        lost += sum((events - found).values())
    return lost


async def _drive(run: ChaosRun, token: str, seconds: float, requests: int) -> tuple[Tally, list[Fault]]:
    tally, stop, faults = Tally(), asyncio.Event(), []
    load = asyncio.create_task(_load(run, token, tally, stop, requests))
    # Evenly spaced through the run, each fault down for a tenth of its slot.
    slot = seconds / (len(FAULTS) + 1)
    for name in progress(FAULTS, description="faults"):
        await asyncio.sleep(slot * 0.9)
        if (why := await asyncio.to_thread(run.supervise)) is not None:
            tally.unplanned.append(why)
        fault = Fault(name, time.monotonic())
        fault.version = await asyncio.to_thread(getattr(run, name), slot * 0.1)
        fault.repaired = time.monotonic()
        faults.append(fault)
    await asyncio.sleep(slot)
    stop.set()
    await load
    for fault in faults:
        fault.recovered = _recovered(fault, tally)
    return tally, faults


def _recovered(fault: Fault, tally: Tally) -> float | None:
    """When the service was whole again after the repair: a non-degraded recommendation (from the new
    version, after a swap), and after a Redis outage also an accepted event; None if that never came."""
    answers = (t for t, version in tally.healthy if t >= fault.repaired and fault.version in (None, version))
    first = next(answers, None)
    if fault.name == "restart_redis":
        event = next((t for t in tally.events_ok if t >= fault.repaired), None)
        return None if first is None or event is None else max(first, event)
    return first


def run_chaos(settings: Settings, seconds: float, requests: int) -> tuple[Tally, list[Fault], int]:
    """The whole run; returns what the clients saw, the faults and how many accepted events were lost."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would bury the summary
    root = settings.paths.root / "chaos" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    root.mkdir(parents=True)
    run = ChaosRun(settings, root)
    try:
        run.start()
        tally, faults = asyncio.run(_drive(run, run.stack.write_token(), seconds, requests))
        lost = _lost(run.settings, tally.accepted)
    finally:
        run.close()
    shutil.rmtree(root, ignore_errors=True)
    return tally, faults, lost


def _when(at: float, faults: list[Fault]) -> str:
    """Which fault's window (injection to recovery) a moment falls in."""
    for fault in faults:
        if fault.injected <= at <= (fault.recovered or float("inf")):
            return f"during {fault.name}"
    return "between faults"


def server_errors(tally: Tally, kind: str, but: int | None = None) -> int:
    return sum(n for (k, code), n in tally.statuses.items() if k == kind and code >= 500 and code != but)


def bench_chaos(settings: Settings, args) -> tuple[str, list[dict]]:
    tally, faults, lost = run_chaos(settings, args.seconds, args.requests)
    rows = [
        {"measure": "requests sent", "value": tally.sent},
        {"measure": "5xx to recommendations", "value": server_errors(tally, "recommendation")},
        {"measure": "5xx to events other than 503", "value": server_errors(tally, "event", but=503)},
        {"measure": "503 to events (store down: not recorded, retried)", "value": tally.refused_events},
        {"measure": "transport errors", "value": tally.transport_errors},
        {"measure": "degraded answers", "value": len(tally.degraded)},
        {
            "measure": "slowest answer s",
            "value": f"{tally.slowest[0]:.1f} ({tally.slowest[1]}, {_when(tally.slowest[2], faults)})",
        },
        {"measure": "events accepted", "value": len(tally.accepted)},
        {"measure": "accepted events found in the history", "value": len(tally.accepted) - lost},
        {"measure": "events never accepted (run ended)", "value": tally.unaccepted},
        {"measure": "Triton found down unasked, restarted (its last log error)", "value": tally.unplanned or 0},
    ]
    for fault in faults:
        recovered = "never" if fault.recovered is None else f"{fault.recovered - fault.injected:.1f}"
        rows.append(
            {
                "measure": f"{fault.name}: repair took s / healthy again after injection s / degraded answers",
                "value": f"{fault.repaired - fault.injected:.1f} / {recovered} / "
                f"{tally.degraded_between(fault.injected, fault.recovered or float('inf'))}",
            }
        )
    title = f"Chaos: closed loop, concurrency 4, at most {args.requests} requests or {args.seconds:.0f} s"
    return title, rows
