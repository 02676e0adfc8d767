"""Retention: events older than `privacy.retention_days` are not kept, and never dropped without a count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from seasonrec import schema as s
from seasonrec.config import PrivacyConfig

REASON = "older_than_retention"


def cutoff(privacy: PrivacyConfig, now: datetime | None = None) -> datetime | None:
    """The oldest event time kept, or None when everything is kept."""
    if privacy.retention_days is None:
        return None
    return (now or datetime.now(UTC)) - timedelta(days=privacy.retention_days)


def retained(events: pl.LazyFrame, privacy: PrivacyConfig) -> tuple[pl.LazyFrame, int]:
    """`events` within retention, and how many rows fell outside it."""
    oldest = cutoff(privacy)
    if oldest is None:
        return events, 0
    old = events.filter(pl.col(s.EVENT_TS) < oldest).select(pl.len()).collect().item()
    return events.filter(pl.col(s.EVENT_TS) >= oldest), old
