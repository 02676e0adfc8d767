"""Seasonal correctness of the served lists, on a shop whose item themes are known (the synthetic one).

For a region and a month, an item's theme is **in season** when the theme's
demand lift (`data.calendar.theme_intensity`) is above zero on some day of that
month there, and **off season** when it is zero all month: a summer item in a
London December. Evergreen items count in neither. Each method's served top 10
is replayed for shoppers of each hemisphere on the 15th of January, April, July
and October, with the state as of that day, and scored by:

- in-season share@10: the share of the list whose theme is in season;
- off-season rate@10: the share whose theme is off season.

These need no truth, so the probe days may fall before the test window. The
co-purchase table and co-occurrence baseline are the evaluation's (built before
the test window), which can only sharpen a probe day's neighbours, not its season.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from seasonrec import schema as s
from seasonrec.data.calendar import hemisphere, theme_intensity
from seasonrec.errors import SeasonrecError
from seasonrec.model.evaluate import METHODS, Replay
from seasonrec.model.replay import table, user_state
from seasonrec.progress import progress

PROBE_MONTHS = (1, 4, 7, 10, 12)  # the seasons, and December: Christmas in both hemispheres
PROBE_DAY = 15
EXAMPLE_MONTHS = (7, 12)  # a northern summer and a southern one
PROBE_USERS = 200  # per hemisphere and month
EVERGREEN = "evergreen"
IN_SEASON, OFF_SEASON = "in_season_share@10", "off_season_rate@10"


def load_themes(path: Path) -> dict[str, str]:
    """Item id -> theme, from the generator's `item_themes.parquet`."""
    try:
        frame = pl.read_parquet(path, columns=[s.ITEM_ID, s.THEME])
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise SeasonrecError(f"{path}: cannot read item themes ({type(exc).__name__})") from exc
    return dict(frame.rows())


def season_of(themes: dict[str, str], region: str, year: int, month: int) -> dict[str, int]:
    """Theme -> +1 in season, -1 off season, 0 neither, for `region` in that month."""
    first = np.datetime64(f"{year}-{month:02d}-01")
    days = first + np.arange(calendar.monthrange(year, month)[1])
    out = {}
    for theme in set(themes.values()):
        out[theme] = 0 if theme == EVERGREEN else (1 if theme_intensity(theme, region, days).max() > 0 else -1)
    return out


def probe_requests(features: Path, at: datetime, users_per_hemisphere: int, seed: int) -> pl.DataFrame:
    """Shoppers who had bought by `at`, sampled per hemisphere, each in their home region then."""
    stats = table(features, s.USER_STATS)
    latest = (
        stats.filter((pl.col(s.FEATURE_TS) < at) & (pl.col(s.N_PURCHASES) > 0))
        .unique(s.USER_ID, keep="last")
        .select(s.USER_ID, pl.col(s.HOME_REGION).alias(s.REGION))
        .drop_nulls()
        .sort(s.USER_ID)
    )
    half = latest.with_columns(pl.col(s.REGION).map_elements(hemisphere, return_dtype=pl.String).alias("hemisphere"))
    picked = [
        g.sample(min(users_per_hemisphere, g.height), seed=seed)
        for _, g in half.group_by("hemisphere", maintain_order=True)
    ]
    if not picked:
        return pl.DataFrame()
    reqs = (
        pl.concat(picked)
        .drop("hemisphere")
        .with_columns(pl.lit(at).alias("at"), pl.lit(int(at.timestamp())).alias(s.REQUEST_TS))
    )
    return user_state(reqs.sort(s.REGION, s.USER_ID), features)


def seasonal_correctness(
    replay: Replay, themes: dict[str, str], year: int, seed: int = 0, examples: list[dict] | None = None
) -> dict:
    """{hemisphere: {month: {method: {in-season share, off-season rate, requests}}}} of the served top 10.

    `examples` gets the ranker's list, with its reasons, for the first shopper of each region probed in
    July and December: what the report shows by name."""
    catalogue = replay.catalogue
    theme_of = [themes.get(item, EVERGREEN) for item in catalogue.ids]
    acc: dict = {}
    probes = [datetime(year, month, PROBE_DAY, tzinfo=UTC) for month in PROBE_MONTHS]
    for at in progress(probes, description="seasonal correctness (months)", total=len(probes)):
        reqs = probe_requests(replay.features, at, PROBE_USERS, seed)
        for group in reqs.partition_by(s.REGION, maintain_order=True) if reqs.height else []:
            region = group[s.REGION][0]
            season = season_of(themes, region, at.year, at.month)
            ts = int(at.timestamp())
            items, pool = catalogue.week(at, region), catalogue.pool(at, region)
            bought = replay.bought.arrays(group[s.USER_ID].to_list(), at)
            scores = replay.scores(group, items, ts, region, bought)
            for i, user in enumerate(group.iter_rows(named=True)):
                cand, sources = replay.known_candidates(user, pool, ts, items, region)
                own = {k: v[i] for k, v in bought.items()}
                if examples is not None and i == 0 and at.month in EXAMPLE_MONTHS:
                    ranked = replay.served_items(scores["ranker"][i], cand, sources, items, user, at, region, own)
                    examples.append(
                        {
                            "region": region,
                            "at": at.date().isoformat(),
                            s.USER_ID: user[s.USER_ID],
                            "items": [{s.ITEM_ID: r.item_id, "reasons": r.reasons} for r in ranked],
                        }
                    )
                for method in METHODS:
                    served = replay.served(scores[method][i], cand, sources, items, user, at, region, own)
                    marks = [season[theme_of[j]] for j in served if j >= 0]
                    cell = acc.setdefault(hemisphere(region), {}).setdefault(f"{at.month:02d}", {})
                    cell.setdefault(method, []).append(marks)
    return {
        half: {
            month: {
                method: {
                    IN_SEASON: float(np.mean([ms.count(1) / max(len(ms), 1) for ms in lists])),
                    OFF_SEASON: float(np.mean([ms.count(-1) / max(len(ms), 1) for ms in lists])),
                    "requests": len(lists),
                }
                for method, lists in methods.items()
            }
            for month, methods in sorted(months.items())
        }
        for half, months in sorted(acc.items())
    }
