"""The season of an item's title words, per hemisphere and point in time: the `title_item_demand` table.

A line that has sold a few units, or none yet, has little season of its own, but its title often names it:
"Christmas", "Beach", "Lantern". Each word's week-of-year profile pools the units of demand of every line whose title
holds it, smoothed towards the shop's year by WORD_PRIOR_UNITS. A line's title profile is naive Bayes over its
words: the shop's own year times each word's lift over it. A word that sells as the shop does ("Scarf",
"Set") leaves the shape to one that does not ("Summer"), and two words of one season sharpen it. Its units
are the mean of its words' units: how much `features.context.week_demand` trusts it against the line's own.

Rows are written at the cuts of `item_neighbours` (every `features.neighbours_every_weeks` weeks), from the
demand (`tables.demand`) strictly before each cut and the titles of the items launched by it, where a row changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from seasonrec import schema as s
from seasonrec.candidates.neighbours import cuts_of
from seasonrec.config import DemandWeights
from seasonrec.data.calendar import SOUTHERN
from seasonrec.features.context import week_demand
from seasonrec.features.tables import DEMAND_WEIGHTS, demand

# Words of three letters or more: "of", "a" and "11.11" say nothing of a season on their own.
WORD = re.compile(r"[^\W\d_]{3,}")
WORD_PRIOR_UNITS = 5.0
HEMISPHERES = ("north", "south")  # data.calendar.hemisphere's names; index 1 is the southern one

_SCHEMA = {
    s.HEMISPHERE: pl.String,
    s.ITEM_ID: pl.String,
    s.FEATURE_TS: pl.Datetime("us", "UTC"),
    s.TITLE_DEMAND_BY_WEEK: pl.List(pl.Float32),
    s.TITLE_DEMAND: pl.Int64,
}


def title_words(title: str | None) -> list[str]:
    """The distinct words of a title, lower-cased, in order of first use."""
    return list(dict.fromkeys(w.lower() for w in WORD.findall(title or "")))


def title_profiles(
    units: np.ndarray, incidence: np.ndarray, on_sale: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(share of each week, units) per item from `units` [item, week] and `incidence` [item, word] (0/1).

    Words learn their season from the items `on_sale` (a bool per item; all by default) and give it to every
    item, a line not launched yet included. Items without a word, or whose words have sold nothing, get units 0
    (and the shop's own year, unused).
    """
    words_of_sale = incidence if on_sale is None else incidence * on_sale[:, None]
    words = words_of_sale.T @ units  # [word, week]
    word_units = words.sum(axis=1)
    weeks = units.shape[1]
    shop = units.sum(axis=0)
    p_shop = (shop + WORD_PRIOR_UNITS / weeks) / (shop.sum() + WORD_PRIOR_UNITS)
    # A word is smoothed towards the shop's year, so a word that has sold little says little (a lift near 1).
    p_word = (words + WORD_PRIOR_UNITS * p_shop) / (word_units + WORD_PRIOR_UNITS)[:, None]
    # Naive Bayes: p(week | words) is the shop's p(week) times each word's lift over it. The lift, not the word's
    # own profile: every word shares the shop's busy November, which five words must not count five times.
    item_log = np.log(p_shop)[None, :] + incidence @ np.log(p_word / p_shop[None, :])  # [item, week]
    item_log -= item_log.max(axis=1, keepdims=True)
    shares = np.exp(item_log)
    shares /= shares.sum(axis=1, keepdims=True)
    n_words = incidence.sum(axis=1)
    evidence = (incidence @ word_units) / np.maximum(n_words, 1)
    return shares, np.where(n_words > 0, evidence, 0.0)


@dataclass(frozen=True)
class TitleSeasons:
    """Every item's title profile at every cut, per hemisphere, from the lines on sale then."""

    cuts: list[datetime]
    cut_us: np.ndarray  # [cut], Unix microseconds
    item_ids: list[str]
    launch_us: np.ndarray  # [item], Unix microseconds (the smallest int64 where unknown: always on sale)
    shares: np.ndarray  # [cut, hemisphere, item, week]
    # [cut, hemisphere, item]: units behind each profile, 0 without words that sold. An item not yet launched has
    # one too: its words' season is known from the lines on sale (a table writes rows for launched items only).
    evidence: np.ndarray

    def launched(self, c: int) -> np.ndarray:
        return self.launch_us <= self.cut_us[c]


def title_seasons(
    events: pl.LazyFrame, items: pl.DataFrame, every_weeks: int, weights: DemandWeights = DEMAND_WEIGHTS
) -> TitleSeasons | None:
    """The title profiles at the cuts of the purchase log, from the demand `weights` count; None without
    purchases or items."""
    cuts = cuts_of(events, every_weeks)
    catalogue = items.select(s.ITEM_ID, s.TITLE, s.LAUNCH_TS).drop_nulls([s.ITEM_ID]).unique(s.ITEM_ID).sort(s.ITEM_ID)
    if not cuts or catalogue.is_empty():
        return None
    item_ids = catalogue[s.ITEM_ID].to_list()
    code = {item: i for i, item in enumerate(item_ids)}
    vocabulary: dict[str, int] = {}
    titles = catalogue[s.TITLE].to_list()
    pairs = [(i, vocabulary.setdefault(w, len(vocabulary))) for i, t in enumerate(titles) for w in title_words(t)]
    incidence = np.zeros((len(item_ids), max(len(vocabulary), 1)), dtype=np.float64)
    for i, w in pairs:
        incidence[i, w] = 1.0
    cut_us = np.array([int(c.timestamp() * 1_000_000) for c in cuts], dtype=np.int64)
    launch = catalogue[s.LAUNCH_TS]
    launch_us = (
        (launch.dt.epoch("us") if launch.dtype.is_temporal() else launch.cast(pl.Int64) * 1_000_000)
        .fill_null(np.iinfo(np.int64).min)
        .to_numpy()
    )
    sold = (
        demand(events, weights)
        .filter(pl.col(s.ITEM_ID).is_in(item_ids))
        .select(
            s.ITEM_ID,
            pl.col(s.REGION).is_in(sorted(SOUTHERN)).cast(pl.Int8).alias("half"),
            pl.col(s.EVENT_TS).dt.epoch("us").alias("us"),
            (pl.col(s.EVENT_TS).dt.week() - 1).alias("woy"),
            pl.col(s.QUANTITY).cast(pl.Float64),
        )
        .drop_nulls()
        .collect()
    )
    # units[c, h, i, w]: what item i sold in hemisphere h in ISO week w+1 before cut c (a running sum over cuts).
    units = np.zeros((len(cuts), len(HEMISPHERES), len(item_ids), s.WEEKS_PER_YEAR), dtype=np.float64)
    seen_at = np.searchsorted(cut_us, sold["us"].to_numpy(), side="right")
    keep = seen_at < len(cuts)
    rows = np.array([code[i] for i in sold[s.ITEM_ID].to_list()], dtype=np.int64)
    np.add.at(
        units,
        (seen_at[keep], sold["half"].to_numpy()[keep], rows[keep], sold["woy"].to_numpy()[keep]),
        sold[s.QUANTITY].to_numpy()[keep],
    )
    units = np.cumsum(units, axis=0)
    shares = np.zeros_like(units)
    evidence = np.zeros(units.shape[:3])
    for c in range(len(cuts)):
        # Titles launched by the cut: a word's season is what the lines on sale then had sold.
        launched = launch_us <= cut_us[c]
        for h in range(len(HEMISPHERES)):
            shares[c, h], evidence[c, h] = title_profiles(units[c, h], incidence, launched)
    return TitleSeasons(cuts, cut_us, item_ids, launch_us, shares, evidence)


def title_item_demand(seasons: TitleSeasons | None) -> pl.DataFrame:
    """The offline `title_item_demand` table: (hemisphere, item_id, event_timestamp, title_demand_by_week,
    title_demand), from `title_seasons`."""
    if seasons is None:
        return pl.DataFrame(schema=_SCHEMA)
    ids = np.array(seasons.item_ids)
    frames = []
    for c, cut in enumerate(seasons.cuts):
        launched = seasons.launched(c)
        for h, half in enumerate(HEMISPHERES):
            frames.append(
                pl.DataFrame(
                    {
                        s.HEMISPHERE: half,
                        s.ITEM_ID: ids[launched],
                        s.FEATURE_TS: [cut] * int(launched.sum()),
                        s.TITLE_DEMAND_BY_WEEK: pl.Series(seasons.shares[c, h][launched].tolist()),
                        s.TITLE_DEMAND: np.round(seasons.evidence[c, h][launched]).astype(np.int64),
                    },
                    schema=_SCHEMA,
                )
            )
    key = [s.HEMISPHERE, s.ITEM_ID]
    changed = pl.any_horizontal(
        pl.col(c).ne_missing(pl.col(c).shift(1).over(key)) for c in (s.TITLE_DEMAND_BY_WEEK, s.TITLE_DEMAND)
    )
    # A row of no units is written only once its words had some: an as-of reader must not keep a stale season.
    ever_sold = pl.col(s.TITLE_DEMAND).cum_max().over(key) > 0
    return pl.concat(frames).sort(*key, s.FEATURE_TS).filter(changed & ever_sold)


_ARRIVALS_SCHEMA = {
    s.HEMISPHERE: pl.String,
    s.FEATURE_TS: pl.Datetime("us", "UTC"),
    s.NEW_ARRIVAL_IDS: pl.List(pl.String),
}


def new_arrivals(seasons: TitleSeasons | None, days: int, size: int) -> pl.DataFrame:
    """The offline `new_arrivals` table: per hemisphere, the items launched in the last `days`, most in season first.

    A row is written at every launch and at every end of a `days`-long window, up to the log's last cut, where the
    list changed: an as-of reader sees only the items launched by then. "In season" is the title's demand index
    this ISO week in the hemisphere, from the latest cut before the row (`features.context.week_demand` on the
    title level alone), so a new "Beach Towel" leads Australia's list in January and trails it in July; ties go
    to the newest, then the id.
    """
    if seasons is None:
        return pl.DataFrame(schema=_ARRIVALS_SCHEMA)
    known = seasons.launch_us > np.iinfo(np.int64).min
    window = days * 86_400 * 1_000_000
    stamps = np.unique(np.concatenate([seasons.launch_us[known], seasons.launch_us[known] + window]))
    # Up to the log's end, like every other table: materialized up to now, the online row is then the list as of
    # the last data, not an empty one for launches that have since grown old.
    stamps = stamps[stamps <= seasons.cut_us[-1]]
    order = np.argsort(seasons.launch_us, kind="stable")
    launch_sorted = seasons.launch_us[order]
    ids = np.array(seasons.item_ids)
    rows = []
    indices: dict[tuple[int, int, int], np.ndarray] = {}  # (cut, hemisphere, week) -> every item's index
    for h, half in enumerate(HEMISPHERES):
        previous = None
        for stamp in stamps.tolist():
            # Launched in (stamp - window, stamp]: in the window on the stamp, out on the window's end.
            lo, hi = np.searchsorted(launch_sorted, [stamp - window, stamp], side="right")
            fresh = order[lo:hi]
            if len(fresh):
                c = max(int(np.searchsorted(seasons.cut_us, stamp, side="right")) - 1, 0)
                week = datetime.fromtimestamp(stamp / 1e6, UTC).isocalendar().week
                if (c, h, week) not in indices:
                    indices[c, h, week] = np.array([_title_index(seasons, c, h, i, week) for i in range(len(ids))])
                index = indices[c, h, week][fresh]
                # Most in season first; then the newest; then the id.
                ranked = fresh[np.lexsort((ids[fresh], -seasons.launch_us[fresh], -index))][:size]
                listed = ids[ranked].tolist()
            else:
                listed = []
            if listed != previous:
                rows.append((half, stamp, listed))
                previous = listed
    frame = pl.DataFrame(
        rows, schema={s.HEMISPHERE: pl.String, "us": pl.Int64, s.NEW_ARRIVAL_IDS: pl.List(pl.String)}, orient="row"
    )
    return frame.select(
        s.HEMISPHERE,
        pl.col("us").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(s.FEATURE_TS),
        s.NEW_ARRIVAL_IDS,
    )


def _title_index(seasons: TitleSeasons, c: int, h: int, item: int, week: int) -> float:
    """The item's demand index this week from its title alone; 1.0, an average week, where its title says nothing
    yet: ahead of a line out of season, behind one in season."""
    units = float(seasons.evidence[c, h, item])
    if units <= 0:
        return 1.0
    profile = seasons.shares[c, h, item].tolist()
    index, _ = week_demand(week, (None, None), (None, None), (None, None), (profile, units))
    return 1.0 if index is None else index
