"""`seasonrec bench ...`: measurements, recorded in docs/benchmarks.md with machine, command and date.

One module per subject: pipeline stages (ingest, generate, features, train),
Feast online reads, and model scoring. Benchmarks are not tests: they measure,
and they compare side by side in one run, because the machine is shared.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from seasonrec.config import PROJECT_ROOT, Settings

BENCHMARKS_MD = PROJECT_ROOT / "docs" / "benchmarks.md"


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, Python {platform.python_version()}"


def percentiles(fn, requests: int, warmup: int = 5) -> dict:
    """p50 and p99 in ms of `requests` timed calls of `fn`, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p99_ms": round(float(np.percentile(times, 99)), 2)}


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def record(title: str, command: str, rows: list[dict]) -> str:
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    section = f"\n## {title}\n\n- Command: `{command}`\n- Machine: {machine()}\n- Date: {today}\n\n{_table(rows)}\n"
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text("# Benchmarks\n\nEvery figure here was written by `seasonrec bench ...`.\n")
    with BENCHMARKS_MD.open("a") as f:
        f.write(section)
    return section


def run(what: str, settings: Settings, args) -> dict:
    from seasonrec.bench import chaos, evaluation, online, page, pipeline, scoring, serve

    if what == "ingest":
        title, rows = pipeline.bench_ingest(settings, args.input)
    elif what == "generate":
        title, rows = pipeline.bench_generate(settings, args.users)
    elif what == "train":
        title, rows = pipeline.bench_train(settings, args.training_set)
    elif what == "features":
        title, rows = pipeline.bench_features(settings, args.events)
    elif what == "serve":
        title, rows = serve.bench_serve(settings, args)
    elif what == "evaluate":
        title, rows = evaluation.bench_evaluate(settings, args.shape)
    elif what == "chaos":
        title, rows = chaos.bench_chaos(settings, args)
    elif what == "scoring":
        title, rows = scoring.bench_scoring(settings, args)
    elif what == "page":
        title, rows = page.bench_page(settings, args)
    else:
        title, rows = online.bench_online(settings, args.items, args.requests)
    command = "seasonrec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if not args.no_record:
        record(title, command, rows)
    return {"title": title, "rows": rows}
