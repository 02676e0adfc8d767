"""The season of an item's title words, per hemisphere and point in time: the `title_item_demand` table.

A line that has sold a few units, or none yet, has little season of its own, but its title often names it:
"Christmas", "Beach", "Lantern". Each word's week-of-year profile pools the units of every line whose title
holds it, smoothed towards the shop's year by WORD_PRIOR_UNITS. A line's title profile is naive Bayes over its
words: the shop's own year times each word's lift over it. A word that sells as the shop does ("Scarf",
"Set") leaves the shape to one that does not ("Summer"), and two words of one season sharpen it. Its units
are the mean of its words' units: how much `features.context.week_demand` trusts it against the line's own.

Rows are written at the cuts of `item_neighbours` (every `features.neighbours_every_weeks` weeks), from the
purchases strictly before each cut and the titles of the items launched by it, where a row changed.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from seasonrec import schema as s
from seasonrec.candidates.neighbours import cuts_of
from seasonrec.data.calendar import SOUTHERN

# Words of three letters or more: "of", "a" and "11.11" say nothing of a season on their own.
WORD = re.compile(r"[^\W\d_]{3,}")
WORD_PRIOR_UNITS = 5.0
HEMISPHERES = ("north", "south")  # data.calendar.hemisphere's names; index 1 is the southern one

_SCHEMA = {
    s.HEMISPHERE: pl.String,
    s.ITEM_ID: pl.String,
    s.FEATURE_TS: pl.Datetime("us", "UTC"),
    s.TITLE_DEMAND_BY_WEEK: pl.List(pl.Float32),
    s.TITLE_SALES: pl.Int64,
}


def title_words(title: str | None) -> list[str]:
    """The distinct words of a title, lower-cased, in order of first use."""
    return list(dict.fromkeys(w.lower() for w in WORD.findall(title or "")))


def title_profiles(units: np.ndarray, incidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of each week, units) per item from `units` [item, week] and `incidence` [item, word] (0/1).

    Items without a word, or whose words have sold nothing, get units 0 (and a flat share, unused).
    """
    words = incidence.T @ units  # [word, week]
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


def title_item_demand(events: pl.LazyFrame, items: pl.DataFrame, every_weeks: int) -> pl.DataFrame:
    """The offline `title_item_demand` table: (hemisphere, item_id, event_timestamp, title_demand_by_week,
    title_sales), from the purchase events and the items (id, title, launch time)."""
    cuts = cuts_of(events, every_weeks)
    catalogue = items.select(s.ITEM_ID, s.TITLE, s.LAUNCH_TS).drop_nulls([s.ITEM_ID]).unique(s.ITEM_ID).sort(s.ITEM_ID)
    if not cuts or catalogue.is_empty():
        return pl.DataFrame(schema=_SCHEMA)
    item_ids = catalogue[s.ITEM_ID].to_list()
    code = {item: i for i, item in enumerate(item_ids)}
    vocabulary: dict[str, int] = {}
    pairs = [
        (i, vocabulary.setdefault(w, len(vocabulary))) for i, t in enumerate(catalogue[s.TITLE]) for w in title_words(t)
    ]
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
        events.filter(pl.col(s.EVENT_TYPE) == "purchase")
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

    frames = []
    for c, cut in enumerate(cuts):
        # Titles launched by the cut: a word's season is what the lines on sale then had sold.
        launched = launch_us <= cut_us[c]
        if not launched.any():
            continue
        on_sale = incidence * launched[:, None]
        for h, half in enumerate(HEMISPHERES):
            shares, evidence = title_profiles(units[c, h], on_sale)
            frames.append(
                pl.DataFrame(
                    {
                        s.HEMISPHERE: half,
                        s.ITEM_ID: np.array(item_ids)[launched],
                        s.FEATURE_TS: [cut] * int(launched.sum()),
                        s.TITLE_DEMAND_BY_WEEK: pl.Series(shares[launched].tolist()),
                        s.TITLE_SALES: np.round(evidence[launched]).astype(np.int64),
                    },
                    schema=_SCHEMA,
                )
            )
    if not frames:
        return pl.DataFrame(schema=_SCHEMA)
    key = [s.HEMISPHERE, s.ITEM_ID]
    changed = pl.any_horizontal(
        pl.col(c).ne_missing(pl.col(c).shift(1).over(key)) for c in (s.TITLE_DEMAND_BY_WEEK, s.TITLE_SALES)
    )
    # A row of no units is written only once its words had some: an as-of reader must not keep a stale season.
    ever_sold = pl.col(s.TITLE_SALES).cum_max().over(key) > 0
    return pl.concat(frames).sort(*key, s.FEATURE_TS).filter(changed & ever_sold)
