"""Pipeline stages, each in its own process so its wall time and peak memory (max RSS,
from the kernel's rusage for that child) are its own; and training throughput.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from seasonrec import schema as s
from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.progress import progress

# Measured on the generator's defaults: about 11.8 events per user over two years.
EVENTS_PER_USER = 11.8


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
