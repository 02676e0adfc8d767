"""What the request path's stages hand each other (`stages.py`): slotted dataclasses of columns.

Candidates travel as one list per field, in candidate order: lists pickle about 3 times faster than one
object per item, and in the `graph` topology every hop between replicas pickles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from seasonrec.serving.rules import CandidateColumns


@dataclass(slots=True)
class Fetched:
    """One request's features: the user's row and the candidates' columns (`fetcher.ITEM_COLUMNS`, sources)."""

    user: dict[str, Any]
    items: dict[str, list]
    region: str
    unknown_candidates: int = 0
    elapsed_ms: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Scored:
    """The candidates with their scores, and what the rules read besides; `degraded`: seasonal scores, no model."""

    columns: CandidateColumns
    purchases: dict[str, int]  # item id -> Unix time of the user's last purchase of it
    region: str
    model_version: str | None
    degraded: bool
    unknown_candidates: int = 0
    elapsed_ms: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class RankedItem:
    item_id: str
    score: float | None  # None: a pinned item that was not scored
    reasons: list[str]


@dataclass(slots=True)
class Ranked:
    """The answer: the top k after the rules."""

    items: list[RankedItem]
    model_version: str | None
    degraded: bool
    unknown_candidates: int = 0
    elapsed_ms: dict[str, float] = field(default_factory=dict)
