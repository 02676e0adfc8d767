"""Stage: turn a source log into validated canonical events and items.

Writes `events.parquet`, `items.parquet`, `events_rejected.parquet`,
`items_rejected.parquet` and `summary.json` into the output folder. The summary
always satisfies rows_in == rows_accepted + sum(rows_rejected.values()).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import polars as pl

from seasonrec import schema as s
from seasonrec.config import IngestConfig, PrivacyConfig
from seasonrec.data import online_retail
from seasonrec.data.validate import (
    Check,
    canonical_checks,
    find_table,
    read_error,
    scan_table,
    split_rows,
    staged,
    time_bounds,
)
from seasonrec.errors import InputError, SeasonrecError
from seasonrec.privacy import retention
from seasonrec.privacy.pseudonyms import Pseudonyms

log = logging.getLogger(__name__)

Source = Literal["canonical", "online-retail"]


def _time_checks(column: str, cfg: IngestConfig, future: bool = True) -> list[Check]:
    low, high = time_bounds(cfg.oldest, cfg.future_tolerance_days)
    checks = [Check("ancient_timestamp", staged(column) < low)]
    if future:
        checks.append(Check("future_timestamp", staged(column) > high))
    return checks


def _amount_checks(cfg: IngestConfig, quantity: bool = True) -> list[Check]:
    checks = [Check("price_above_max", staged(s.PRICE) > cfg.max_price)]
    if quantity:
        checks.append(Check("quantity_above_max", staged(s.QUANTITY) > cfg.max_quantity))
    return checks


def _summary(rows_in: int, accepted: pl.DataFrame, rejected: pl.DataFrame, where: Path) -> dict:
    counts = rejected.group_by(s.REASON).len().sort(s.REASON)
    summary = {
        "rows_in": rows_in,
        "rows_accepted": accepted.height,
        "rows_rejected": dict(zip(counts[s.REASON].to_list(), counts["len"].to_list(), strict=True)),
    }
    if summary["rows_in"] != summary["rows_accepted"] + sum(summary["rows_rejected"].values()):
        raise SeasonrecError(f"{where}: row accounting does not balance: {summary}")
    return summary


def _retention_checks(privacy: PrivacyConfig) -> list[Check]:
    oldest = retention.cutoff(privacy)
    return [] if oldest is None else [Check(retention.REASON, staged(s.EVENT_TS) < oldest)]


def _split(
    lf: pl.LazyFrame,
    typed: dict[str, pl.Expr],
    checks: list[Check],
    where: Path,
    identity: dict[str, str] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    accepted, rejected = split_rows(lf, typed, checks, identity)
    # CSV cells are parsed only here, so a bad encoding or a ragged line surfaces here too.
    try:
        rows_in = lf.select(pl.len()).collect().item()
        accepted_df, rejected_df = pl.collect_all([accepted, rejected], engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise read_error(where, exc) from exc
    return accepted_df, rejected_df, _summary(rows_in, accepted_df, rejected_df, where)


def _ingest_canonical(
    input_path: Path, cfg: IngestConfig, privacy: PrivacyConfig
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, dict]:
    # --input is either the folder holding both tables, or the events table itself
    # (a file, or an `events/` folder of parts) with the items table beside it.
    is_folder = input_path.is_dir() and input_path.name != s.EVENTS_TABLE
    folder = input_path if is_folder else input_path.parent
    events_path = find_table(folder, s.EVENTS_TABLE) if is_folder else input_path
    items_path = find_table(folder, s.ITEMS_TABLE)

    items_lf = scan_table(items_path).with_row_index(s.SOURCE_ROW)
    typed, checks = canonical_checks(items_path, items_lf, s.ITEMS_COLUMNS)
    checks += [
        Check("negative_price", staged(s.PRICE) < 0),
        Check("negative_stock", staged(s.STOCK) < 0),
        *_amount_checks(cfg, quantity=False),
        *_time_checks(s.LAUNCH_TS, cfg, future=False),
        # An id's first row defines the item; a later one is a conflicting copy, not an update.
        Check("duplicate_item_id", ~staged(s.ITEM_ID).is_first_distinct()),
    ]
    items, items_rejected, items_summary = _split(items_lf, typed, checks, items_path)

    events_lf = scan_table(events_path).with_row_index(s.SOURCE_ROW)
    typed, checks = canonical_checks(events_path, events_lf, s.EVENTS_COLUMNS)
    known = items.lazy().select(pl.col(s.ITEM_ID).alias("__known_item"))
    events_lf = events_lf.join(
        known, left_on=typed[s.ITEM_ID], right_on="__known_item", how="left", coalesce=False, maintain_order="left"
    )
    checks += [
        Check("invalid_event_type", ~staged(s.EVENT_TYPE).is_in(list(s.EVENT_TYPES))),
        Check("non_positive_quantity", staged(s.QUANTITY) <= 0),
        Check("negative_price", staged(s.PRICE) < 0),
        *_amount_checks(cfg),
        *_time_checks(s.EVENT_TS, cfg),
        *_retention_checks(privacy),
        Check("unknown_item", pl.col("__known_item").is_null()),
    ]
    events, events_rejected, summary = _split(events_lf, typed, checks, events_path, {s.USER_ID: s.USER_ID})
    return events, events_rejected, items, items_rejected, {**summary, "items": items_summary}


def _ingest_online_retail(
    input_path: Path, cfg: IngestConfig, privacy: PrivacyConfig
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, dict]:
    raw = scan_table(input_path).with_row_index(s.SOURCE_ROW)
    lf, typed, checks = online_retail.events_frame(input_path, raw)
    checks += [*_amount_checks(cfg), *_time_checks(s.EVENT_TS, cfg), *_retention_checks(privacy)]
    identity = {online_retail.USER_COLUMN: s.USER_ID}
    events, rejected, summary = _split(lf, typed, checks, input_path, identity)
    items = online_retail.items_from_events(events.lazy()).collect()
    return events.drop(s.TITLE), rejected, items, pl.DataFrame(), summary


def ingest(
    source: Source, input_path: Path | str, out_dir: Path | str, cfg: IngestConfig, privacy: PrivacyConfig | None = None
) -> dict:
    """Validate `input_path` as `source` and write canonical tables into `out_dir`.

    With `privacy.pseudonymize`, user ids are replaced by their pseudonyms before anything is
    written, in the rejected rows too; with `privacy.retention_days`, older events are rejected
    under their own reason.
    """
    input_path, out_dir = Path(input_path), Path(out_dir)
    privacy = privacy or PrivacyConfig()
    if not input_path.exists():
        raise InputError(input_path, "file not found (--input)")
    if source == "canonical":
        events, rejected, items, items_rejected, summary = _ingest_canonical(input_path, cfg, privacy)
        user_column = s.USER_ID
    elif source == "online-retail":
        events, rejected, items, items_rejected, summary = _ingest_online_retail(input_path, cfg, privacy)
        user_column = online_retail.USER_COLUMN
    else:
        raise SeasonrecError(f"--source: unknown source '{source}' (use canonical or online-retail)")
    if events.is_empty():
        raise SeasonrecError(f"{input_path}: no row passed validation ({summary['rows_rejected']})")
    ids = Pseudonyms(privacy)
    events, rejected = ids.column(events), ids.column(rejected, user_column)
    if ids.active:
        summary["user_ids"] = "pseudonymized"

    out_dir.mkdir(parents=True, exist_ok=True)
    # Ties keep the source's order, not the user ids': pseudonyms must not reorder anything downstream
    # (the training sample, the groups' order), or a pseudonymized run would train another model.
    events.sort(s.EVENT_TS, maintain_order=True).write_parquet(out_dir / f"{s.EVENTS_TABLE}.parquet")
    items.write_parquet(out_dir / f"{s.ITEMS_TABLE}.parquet")
    rejected.write_parquet(out_dir / f"{s.EVENTS_TABLE}{s.REJECTED_SUFFIX}.parquet")
    if items_rejected.width:
        items_rejected.write_parquet(out_dir / f"{s.ITEMS_TABLE}{s.REJECTED_SUFFIX}.parquet")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.debug("ingested %s: %d events, %d items -> %s", input_path, events.height, items.height, out_dir)
    return summary
