"""The HTTP API under closed-loop load on loopback, next to its three stages timed directly.

Closed loop: each of C clients sends its next request as soon as the last one
answers. Every level is bounded both by a request count and by time.
"""

from __future__ import annotations

import asyncio
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
    import httpx

    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.monotonic() + seconds

    async def client(worker: int) -> None:
        nonlocal errors, sent
        async with httpx.AsyncClient(timeout=30, headers=headers) as http:
            while sent < requests and time.monotonic() < deadline:
                body = bodies[(sent + worker) % len(bodies)]
                sent += 1
                started = time.perf_counter()
                try:
                    reply = await http.post(url, json=body)
                    ok = reply.status_code == 200 and not reply.json()["degraded"]
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - started) * 1000)
                errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(client(w) for w in range(concurrency)))
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
            rerank(rows, book.current(), body["k"], AT, fetched["region"], purchases(fetched["user"]))
            t3 = time.perf_counter()
            if i >= 10:
                for name, span in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    times[name].append(span * 1000)
        await scorer.client.close()

    asyncio.run(run())
    return {name: float(np.percentile(v, 50)) for name, v in times.items()}


def _floor(base: str, bodies: list[dict], args, stack, sessions: list[int]) -> list[tuple[dict, dict]]:
    """The same graph with no work in it (`bench.floor`), deployed beside the app for this run only."""
    import httpx

    from seasonrec.bench.floor import APP_NAME, ROUTE

    stack.run_driver(
        "from seasonrec.bench.floor import build_app\n"
        f"serve.run(build_app(), name={APP_NAME!r}, route_prefix={ROUTE!r}, blocking=False)"
    )
    url = f"{base}{ROUTE}/v1/recommendations"
    try:
        # HAProxy learns the new route when Serve next broadcasts its routes: allow it time.
        deadline = time.monotonic() + 180
        while httpx.post(url, json=bodies[0], timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise SeasonrecError(f"{url}: the no-work graph did not answer within 180 s")
            time.sleep(1)
        levels = progress([1, 4], description="no-work graph")
        return [_measured(stack.settings, url, bodies, c, args, sessions) for c in levels]
    finally:
        stack.run_driver(f"serve.delete({APP_NAME!r})")


def _sessions(stack) -> list[int]:
    """The stack's processes: the Ray head's session, and Triton's."""
    from seasonrec.triton.server import TritonServer

    state = stack.state()
    if state is None:
        raise SeasonrecError(f"{stack.state_file}: no stack recorded; bench serve measures the one `serve start` runs")
    triton = TritonServer(stack.settings).state()
    return [state["ray_pid"], *([triton["pid"]] if triton else [])]


def bench_serve(settings: Settings, args) -> tuple[str, list[dict]]:
    import httpx

    base = f"http://{settings.serving.host}:{settings.serving.port}"
    try:
        httpx.get(f"{base}/readyz", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise SeasonrecError(f"{base}/readyz: not ready ({type(exc).__name__}); run `seasonrec serve start`") from exc
    from seasonrec.serving.stack import ServeStack

    stack = ServeStack(settings)
    sessions = _sessions(stack)
    bodies = _bodies(settings, args.candidates_per_request)
    rows, profiles = [], {}
    for concurrency in progress([1, 4, 16], description="closed-loop load"):
        url = f"{base}/v1/recommendations"
        result, profiles[concurrency] = _measured(settings, url, bodies, concurrency, args, sessions)
        rows.append({"measure": "end to end, HTTP", **result})
    floor = _floor(base, bodies, args, stack, sessions)
    rows.extend({"measure": "same graph, no work in it", **result} for result, _ in floor)
    stages = _stages(settings, bodies)
    total = sum(stages.values())
    e2e, floor_e2e = rows[0]["p50_ms"], floor[0][0]["p50_ms"]
    blank = {k: "" for k in list(rows[0])[1:]}
    spans = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
    notes = [
        f"stages called directly, p50 ms: {spans}; sum {total:.1f}",
        f"serving overhead: end-to-end p50 (c=1) / sum of stages = {e2e / total:.2f}",
        # The app does all the no-work graph does and more, so this bounds the overhead from below.
        f"no-work graph p50 (c=1) / sum of stages = {floor_e2e / total:.2f}"
        " (the least serving overhead this graph can have here)",
        _breakdown("CPU ms a request by process, c=4, the app", profiles[4]),
        _breakdown("CPU ms a request by process, c=4, no-work graph", floor[1][1]),
    ]
    rows.extend({"measure": note, **blank} for note in notes)
    title = (
        f"HTTP API, closed loop on loopback, {args.candidates_per_request} candidates a request, "
        f"at most {args.requests} requests or {args.seconds:.0f} s per level"
    )
    return title, rows
