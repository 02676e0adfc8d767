"""The candidate sources and their union.

Every function takes the state it needs as arguments (a pool, a history, a
neighbour table, the new arrivals): serving hands in what the online
store holds now, the evaluation what was known at the start of each test week.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest

from seasonrec import schema as s
from seasonrec.data.calendar import hemisphere

NEIGHBOURS_PER_ITEM = 10
# Neighbours of this many of the user's latest items: older ones say less about what comes next.
RECENT_ITEMS = 5
# The new-arrival source: launched in the last NEW_ARRIVAL_DAYS, at most NEW_ARRIVALS (`features.title_season`).
NEW_ARRIVAL_DAYS = 45
NEW_ARRIVALS = 20


@dataclass(frozen=True, slots=True)
class CandidateSet:
    """Item ids in the order they are ranked from, and for each the sources that proposed it."""

    item_ids: list[str]
    sources: list[tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.item_ids)

    def of_source(self, source: str) -> list[str]:
        return [item for item, found in zip(self.item_ids, self.sources, strict=True) if source in found]


def pool_scopes(region: str) -> tuple[str, ...]:
    """Whose seasonal pools serve `region`, first to last: its own, its hemisphere's, all regions'."""
    if region == s.POOL_ALL_REGIONS:
        return (region,)
    return (region, hemisphere(region), s.POOL_ALL_REGIONS)


def merge_pools(rows: Iterable[Mapping]) -> list[tuple[str, float]]:
    """(item, seasonal score) from pool rows in priority order (`pool_scopes`)."""
    merged: dict[str, float] = {}
    for row in rows:
        for item, score in zip(row.get(s.POOL_ITEM_IDS) or [], row.get(s.POOL_SCORES) or [], strict=False):
            merged.setdefault(item, score)
    return list(merged.items())


def recent_items(history: Sequence[str]) -> list[str]:
    """The user's latest distinct items, latest first: the ones whose neighbours are proposed."""
    return list(dict.fromkeys(reversed(list(history))))[:RECENT_ITEMS]


@dataclass(frozen=True, slots=True)
class Neighbours:
    """Per item (`item_neighbours`): items bought by the same users, and the nearest titles."""

    co_purchase: Mapping[str, Sequence[str]]
    similar: Mapping[str, Sequence[str]]

    @classmethod
    def from_rows(cls, item_ids: Sequence[str], rows: Iterable[Mapping]) -> Neighbours:
        """From one `item_neighbours` row per item (an empty row for an item the store lacks)."""
        rows = list(rows)
        return cls(
            {i: r.get(s.CO_PURCHASE_IDS) or () for i, r in zip(item_ids, rows, strict=True)},
            {i: r.get(s.SIMILAR_IDS) or () for i, r in zip(item_ids, rows, strict=True)},
        )


NO_NEIGHBOURS = Neighbours({}, {})


def neighbours_of(history: Sequence[str], table: Mapping[str, Sequence[str]]) -> list[str]:
    """Neighbours of the user's latest items, the latest item's first."""
    return list(dict.fromkeys(n for item in recent_items(history) for n in table.get(item, ())))


def gather(proposals: Mapping[str, Sequence[str]], limit: int, first: Mapping[str, int] | None = None) -> CandidateSet:
    """The union of the sources' lists, at most `limit` items.

    `first` gives some sources a head start: that many of their best items go in before any other. Then the
    sources take turns, each offering its next best item, so a long seasonal pool can never crowd out the few
    personal neighbours or new arrivals.
    """
    found: dict[str, set[str]] = {}
    first = first or {}
    for name, quota in first.items():
        for item in list(proposals.get(name, ()))[:quota]:
            if item not in found and len(found) < limit:
                found[item] = {name}
    # A source with a head start takes its turns from where its head ended.
    rest = {name: list(items)[first.get(name, 0) :] for name, items in proposals.items()}
    for turn in zip_longest(*rest.values()):
        for name, item in zip(proposals, turn, strict=True):
            if item is None:
                continue
            if item in found:
                found[item].add(name)
            elif len(found) < limit:
                found[item] = {name}
    return CandidateSet(list(found), [tuple(n for n in proposals if n in names) for names in found.values()])


def propose(
    pool: Sequence[str],
    history: Sequence[str],
    neighbours: Neighbours,
    arrivals: Sequence[str],
    limit: int,
    repeats: Sequence[str] = (),
    repeat_limit: int = 0,
) -> CandidateSet:
    """The service's candidates for one request, with the state as of that request.

    `arrivals` are the hemisphere's new arrivals, the most in season first (`new_arrivals`). `repeats` are the
    user's bought items by decayed frequency (`user_repeats`); the first `repeat_limit` of them come before
    every other source.
    """
    proposals = {
        s.SOURCE_REPEAT: list(repeats),
        s.SOURCE_SEASONAL_POOL: list(pool),
        s.SOURCE_CO_PURCHASE: neighbours_of(history, neighbours.co_purchase),
        s.SOURCE_SIMILAR: neighbours_of(history, neighbours.similar),
        s.SOURCE_NEW_ARRIVAL: list(arrivals),
    }
    return gather(proposals, limit, first={s.SOURCE_REPEAT: repeat_limit})
