"""`seasonrec bench evaluate`: the evaluation's wall time and peak memory on a log of a large shop's shape.

The shape is the held-out grocer's that once took more than 45 minutes: 20,833
items sold in 179 regions, 13 test weeks. The log is drawn here (Zipf item
popularity, staple items each shopper re-buys, a home region per shopper): it
only has to have that shape. The ranker is untrained, since only time and
memory are measured, and the evaluation runs in a child process so that its
peak memory is its own.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from seasonrec import schema as s
from seasonrec.config import Settings
from seasonrec.progress import console

TEST_START = datetime(2024, 10, 1, tzinfo=UTC)
HISTORY_DAYS = 365


def scale_log(out: Path, items: int, regions: int, users: int, weeks: int, seed: int = 0) -> dict:
    """Canonical `items` and `events` Parquet files of the given shape, under `out`."""
    rng = np.random.default_rng(seed)
    item_ids = np.array([f"I{i:06d}" for i in range(items)])
    region_ids = np.array([f"R{r:03d}" for r in range(regions)])
    first = TEST_START - timedelta(days=HISTORY_DAYS)
    span = (HISTORY_DAYS + 7 * weeks) * 86_400
    # A tenth of the catalogue launches during the log: the cold-start items every shop has.
    launch = np.where(rng.random(items) < 0.1, rng.integers(0, span, items), 0)
    pl.DataFrame(
        {
            s.ITEM_ID: item_ids,
            s.TITLE: [f"Product {i}" for i in range(items)],
            s.CATEGORY: [f"C{c:02d}" for c in rng.integers(0, 40, items)],
            s.PRICE: rng.gamma(2.0, 3.0, items).round(2) + 0.5,
            s.LAUNCH_TS: _times(first, launch),
            s.STOCK: rng.integers(1, 500, items),
        }
    ).write_parquet(out / f"{s.ITEMS_TABLE}.parquet")
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    popularity /= popularity.sum()
    home = rng.zipf(1.6, users) % regions  # a few large regions and a long tail of small ones
    home[: min(users, regions)] = np.arange(min(users, regions))  # and every region has a shopper
    trips = rng.poisson(span / 86_400 / 21, users) + 1  # a shop about every three weeks
    staples = rng.choice(items, (users, 8), p=popularity)
    n = int(trips.sum() * 6)
    user = np.repeat(np.arange(users), trips * 6)
    trip_ts = np.repeat(rng.integers(0, span, trips.sum()), 6)
    # Half of each basket is the shopper's staples, half anything at all, popular items first.
    item = np.where(rng.random(n) < 0.5, staples[user, rng.integers(0, 8, n)], rng.choice(items, n, p=popularity))
    ts = np.maximum(trip_ts, launch[item])  # nothing sells before it launches
    events = pl.DataFrame(
        {
            s.USER_ID: np.char.add("U", user.astype(str)),
            s.ITEM_ID: item_ids[item],
            s.EVENT_TS: _times(first, ts),
            s.EVENT_TYPE: "purchase",
            s.QUANTITY: rng.integers(1, 4, n),
            s.PRICE: rng.gamma(2.0, 3.0, n).round(2) + 0.5,
            s.REGION: region_ids[home[user]],
        }
    ).filter(pl.col(s.EVENT_TS) < first + timedelta(seconds=span))
    events.write_parquet(out / f"{s.EVENTS_TABLE}.parquet")
    return {"items": items, "regions": int(events[s.REGION].n_unique()), "users": users, "events": events.height}


def _times(first: datetime, seconds: np.ndarray) -> pl.Series:
    return pl.from_epoch(pl.Series(int(first.timestamp()) + seconds), time_unit="s").dt.replace_time_zone("UTC")


def untrained_checkpoint(settings: Settings, out: Path) -> None:
    """A ranker with the catalogue's vocabulary and random weights: it costs what a trained one costs."""
    from seasonrec.model.batch import Vocab
    from seasonrec.model.train import TrainOptions, catalogue, new_model, save_checkpoint

    profiles = catalogue(settings.paths.features)
    events = pl.read_parquet(settings.paths.canonical / f"{s.EVENTS_TABLE}.parquet", columns=[s.REGION])
    vocab = Vocab.build(profiles, events[s.REGION].unique().to_list())
    model = new_model(vocab, profiles, settings.features.history_length, settings.features.embedding_dim)
    save_checkpoint(model, vocab, out, [], TrainOptions())


def bench_evaluate(settings: Settings, shape: str) -> tuple[str, list[dict]]:
    from seasonrec.data.ingest import ingest
    from seasonrec.errors import SeasonrecError
    from seasonrec.features.build_features import build_features

    try:
        items, regions, users, weeks = (int(x) for x in shape.split(","))
    except ValueError:
        raise SeasonrecError(f"--shape {shape!r}: expected four integers ITEMS,REGIONS,USERS,WEEKS") from None
    root = settings.paths.root / "bench-evaluate"
    features = settings.features.model_copy(update={"title_encoder": "hashing"})
    settings = settings.model_copy(
        update={"paths": settings.paths.model_copy(update={"data_dir": root}), "features": features}
    )
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    with console.status("drawing the log, ingesting, building features"):
        shape = scale_log(raw, items, regions, users, weeks)
        ingest("canonical", raw, settings.paths.canonical, settings.ingest)
        build_features(settings.paths.canonical, settings.paths.features, settings.features)
        untrained_checkpoint(settings, root / "checkpoint")
    end = TEST_START + timedelta(weeks=weeks)
    command = [
        str(Path(sys.executable).parent / "seasonrec"), "evaluate", "--checkpoint", str(root / "checkpoint"),
        "--test-start", f"{TEST_START:%Y-%m-%d}", "--test-end", f"{end - timedelta(days=1):%Y-%m-%d}",
        "--out", str(root / "evaluation"), "--val-weeks", "0",
    ]  # fmt: skip
    env = {**os.environ, "SEASONREC__PATHS__DATA_DIR": str(root), "SEASONREC__FEATURES__TITLE_ENCODER": "hashing"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SeasonrecError(f"bench evaluate: the evaluation failed: {done.stderr.strip().splitlines()[-1]}")
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    metrics = json.loads((root / "evaluation" / "metrics.json").read_text())
    row = {
        **shape,
        "test weeks": weeks,
        "requests": metrics["data"]["requests"],
        "wall seconds": round(wall, 1),
        "peak RSS MiB": round(peak_mib),
        "target": "under 300 s",
    }
    return "Evaluation at scale (three views, six baselines, untrained ranker)", [row]
