"""`seasonrec bench ...`: measurements, recorded in docs/benchmarks.md with machine, command and date.

Each pipeline stage runs in its own process so its wall time and peak memory
(max RSS, from the kernel's rusage for that child) are its own.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from seasonrec import schema as s
from seasonrec.config import PROJECT_ROOT, Settings
from seasonrec.errors import SeasonrecError
from seasonrec.progress import progress

BENCHMARKS_MD = PROJECT_ROOT / "docs" / "benchmarks.md"
# Measured on the generator's defaults: about 11.8 events per user over two years.
EVENTS_PER_USER = 11.8


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


def _stage(data_dir: Path, *args: str, encoder: str | None = None) -> dict:
    """Run `seasonrec ARGS` in a child process; return its seconds and peak RSS in MiB."""
    env = dict(os.environ, SEASONREC__PATHS__DATA_DIR=str(data_dir))
    if encoder:
        env["SEASONREC__FEATURES__TITLE_ENCODER"] = encoder
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "seasonrec.cli", "--log-level", "WARNING", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SeasonrecError(f"bench stage `seasonrec {' '.join(args)}` failed: {proc.stderr.read().strip()[-400:]}")
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024)}


def _pipeline(data_dir: Path, ingest_args: list[str], encoder: str | None) -> dict:
    return {
        "ingest": _stage(data_dir, "data", "ingest", *ingest_args),
        "features build": _stage(data_dir, "features", "build", encoder=encoder),
    }


def bench_ingest(settings: Settings, input_path: Path | None) -> tuple[str, list[dict]]:
    from seasonrec.config import PROJECT_ROOT as root

    path = input_path or root.parent / "shared" / "data" / "online_retail_ii" / "online_retail_II_2009_2010.parquet"
    if not path.is_file():
        raise SeasonrecError(f"{path}: Online Retail II file not found (give --input)")
    data_dir = settings.paths.root / "bench-online-retail"
    stages = _pipeline(data_dir, ["--source", "online-retail", "--input", str(path)], None)
    summary = (data_dir / "canonical" / "summary.json").read_text()
    rows = [{"stage": k, **v} for k, v in stages.items()]
    return f"Online Retail II ingest and features ({path.name})\n\nSummary: `{' '.join(summary.split())}`", rows


def bench_features(settings: Settings, events: int) -> tuple[str, list[dict]]:
    users = math.ceil(events / EVENTS_PER_USER)
    data_dir = settings.paths.root / "bench-synthetic"
    stages = {"generate": _stage(data_dir, "data", "generate", "--users", str(users), "--items", "2000")}
    stages.update(_pipeline(data_dir, ["--source", "canonical", "--input", str(data_dir / "raw")], None))
    summary = (data_dir / "canonical" / "summary.json").read_text()
    rows = [{"stage": k, **v} for k, v in stages.items()]
    return f"Synthetic shop, {users:,} users, 2,000 items\n\nSummary: `{' '.join(summary.split())}`", rows


def bench_generate(settings: Settings, users: int) -> tuple[str, list[dict]]:
    data_dir = settings.paths.root / "bench-generate"
    stage = _stage(data_dir, "data", "generate", "--users", str(users), "--items", "2000")
    parts = sorted((data_dir / "raw" / s.EVENTS_TABLE).glob("*.parquet"))
    import polars as pl

    events = pl.scan_parquet(parts).select(pl.len()).collect().item()
    rows = [{"stage": "generate", "users": f"{users:,}", "events": f"{events:,}", "parts": len(parts), **stage}]
    return f"Synthetic generator at scale, {users:,} users (written in chunks)", rows


def _percentiles(fn, requests: int) -> dict:
    for _ in range(5):
        fn()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p99_ms": round(float(np.percentile(times, 99)), 2)}


def _entity_keys(view, items: list[str], region: str) -> list:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    keys = [c.name for c in view.entity_columns]
    values = {s.ITEM_ID: lambda i: Value(string_val=i), s.REGION: lambda _: Value(string_val=region)}
    return [EntityKey(join_keys=keys, entity_values=[values[k](i) for k in keys]) for i in items]


ITEM_REFS = [
    f"{view}:{name}"
    for view, names in (
        (s.ITEM_PROFILE, s.ITEM_PROFILE_FEATURES),
        (s.ITEM_DEMAND, s.ITEM_DEMAND_FEATURES),
        (s.REGION_ITEM_TRENDS, s.REGION_ITEM_FEATURES),
    )
    for name in names
]


def _online_calls(fs, user: str, items: list[str], region: str) -> dict:
    """The ways to fetch ranker inputs for one request, each a no-argument callable."""
    from seasonrec.features.context import seasonal_context
    from seasonrec.features.store import USER_FEATURES

    ts = int(datetime.now(UTC).timestamp())
    full = [{s.USER_ID: user, s.ITEM_ID: i, s.REGION: region, s.REQUEST_TS: ts} for i in items]
    item_rows = [{s.ITEM_ID: i, s.REGION: region} for i in items]
    service = fs.get_feature_service(s.RANKER_SERVICE)
    provider = fs._get_provider()
    item_views = [fs.get_feature_view(v) for v in (s.ITEM_PROFILE, s.ITEM_DEMAND, s.REGION_ITEM_TRENDS)]
    keys = {v.name: _entity_keys(v, items, region) for v in item_views}

    def user_only():
        return fs.get_online_features(features=USER_FEATURES, entity_rows=[{s.USER_ID: user}]).to_dict()

    def items_only():
        return fs.get_online_features(features=ITEM_REFS, entity_rows=item_rows).to_dict()

    def split_fetch():
        # One user lookup, one item lookup, and the seasonal context computed in-process.
        u, it = user_only(), items_only()
        n = len(items)
        seasonal_context(
            {
                s.REQUEST_TS: [ts] * n,
                s.REGION: [region] * n,
                s.DEMAND_BY_WEEK: it[s.DEMAND_BY_WEEK],
                s.LAUNCH_TS: it[s.LAUNCH_TS],
                s.HISTORY_TS: u[s.HISTORY_TS] * n,
            }
        )

    def raw_reads(views=item_views):
        # The store round trips alone: what remains once Feast's response building is gone.
        for view in views:
            provider.online_read(fs.config, view, keys[view.name])

    n = len(items)
    return {
        f"ranker_v1 service, 1 user + {n} items (Feast SDK)": lambda: fs.get_online_features(
            features=service, entity_rows=full
        ).to_dict(),
        "user views only (1 row)": user_only,
        f"item + region views, {n} rows, no on-demand view": items_only,
        f"split fetch: user once + items once + context in-process ({n} items)": split_fetch,
        f"store reads only (provider.online_read, 3 item views, {n} keys)": raw_reads,
        # Titles, embeddings and prices change only when materialized, so a server can keep them in memory.
        f"store reads only, item profile cached in process (2 views, {n} keys)": lambda: raw_reads(item_views[1:]),
    }


def bench_online(settings: Settings, n_items: int, requests: int) -> tuple[str, list[dict]]:
    import polars as pl

    from seasonrec.features import store as feast_store

    profile_table = settings.paths.features / f"{s.ITEM_PROFILE}.parquet"
    if not profile_table.is_file():
        raise SeasonrecError(
            f"{profile_table}: no feature tables; run `make demo` (or `seasonrec features build`) first"
        )
    items = pl.read_parquet(profile_table)[s.ITEM_ID].to_list()[:n_items]
    user = feast_store.sample_users(settings, 1)[0]
    rows = []
    for profile in progress(["embedded", "redis"], description="online fetch per store"):
        bench = settings.model_copy(
            update={
                "feast": settings.feast.model_copy(update={"profile": profile, "project": f"bench_{profile}"}),
                "paths": settings.paths.model_copy(
                    update={"data_dir": settings.paths.root / f"bench-online-{profile}"}
                ),
            }
        )
        bench.paths.root.mkdir(parents=True, exist_ok=True)
        # The bench store reads the same offline tables through a link.
        if not bench.paths.features.exists():
            bench.paths.features.symlink_to(settings.paths.features.resolve())
        feast_store.apply(bench)
        feast_store.materialize(bench)
        fs = feast_store.open_store(bench)
        calls = _online_calls(fs, user, items, region="GB")
        # As a server does after start-up: keep the warm heap out of the cyclic GC, whose
        # full collections otherwise add 200 ms pauses to about 1% of requests here.
        gc.collect()
        gc.freeze()
        store_name = "SQLite" if profile == "embedded" else "Redis"
        rows += [{"store": store_name, "call": name, **_percentiles(fn, requests)} for name, fn in calls.items()]
        if profile == "redis":
            fs.teardown()
    return f"Feast online fetch, 1 user + {n_items} items, {requests} timed requests per line", rows


def bench_train(settings: Settings, training_set: Path | None, epochs: int = 2) -> tuple[str, list[dict]]:
    """Training throughput in-process and with 1 and 2 Ray Train CPU workers, on the same groups."""
    import json

    from seasonrec.model.protocol import fit_checkpoint, train_options
    from seasonrec.model.train import HISTORY_FILE

    if training_set is None or not Path(training_set).is_file():
        raise SeasonrecError("bench train needs --training-set PATH (from `seasonrec features training-set`)")
    options = train_options(settings, epochs=epochs)
    rows = []
    for workers in progress([0, 1, 2], description="training throughput"):
        out = settings.paths.root / f"bench-train-{workers}"
        started = time.perf_counter()
        fit_checkpoint(settings, Path(training_set), out, options, workers)
        wall = time.perf_counter() - started
        history = json.loads((out / HISTORY_FILE).read_text())["epochs"]
        per_worker = float(np.mean([e["groups_per_second"] for e in history]))
        groups = per_worker * max(workers, 1)
        rows.append(
            {
                "mode": "in-process, no Ray" if workers == 0 else f"Ray Train, {workers} CPU worker(s), gloo DDP",
                "groups/s": round(groups),
                "samples/s (8 candidates a group)": round(groups * 8),
                "wall seconds (incl. start-up)": round(wall, 1),
            }
        )
    return f"Ranker training throughput, {epochs} epochs ({Path(training_set).name})", rows


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
    if what == "ingest":
        title, rows = bench_ingest(settings, args.input)
    elif what == "generate":
        title, rows = bench_generate(settings, args.users)
    elif what == "train":
        title, rows = bench_train(settings, args.training_set)
    elif what == "features":
        title, rows = bench_features(settings, args.events)
    else:
        title, rows = bench_online(settings, args.items, args.requests)
    command = "seasonrec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if not args.no_record:
        record(title, command, rows)
    return {"title": title, "rows": rows}
