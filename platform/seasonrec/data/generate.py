"""Stage: generate a seeded synthetic shop in the canonical schema.

What makes it seasonal: every item has a theme (Christmas, summer, Spring
Festival, ...) whose demand follows the region's calendar, so a summer item
peaks in July in Germany and in January in Australia. Themed items launch a few
weeks before their season each year (cold start), users keep a few staple items
they buy again (repeat buyers), and each user prefers some categories.

Users are generated in chunks and each chunk is written as its own Parquet part,
so memory stays flat however many users are asked for. The same seed gives the
same bytes.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from seasonrec import schema as s
from seasonrec.config import GenerateConfig
from seasonrec.data.calendar import theme_intensity
from seasonrec.errors import SeasonrecError
from seasonrec.progress import progress

log = logging.getLogger(__name__)

# Region -> share of users. Both hemispheres, and a region with its own festivals.
REGIONS = {"GB": 0.22, "US": 0.25, "DE": 0.13, "CN": 0.15, "AU": 0.12, "BR": 0.08, "ZA": 0.05}

CATEGORIES = {
    "decor": ("Ornament", "Garland", "Candle", "Wreath", "Wall Sign"),
    "kitchen": ("Mug", "Serving Bowl", "Tea Set", "Cookie Tin", "Apron"),
    "apparel": ("Jumper", "T-Shirt", "Scarf", "Hat", "Socks"),
    "toys": ("Puzzle", "Plush Toy", "Board Game", "Kite", "Building Set"),
    "electronics": ("Speaker", "Fairy Lights", "Headphones", "Power Bank", "Smart Lamp"),
    "stationery": ("Notebook", "Pencil Case", "Gift Wrap", "Greeting Card", "Planner"),
    "outdoor": ("Picnic Blanket", "Beach Towel", "Cooler Bag", "Umbrella", "Camping Chair"),
    "food_gifts": ("Gift Box", "Chocolate Tin", "Hamper", "Biscuit Selection", "Tea Sampler"),
}

# Theme -> (share of items, title words, categories it favours).
THEMES = {
    "evergreen": (0.45, ("Classic", "Everyday", "Essential", "Modern", "Natural"), ()),
    "christmas": (0.12, ("Christmas", "Festive", "Santa", "Reindeer", "Snowflake"), ("decor", "food_gifts", "toys")),
    "summer": (0.09, ("Summer", "Beach", "Sunshine", "Tropical", "Picnic"), ("outdoor", "apparel")),
    "winter": (0.07, ("Winter", "Cosy", "Wool", "Thermal", "Fleece"), ("apparel", "kitchen")),
    "spring_festival": (0.04, ("Lunar New Year", "Red Lantern", "Spring Festival", "Fortune"), ("decor", "food_gifts")),
    "mid_autumn": (0.03, ("Mooncake", "Mid-Autumn", "Moon Festival"), ("food_gifts", "decor")),
    "black_friday": (0.05, ("Deal", "Mega Bundle", "Doorbuster"), ("electronics",)),
    "singles_day": (0.03, ("11.11", "Singles' Day", "Solo"), ("electronics", "apparel")),
    "back_to_school": (0.07, ("School", "Classroom", "Study", "Campus"), ("stationery", "apparel")),
    "valentines": (0.05, ("Valentine", "Sweetheart", "Love Heart", "Romantic"), ("food_gifts", "decor")),
}
THEME_LIFT = 12.0  # peak in-season demand of a themed item, relative to an evergreen one
OFF_SEASON = 0.2  # a themed item out of its season sells at this fraction of an evergreen one
LAUNCH_LEAD_DAYS = 42  # themed newcomers appear about six weeks before their peak


def _items(cfg: GenerateConfig, rng: np.random.Generator, days: np.ndarray) -> pl.DataFrame:
    theme_names = list(THEMES)
    shares = np.array([THEMES[t][0] for t in theme_names])
    themes = rng.choice(len(theme_names), size=cfg.items, p=shares / shares.sum())
    categories = list(CATEGORIES)
    rows = []
    start = datetime.combine(cfg.start, datetime.min.time(), tzinfo=UTC)
    for i, t in enumerate(themes):
        theme = theme_names[t]
        _, words, favoured = THEMES[theme]
        cat = str(rng.choice(favoured)) if favoured and rng.random() < 0.8 else str(rng.choice(categories))
        title = f"{rng.choice(words)} {rng.choice(CATEGORIES[cat])}"
        # About a third of the catalogue is new during the window.
        offset = int(rng.integers(0, len(days))) if rng.random() < 0.35 else -int(rng.integers(30, 900))
        launch = start + timedelta(days=offset)
        rows.append(
            {
                s.ITEM_ID: f"I{i:06d}",
                s.TITLE: title,
                s.CATEGORY: cat,
                s.PRICE: float(np.round(rng.lognormal(2.8, 0.6), 2)),
                s.LAUNCH_TS: launch,
                s.STOCK: int(rng.integers(0, 500)),
                s.THEME: theme,
            }
        )
    items = pl.DataFrame(rows).with_columns(pl.col(s.LAUNCH_TS).cast(pl.Datetime("us", "UTC")))
    return _launch_before_season(items, days)


def _launch_before_season(items: pl.DataFrame, days: np.ndarray) -> pl.DataFrame:
    """Move each new themed item's launch to just before its theme's next peak (in GB/CN time)."""
    launches = items[s.LAUNCH_TS].to_numpy().astype("datetime64[D]")
    themes = items[s.THEME].to_list()
    start = days[0]
    out = launches.copy()
    peaks_cache: dict[str, np.ndarray] = {}
    for i, theme in enumerate(themes):
        if theme == "evergreen" or launches[i] < start:
            continue
        if theme not in peaks_cache:
            region = "CN" if theme in ("spring_festival", "mid_autumn", "singles_day") else "GB"
            lift = theme_intensity(theme, region, days)
            peaks_cache[theme] = days[(lift > 0.95)]
        peaks = peaks_cache[theme]
        later = peaks[peaks >= launches[i] + np.timedelta64(LAUNCH_LEAD_DAYS, "D")]
        if len(later):
            out[i] = later[0] - np.timedelta64(LAUNCH_LEAD_DAYS, "D")
    return items.with_columns(pl.Series(s.LAUNCH_TS, out.astype("datetime64[us]")).dt.replace_time_zone("UTC"))


def _demand(items: pl.DataFrame, days: np.ndarray, regions: list[str]) -> np.ndarray:
    """Relative demand of each item per (region, day): base popularity x seasonal lift x launched."""
    n_items = items.height
    base = np.random.default_rng(0).pareto(1.5, n_items) + 1.0  # long tail; fixed so items are stable across seeds
    launch_day = items[s.LAUNCH_TS].to_numpy().astype("datetime64[D]")
    themes = items[s.THEME].to_numpy()
    out = np.empty((len(regions), len(days), n_items), dtype=np.float32)
    for r, region in enumerate(regions):
        lift = {t: OFF_SEASON + THEME_LIFT * theme_intensity(t, region, days) for t in THEMES if t != "evergreen"}
        for t, curve in lift.items():
            mask = themes == t
            out[r][:, mask] = curve[:, None]
        out[r][:, themes == "evergreen"] = 1.0
        out[r] *= base[None, :]
        out[r] *= launch_day[None, :] <= days[:, None]
    return out


def _traffic(days: np.ndarray, regions: list[str]) -> np.ndarray:
    """Per-region CDF over days of when shopping sessions happen: busier before the big moments."""
    cdfs = []
    for region in regions:
        busy = 1.0 + 1.5 * theme_intensity("christmas", region, days) + theme_intensity("black_friday", region, days)
        if region == "CN":
            busy += 1.5 * theme_intensity("singles_day", region, days) + theme_intensity(
                "spring_festival", region, days
            )
        cdf = np.cumsum(busy)
        cdfs.append(cdf / cdf[-1])
    return np.stack(cdfs)


def _chunk(
    chunk: int,
    n_users: int,
    first_user: int,
    cfg: GenerateConfig,
    items: pl.DataFrame,
    demand: np.ndarray,
    traffic: np.ndarray,
    days: np.ndarray,
    regions: list[str],
) -> pl.DataFrame:
    rng = np.random.default_rng([cfg.seed, chunk])
    n_cats = len(CATEGORIES)
    item_cat = items[s.CATEGORY].replace_strict({c: i for i, c in enumerate(CATEGORIES)}).to_numpy()
    price = items[s.PRICE].to_numpy()
    item_ids = items[s.ITEM_ID].to_numpy()

    region = rng.choice(len(regions), size=n_users, p=np.array(list(REGIONS.values())))
    affinity = rng.dirichlet(np.full(n_cats, 0.4), size=n_users)
    repeat_p = rng.beta(1.5, 8, size=n_users)
    sessions_per_user = rng.poisson(rng.lognormal(1.2, 0.7, size=n_users))
    user = np.repeat(np.arange(n_users), sessions_per_user)
    n_sessions = len(user)

    day_idx = np.empty(n_sessions, dtype=np.int64)
    u = rng.random(n_sessions)
    for r in range(len(regions)):
        m = region[user] == r
        day_idx[m] = np.searchsorted(traffic[r], u[m])
    day_idx = np.minimum(day_idx, len(days) - 1)
    cat = (np.cumsum(affinity[user], axis=1) < rng.random(n_sessions)[:, None]).sum(axis=1).clip(0, n_cats - 1)

    # Sessions sharing (region, day, category) draw from the same demand distribution.
    views_extra = rng.poisson(1.2, n_sessions)
    target = np.empty(n_sessions, dtype=np.int64)
    extra_items: list[np.ndarray] = []
    extra_session: list[np.ndarray] = []
    key = (region[user] * len(days) + day_idx) * n_cats + cat
    order = np.argsort(key, kind="stable")
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    for group in np.split(order, bounds):
        r, d, c = region[user[group[0]]], day_idx[group[0]], cat[group[0]]
        w = demand[r, d] * (item_cat == c)
        if w.sum() == 0:
            w = demand[r, d]
        p = w / w.sum()
        target[group] = rng.choice(len(p), size=len(group), p=p)
        n_extra = views_extra[group]
        extra_items.append(rng.choice(len(p), size=int(n_extra.sum()), p=p))
        extra_session.append(np.repeat(group, n_extra))

    # Repeat buyers: a few staple items per user, bought again with the user's own propensity.
    overall = demand.mean(axis=(0, 1))
    staples = rng.choice(items.height, size=(n_users, 3), p=overall / overall.sum())
    is_repeat = rng.random(n_sessions) < repeat_p[user]
    staple = staples[user, rng.integers(0, 3, n_sessions)]
    launched = items[s.LAUNCH_TS].to_numpy().astype("datetime64[D]")[staple] <= days[day_idx]
    target = np.where(is_repeat & launched, staple, target)

    carted = rng.random(n_sessions) < np.where(is_repeat, 0.6, 0.35)
    bought = carted & (rng.random(n_sessions) < np.where(is_repeat, 0.7, 0.5))
    session_start = days[day_idx].astype("datetime64[s]") + rng.integers(7 * 3600, 23 * 3600, n_sessions).astype(
        "timedelta64[s]"
    )

    parts = [
        (np.arange(n_sessions), target, "view", 0),
        (np.flatnonzero(carted), target[carted], "cart", 120),
        (np.flatnonzero(bought), target[bought], "purchase", 300),
    ]
    extra_session_all = np.concatenate(extra_session) if extra_session else np.empty(0, dtype=np.int64)
    parts.append(
        (extra_session_all, np.concatenate(extra_items) if extra_items else np.empty(0, dtype=np.int64), "view", 60)
    )
    frames = []
    for sess, item, kind, offset_s in parts:
        jitter = rng.integers(0, 60, len(sess)).astype("timedelta64[s]")
        qty = 1 + rng.poisson(0.3, len(sess)) if kind == "purchase" else np.ones(len(sess), dtype=np.int64)
        frames.append(
            pl.DataFrame(
                {
                    s.USER_ID: (first_user + user[sess]).astype(np.int64),
                    s.ITEM_ID: item_ids[item],
                    s.EVENT_TS: (session_start[sess] + np.timedelta64(offset_s, "s") + jitter).astype("datetime64[us]"),
                    s.EVENT_TYPE: np.full(len(sess), kind),
                    s.QUANTITY: qty.astype(np.int64),
                    s.PRICE: price[item],
                    s.REGION: np.array(regions)[region[user[sess]]],
                }
            )
        )
    return (
        pl.concat(frames)
        .with_columns(
            pl.format("U{}", pl.col(s.USER_ID).cast(pl.String).str.zfill(7)).alias(s.USER_ID),
            pl.col(s.EVENT_TS).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        )
        .sort(s.EVENT_TS, s.USER_ID)
    )


def generate(out_dir: Path | str, cfg: GenerateConfig) -> dict:
    """Write `items.parquet` and `events/part-*.parquet` into `out_dir`; return counts."""
    if cfg.end <= cfg.start:
        raise SeasonrecError(f"--end {cfg.end} must be after --start {cfg.start}")
    out_dir = Path(out_dir)
    events_dir = out_dir / s.EVENTS_TABLE
    events_dir.mkdir(parents=True, exist_ok=True)
    for stale in events_dir.glob("part-*.parquet"):
        stale.unlink()
    rng = np.random.default_rng(cfg.seed)
    days = np.arange(np.datetime64(cfg.start, "D"), np.datetime64(cfg.end, "D") + 1)
    regions = list(REGIONS)
    items = _items(cfg, rng, days)
    demand = _demand(items, days, regions)
    traffic = _traffic(days, regions)
    items.drop(s.THEME).write_parquet(out_dir / f"{s.ITEMS_TABLE}.parquet")
    # The hidden theme is the ground truth of seasonality; kept aside for evaluation and tests.
    items.select(s.ITEM_ID, s.THEME).write_parquet(out_dir / s.THEMES_FILE)

    n_events = 0
    chunks = range(0, cfg.users, cfg.chunk_users)
    for chunk, first in enumerate(progress(chunks, description="generating users", total=len(chunks))):
        n = min(cfg.chunk_users, cfg.users - first)
        events = _chunk(chunk, n, first, cfg, items, demand, traffic, days, regions)
        events.write_parquet(events_dir / f"part-{chunk:05d}.parquet")
        n_events += events.height
    summary = {
        "users": cfg.users,
        "items": items.height,
        "events": n_events,
        "start": str(cfg.start),
        "end": str(cfg.end),
    }
    log.debug("generated %s", summary)  # the command prints it as its summary
    return summary
