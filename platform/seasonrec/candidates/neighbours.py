"""The item-keyed neighbour table: co-purchase and title neighbours, point in time.

`item_neighbours` writes one row per item and cut time whenever the item's lists
change, so an as-of reader that takes an item's latest row before a request sees
only what was known then:

- co-purchase neighbours count the purchases strictly before the cut;
- title neighbours are searched among the items launched at or before the cut,
  so a new launch with no sales is proposed as soon as it exists, and never before.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import hnswlib
import numpy as np
import polars as pl

from seasonrec import schema as s

ITEM_NEIGHBOURS, CO_PURCHASE_IDS, SIMILAR_IDS = s.ITEM_NEIGHBOURS, s.CO_PURCHASE_IDS, s.SIMILAR_IDS
# HNSW graph: M links per node and a construction beam of 200 give near-exact recall on a few
# thousand 384-d title vectors; the search beam is raised to k+1 where k asks for more.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 100
# A fixed seed and a single insertion thread make the graph, and so the neighbours, reproducible.
HNSW_SEED = 0

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WEEK = timedelta(weeks=1)
_MICROSECOND = timedelta(microseconds=1)
# Rows one slice of the co-purchase self-join may emit: bounds peak memory, not the result.
JOIN_ROWS = 8_000_000
_CODE_SPAN = 2**32  # item codes are UInt32, so (count, code) packs into one UInt64 ranking key
_EMPTY_IDS = pl.lit([], dtype=pl.List(pl.String))
_CO_PURCHASE_SCHEMA = {
    s.ITEM_ID: pl.String,
    s.FEATURE_TS: pl.Datetime("us", "UTC"),
    CO_PURCHASE_IDS: pl.List(pl.String),
}


def _micros(when: datetime) -> int:
    """Unix microseconds; a naive time is taken as UTC, like the canonical event log."""
    return ((when if when.tzinfo else when.replace(tzinfo=UTC)) - EPOCH) // _MICROSECOND


def _stamps(micros: list[int]) -> pl.Series:
    return pl.Series(s.FEATURE_TS, micros, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero), so inner product is cosine similarity."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


# --- title neighbours --------------------------------------------------------


class _TitleIndex:
    """An HNSW index that grows item by item, queried for every item it holds."""

    def __init__(self, dim: int, capacity: int):
        self._index = hnswlib.Index(space="ip", dim=dim)
        self._index.init_index(
            max_elements=max(capacity, 1), M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION, random_seed=HNSW_SEED
        )
        self._vectors = np.empty((max(capacity, 1), dim), dtype=np.float32)
        self.item_ids: list[str] = []

    def add(self, item_ids: list[str], vectors: np.ndarray) -> None:
        if not item_ids:
            return
        start, end = len(self.item_ids), len(self.item_ids) + len(item_ids)
        self._vectors[start:end] = _unit(vectors)
        self._index.add_items(self._vectors[start:end], np.arange(start, end), num_threads=1)
        self.item_ids.extend(item_ids)

    def nearest(self, k: int) -> list[list[str]]:
        """The k nearest other items of every item held, nearest first."""
        held = len(self.item_ids)
        if held < 2 or k < 1:
            return [[] for _ in self.item_ids]
        # One more than k: the item itself is normally its own nearest hit.
        want = min(k + 1, held)
        self._index.set_ef(max(HNSW_EF_SEARCH, want))
        labels, _ = self._index.knn_query(self._vectors[:held], k=want)
        ids = self.item_ids
        return [[ids[j] for j in row if j != i][:k] for i, row in enumerate(labels.tolist())]


def title_neighbours(item_ids: list[str], vectors: np.ndarray, k: int) -> dict[str, list[str]]:
    """Each item's k nearest other items by cosine similarity of their title vectors, nearest first.

    Approximate (HNSW); a catalogue of k items or fewer gives every item all the others.
    """
    if len(item_ids) != len(vectors):
        raise ValueError(f"{len(item_ids)} item ids but {len(vectors)} vectors")
    if not item_ids:
        return {}
    index = _TitleIndex(np.shape(vectors)[1], len(item_ids))
    index.add(list(item_ids), np.asarray(vectors))
    return dict(zip(item_ids, index.nearest(k), strict=True))


def _title_snapshots(profiles: pl.DataFrame, cuts: list[datetime], k: int) -> pl.DataFrame:
    """(item, cut, similar_ids) for every item launched by each cut, among the items launched by then."""
    launched = (
        profiles.select(s.ITEM_ID, s.LAUNCH_TS, s.TITLE_EMBEDDING)
        .drop_nulls([s.ITEM_ID, s.LAUNCH_TS])
        .sort(s.LAUNCH_TS, s.ITEM_ID)
        .unique(s.ITEM_ID, keep="first", maintain_order=True)
    )
    embedded = launched.filter(pl.col(s.TITLE_EMBEDDING).list.len() > 0)
    vectors = np.asarray(embedded[s.TITLE_EMBEDDING].to_list(), dtype=np.float32)
    index = _TitleIndex(vectors.shape[1] if len(vectors) else 1, len(vectors))
    launch_s = launched[s.LAUNCH_TS].to_numpy()
    embedded_ids, embedded_s = embedded[s.ITEM_ID].to_list(), embedded[s.LAUNCH_TS].to_numpy()

    item_col, cut_col, similar_col = [], [], []
    similar: dict[str, list[str]] = {}
    for cut in cuts:
        cut_s = _micros(cut) // 1_000_000
        new = slice(len(index.item_ids), int(np.searchsorted(embedded_s, cut_s, side="right")))
        if new.stop > new.start:
            index.add(embedded_ids[new], vectors[new])
            similar = dict(zip(index.item_ids, index.nearest(k), strict=True))
        items = launched[s.ITEM_ID][: int(np.searchsorted(launch_s, cut_s, side="right"))].to_list()
        item_col += items
        cut_col += [_micros(cut)] * len(items)
        similar_col += [similar.get(item, []) for item in items]
    return pl.DataFrame(
        [
            pl.Series(s.ITEM_ID, item_col, dtype=pl.String),
            _stamps(cut_col),
            pl.Series(SIMILAR_IDS, similar_col, dtype=pl.List(pl.String)),
        ]
    )


# --- co-purchase neighbours --------------------------------------------------


def _bought(purchases: pl.LazyFrame) -> pl.LazyFrame:
    """(user, item, Unix microseconds) of purchase rows; other event types, if the frame has them, are dropped."""
    if s.EVENT_TYPE in purchases.collect_schema().names():
        purchases = purchases.filter(pl.col(s.EVENT_TYPE) == "purchase")
    return purchases.select(s.USER_ID, s.ITEM_ID, pl.col(s.EVENT_TS).dt.epoch("us").alias(s.EVENT_TS)).drop_nulls()


def _strongest(counts: pl.DataFrame, per_item: int) -> pl.DataFrame:
    """(item, other) codes from unordered pair counts (a < b), an item's best first: most users, then lowest code."""
    both_ways = pl.concat(
        [
            counts.lazy().select(pl.col("a").alias("item"), pl.col("b").alias("other"), "n"),
            counts.lazy().select(pl.col("b").alias("item"), pl.col("a").alias("other"), "n"),
        ]
    ).with_columns(
        (pl.col("n").cast(pl.UInt64) * _CODE_SPAN + (_CODE_SPAN - 1 - pl.col("other").cast(pl.UInt64))).alias("key")
    )
    return (
        both_ways.group_by("item")
        .agg(pl.col("other").top_k_by("key", per_item), pl.col("key").top_k_by("key", per_item))
        .explode("other", "key")
        .sort(["item", "key"], descending=[False, True])
        .select("item", "other")
        .collect(engine="streaming")
    )


def _pair_births(coded: pl.DataFrame) -> list[pl.DataFrame]:
    """Pairs (a < b) with, per pair, how many users made it a pair at each cut (lists `born` and `n`).

    The self-join emits one row per user and pair of their items, so a few heavy
    buyers dominate its size: it runs in slices of first items, each emitting at most
    about `JOIN_ROWS` rows, which bounds memory without dropping any user's items.
    """
    slice_of = (
        coded.with_columns(pl.len().over("user").alias("basket"))
        .group_by("item")
        .agg(pl.col("basket").sum().alias("rows"))
        .sort("item")
        .select("item", (pl.col("rows").cum_sum() // JOIN_ROWS).alias("slice"))
    )
    rights = coded.lazy().rename({"item": "item_other", "cut": "cut_other"})
    slices = coded.join(slice_of, on="item").partition_by("slice", include_key=False)
    return [
        left.lazy()
        .join(rights, on="user")
        .filter(pl.col("item") < pl.col("item_other"))
        .group_by(
            pl.col("item").alias("a"),
            pl.col("item_other").alias("b"),
            pl.max_horizontal("cut", "cut_other").alias("born"),
        )
        .agg(pl.len().cast(pl.UInt32).alias("n"))
        .group_by("a", "b")
        .agg("born", "n")
        .collect(engine="streaming")
        for left in slices
    ]


def co_purchase_snapshots(purchases: pl.LazyFrame, cuts: list[datetime], per_item: int) -> pl.DataFrame:
    """Each item's `per_item` most co-purchased items as of every cut, from purchases strictly before it.

    Two items count once per distinct user who bought both, from the later of the
    user's first purchases of the two (the pair's "born" time); ties go to the lower
    item id. One self-join of first purchases serves every cut. Rows: (item_id,
    event_timestamp = the cut, co_purchase_ids) for each item with a neighbour then.
    """
    cut_us = np.array(sorted(_micros(c) for c in cuts), dtype=np.int64)
    firsts = _bought(purchases).group_by(s.USER_ID, s.ITEM_ID).agg(pl.col(s.EVENT_TS).min()).collect()
    # The first cut at which a purchase is in the past; purchases at or after the last cut never count.
    seen_at = np.searchsorted(cut_us, firsts[s.EVENT_TS].to_numpy(), side="right")
    firsts = firsts.with_columns(pl.Series("cut", seen_at, dtype=pl.UInt32)).filter(pl.col("cut") < len(cut_us))
    if firsts.is_empty():
        return pl.DataFrame(schema=_CO_PURCHASE_SCHEMA)
    item_ids = firsts[s.ITEM_ID].unique().sort()
    # Codes in id order, so the lower code wins a tie just as the lower id does.
    coded = firsts.select(
        pl.col(s.USER_ID).rank("dense").cast(pl.UInt32).alias("user"),
        pl.col(s.ITEM_ID).cast(pl.Enum(item_ids)).to_physical().cast(pl.UInt32).alias("item"),
        "cut",
    )
    pairs = pl.concat(_pair_births(coded)).with_row_index("pair")
    born = pairs.select("pair", "born", "n").explode("born", "n").sort("born")
    ends = np.searchsorted(born["born"].to_numpy(), np.arange(len(cut_us)), side="right")
    pair, users = born["pair"].to_numpy(), born["n"].to_numpy()
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    del pairs, born

    counts = np.zeros(len(a), dtype=np.uint32)
    frames, start = [], 0
    for cut, end in zip(cut_us.tolist(), ends.tolist(), strict=True):
        # A pair occurs once per cut, so the fancy-indexed add never drops a repeat.
        counts[pair[start:end]] += users[start:end]
        start = end
        known = np.flatnonzero(counts)
        if not len(known):
            continue
        top = _strongest(pl.DataFrame({"a": a[known], "b": b[known], "n": counts[known]}), per_item)
        lists = (
            pl.DataFrame([item_ids.gather(top["item"]).alias(s.ITEM_ID), item_ids.gather(top["other"]).alias("other")])
            .group_by(s.ITEM_ID, maintain_order=True)
            .agg(pl.col("other").alias(CO_PURCHASE_IDS))
        )
        frames.append(lists.insert_column(1, _stamps([cut] * lists.height)))
    return pl.concat(frames) if frames else pl.DataFrame(schema=_CO_PURCHASE_SCHEMA)


# --- the table ---------------------------------------------------------------


def _week_start(micros: int) -> datetime:
    when = EPOCH + micros * _MICROSECOND
    return datetime(when.year, when.month, when.day, tzinfo=UTC) - timedelta(days=when.weekday())


def snapshot_cuts(first_us: int, last_us: int, every_weeks: int) -> list[datetime]:
    """Every `every_weeks` weeks from the first event's week start, closed by the week start after the last event."""
    cut, end = _week_start(first_us), _week_start(last_us) + WEEK
    cuts = []
    while cut < end:
        cuts.append(cut)
        cut += every_weeks * WEEK
    return [*cuts, end]


def cuts_of(purchases: pl.LazyFrame, every_weeks: int) -> list[datetime]:
    """`snapshot_cuts` of the purchase log; [] for a log without purchases."""
    if every_weeks < 1:
        raise ValueError(f"every_weeks must be at least 1, got {every_weeks}")
    span = _bought(purchases).select(pl.col(s.EVENT_TS).min().alias("first"), pl.col(s.EVENT_TS).max().alias("last"))
    first_us, last_us = span.collect().row(0)
    return [] if first_us is None else snapshot_cuts(first_us, last_us, every_weeks)


def item_neighbours(purchases: pl.LazyFrame, profiles: pl.DataFrame, every_weeks: int, per_item: int) -> pl.DataFrame:
    """The offline `item_neighbours` table: (item_id, event_timestamp, co_purchase_ids, similar_ids).

    Snapshots are taken at `snapshot_cuts` of the purchase log. An item has a row at a
    cut once it is launched (per `profiles`, the item profile table) or has
    co-purchase neighbours, and then only at cuts where either list changed.
    """
    cuts = cuts_of(purchases, every_weeks)
    if not cuts:
        return pl.DataFrame(schema={**_CO_PURCHASE_SCHEMA, SIMILAR_IDS: pl.List(pl.String)})
    co = co_purchase_snapshots(purchases, cuts, per_item)
    similar = _title_snapshots(profiles, cuts, per_item)
    lists = (CO_PURCHASE_IDS, SIMILAR_IDS)
    changed = pl.any_horizontal(pl.col(c).ne_missing(pl.col(c).shift(1).over(s.ITEM_ID)) for c in lists)
    return (
        similar.join(co, on=[s.ITEM_ID, s.FEATURE_TS], how="full", coalesce=True)
        .with_columns(pl.coalesce(pl.col(c), _EMPTY_IDS) for c in lists)
        .sort(s.ITEM_ID, s.FEATURE_TS)
        .filter(changed)
        .select(s.ITEM_ID, s.FEATURE_TS, *lists)
    )
