"""The HTTP API under closed-loop load on loopback, next to its three stages timed directly.

Closed loop: each of C clients sends its next request as soon as the last one
answers. Every level is bounded both by a request count and by time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.processes import session_members
from seasonrec.progress import progress
from seasonrec.serving.demo import read_headers

AT = datetime(2024, 12, 10, 12, tzinfo=UTC)
TOPOLOGIES = ("fused", "graph")
# Each topology with its work taken out (`bench/floor.py`): what HTTP and Serve alone cost it.
FLOORS = {"no-work fused": "fused", "no-work graph": "graph"}
LEVELS = (1, 4, 16)
WARMUP = 50  # requests to a freshly deployed application before it is timed


def _bodies(settings: Settings, n_candidates: int, users: int = 50) -> list[dict]:
    import polars as pl

    from seasonrec import schema as s
    from seasonrec.features.store import sample_users

    items = pl.read_parquet(settings.paths.features / f"{s.ITEM_PROFILE}.parquet", columns=[s.ITEM_ID])
    catalogue = items[s.ITEM_ID].unique().sort().to_list()
    rng = np.random.default_rng(0)
    return [
        {
            "user_id": user,
            "k": 10,
            "region": "GB",
            "at": AT.isoformat(),
            "candidates": list(rng.choice(catalogue, size=min(n_candidates, len(catalogue)), replace=False)),
        }
        for user in sample_users(settings, users)
    ]


async def _load(
    url: str, bodies: list[dict], concurrency: int, requests: int, seconds: float, headers: dict[str, str]
) -> dict:
    """Closed loop with aiohttp and bodies encoded once: the load generator shares the machine's cores with
    the server, and httpx cost it 3 times the CPU a request (2.0 against 0.6 ms, docs/benchmarks.md)."""
    import aiohttp

    payloads = [json.dumps(body).encode() for body in bodies]
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.monotonic() + seconds

    async def client(worker: int, http: aiohttp.ClientSession) -> None:
        nonlocal errors, sent
        while sent < requests and time.monotonic() < deadline:
            payload = payloads[(sent + worker) % len(payloads)]
            sent += 1
            started = time.perf_counter()
            try:
                async with http.post(url, data=payload) as reply:
                    ok = reply.status == 200 and not (await reply.json())["degraded"]
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            errors += not ok

    started = time.perf_counter()
    # One connection per client, as each closed-loop client would hold.
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {**headers, "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as http:
        await asyncio.gather(*(client(w, http) for w in range(concurrency)))
    wall = time.perf_counter() - started
    ms = np.array(latencies)
    return {
        "concurrency": concurrency,
        "requests": len(ms),
        "errors or degraded": errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "requests/s": round(len(ms) / wall, 1),
    }


def _role(pid: int, cmdline: str) -> str:
    if pid == os.getpid():
        return "load generator"
    if "ServeReplica:" in cmdline:  # ray::ServeReplica:<app>:<deployment>
        return cmdline.split("ServeReplica:", 1)[1].split(":", 1)[1].split()[0]
    for needle, role in (("backend_stub", "Triton stub"), ("tritonserver", "Triton server"), ("haproxy", "HAProxy")):
        if needle in cmdline:
            return role
    return "Ray itself"


def _cpu_seconds(sessions: list[int]) -> Counter:
    """CPU seconds so far of every process of the stack's sessions, and of this load generator, by role."""
    tick = os.sysconf("SC_CLK_TCK")
    used: Counter = Counter()
    for pid in {os.getpid(), *(p for sid in sessions for p in session_members(sid))}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended meanwhile
            continue
        used[_role(pid, cmdline)] += (int(fields[11]) + int(fields[12])) / tick
    return used


def _measured(
    settings: Settings, url: str, bodies: list[dict], concurrency: int, args, sessions: list[int]
) -> tuple[dict, dict]:
    """One load level, with the CPU each role spent on it (ms a request)."""
    before = _cpu_seconds(sessions)
    result = asyncio.run(_load(url, bodies, concurrency, args.requests, args.seconds, read_headers(settings)))
    spent = _cpu_seconds(sessions) - before
    per_request = {role: 1000 * sec / result["requests"] for role, sec in spent.most_common()}
    return {**result, "CPU ms/request": round(sum(per_request.values()), 1)}, per_request


def _breakdown(label: str, per_request: dict[str, float]) -> str:
    return f"{label}: " + ", ".join(f"{role} {ms:.1f}" for role, ms in per_request.items() if ms >= 0.05)


def _stages(settings: Settings, bodies: list[dict], repeats: int = 200) -> dict[str, float]:
    """p50 ms of each stage called directly, in process: Feast fetch, Triton score, re-rank."""
    from seasonrec.serving.fetcher import FeatureReader
    from seasonrec.serving.rules import RuleBook, from_columns, purchases, rerank
    from seasonrec.serving.scorer import Scorer, scored_columns

    reader = FeatureReader(settings)
    book = RuleBook(settings.paths.resolve(settings.serving.rules_path))
    times: dict[str, list[float]] = {"fetch": [], "score": [], "rerank": []}

    async def run() -> None:
        scorer = Scorer(settings)
        for i in range(repeats + 10):
            body = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            fetched = reader.request(body["user_id"], body["region"], AT, body["candidates"])
            t1 = time.perf_counter()
            scores, _ = await scorer.score(fetched)
            t2 = time.perf_counter()
            rows = from_columns(scored_columns(fetched, scores))
            rerank(rows, book.current(), body["k"], AT, fetched.region, purchases(fetched.user))
            t3 = time.perf_counter()
            if i >= 10:
                for name, span in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    times[name].append(span * 1000)
        await scorer.client.close()

    asyncio.run(run())
    return {name: float(np.percentile(v, 50)) for name, v in times.items()}


@contextlib.contextmanager
def _deployed(stack, code: str, name: str, route: str, body: dict):
    """An extra application beside the stack's own, for this run only: yields its recommendations URL."""
    import httpx

    stack.run_driver(f"{code}\nserve.run(app, name={name!r}, route_prefix={route!r}, blocking=False)")
    base = f"http://{stack.settings.serving.host}:{stack.settings.serving.port}"
    url = f"{base}{route}/v1/recommendations"
    try:
        # HAProxy learns the new route when Serve next broadcasts its routes: allow it time. Then warm it up:
        # a new replica's first answers (connections, caches) are not what a running service costs.
        deadline = time.monotonic() + 180
        with httpx.Client(headers=read_headers(stack.settings), timeout=30) as http:
            while not _answers(http.post(url, json=body)):
                if time.monotonic() > deadline:
                    raise SeasonrecError(f"{url}: the {name} application did not answer within 180 s")
                time.sleep(1)
            for _ in range(WARMUP):
                http.post(url, json=body)
        yield url
    finally:
        stack.run_driver(f"serve.delete({name!r})")


def _answers(reply) -> bool:
    """A full answer: the no-work graph's or one the model scored, not the seasonal fallback."""
    return reply.status_code == 200 and not reply.json()["degraded"]


def _app_code(stack, topology: str) -> str:
    """The driver code that builds `app`: a topology of the real application, or its no-work copy."""
    if topology in FLOORS:
        return f"from seasonrec.bench.floor import build_app\napp = build_app({FLOORS[topology]!r})"
    settings_file = stack.state()["settings"]
    return (
        "from seasonrec.serving.app import build_app, AppArgs\n"
        f"app = build_app(AppArgs(config={settings_file!r}, topology={topology!r}))"
    )


def _sessions(stack) -> list[int]:
    """The stack's processes: the Ray head's session, and Triton's."""
    from seasonrec.triton.server import TritonServer

    state = stack.state()
    if state is None:
        raise SeasonrecError(f"{stack.state_file}: no stack recorded; bench serve measures the one `serve start` runs")
    triton = TritonServer(stack.settings).state()
    return [state["ray_pid"], *([triton["pid"]] if triton else [])]


def bench_serve(settings: Settings, args) -> tuple[str, list[dict]]:
    """Both topologies and the no-work graph, each deployed beside the stack for this run, one after another."""
    import httpx

    base = f"http://{settings.serving.host}:{settings.serving.port}"
    try:
        httpx.get(f"{base}/readyz", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise SeasonrecError(f"{base}/readyz: not ready ({type(exc).__name__}); run `seasonrec serve start`") from exc
    from seasonrec.serving.stack import ServeStack

    stack = ServeStack(settings)
    sessions = _sessions(stack)
    try:
        counts = [int(c) for c in str(args.candidates_per_request).split(",")]
    except ValueError:
        raise SeasonrecError(
            f"--candidates-per-request: {args.candidates_per_request!r} is not a comma list of numbers"
        ) from None
    rows: list[dict] = []
    p50: dict[tuple[str, int], float] = {}
    notes: list[str] = []
    for count in counts:
        bodies = _bodies(settings, count)
        stages = _stages(settings, bodies)
        total = sum(stages.values())
        notes.append(f"{count} candidates, stages called directly, p50 ms: " + _spans(stages) + f"; sum {total:.1f}")
        for topology in (*TOPOLOGIES, *FLOORS):
            name = f"bench-{topology.replace(' ', '-')}"
            with _deployed(stack, _app_code(stack, topology), name, f"/{name}", bodies[0]) as url:
                for concurrency in progress(LEVELS, description=f"{topology}, {count} candidates"):
                    result, cpu = _measured(settings, url, bodies, concurrency, args, sessions)
                    rows.append({"topology": topology, "candidates": count, **result})
                    if concurrency == 4:
                        label = f"CPU ms a request by process, {topology}, {count} candidates, c=4"
                        notes.append(_breakdown(label, cpu))
            p50[topology, count] = next(r["p50_ms"] for r in rows[-len(LEVELS) :] if r["concurrency"] == 1)
        for topology in (*TOPOLOGIES, *FLOORS):
            # A no-work copy does all its topology's hops and none of its work: a floor on that one's overhead.
            notes.append(
                f"{count} candidates, {topology}: serving overhead, end-to-end p50 (c=1) / sum of stages ="
                f" {p50[topology, count] / total:.2f}"
            )
        for floor, topology in FLOORS.items():
            notes.append(
                f"{count} candidates, {topology}: end-to-end p50 (c=1) above its no-work copy's"
                f" {p50[topology, count] - p50[floor, count]:.1f} ms, against the stages' sum {total:.1f} ms"
            )
    blank = {k: "" for k in list(rows[0])[1:]}
    rows.extend({"topology": note, **blank} for note in notes)
    title = (
        f"HTTP API by topology, closed loop on loopback, at most {args.requests} requests or"
        f" {args.seconds:.0f} s per level"
    )
    return title, rows


def _spans(stages: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
