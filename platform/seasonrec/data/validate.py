"""Reading input tables and splitting their rows into accepted and rejected.

Every row ends up in exactly one of the two outputs. A rejected row keeps its
original values (as text), its position in the source and the first reason it
failed, so nothing is ever dropped silently.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from seasonrec import schema as s
from seasonrec.errors import InputError

SUFFIXES = (".parquet", ".csv", ".xlsx")

ID_COLUMNS = (s.USER_ID, s.ITEM_ID)


def find_table(directory: Path, name: str) -> Path:
    """`name.parquet`, `name.csv`, `name.xlsx` or a folder `name/` of Parquet parts."""
    for candidate in [directory / name, *(directory / f"{name}{sfx}" for sfx in SUFFIXES)]:
        if candidate.exists():
            return candidate
    raise InputError(
        directory, f"no '{name}' table found (looked for {name}/, {', '.join(name + x for x in SUFFIXES)})"
    )


def scan_table(path: Path) -> pl.LazyFrame:
    """Lazily open a Parquet file, a folder of Parquet parts, a CSV or an XLSX sheet."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        parts = sorted(path.glob("*.parquet"))
        if not parts:
            raise InputError(path, "folder holds no .parquet files")
        lf = pl.scan_parquet(parts, glob=False)
    elif path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    elif path.suffix == ".parquet":
        # A name is a name: "[" in it is not a glob pattern.
        lf = pl.scan_parquet(path, glob=False)
    elif path.suffix == ".csv":
        # Everything is read as text so a bad cell becomes a rejected row, not a failed read.
        lf = pl.scan_csv(path, infer_schema=False, glob=False)
    elif path.suffix == ".xlsx":
        lf = _read_xlsx(path).lazy()
    else:
        raise InputError(path, f"unsupported file type '{path.suffix}' (use {', '.join(SUFFIXES)})")
    try:
        schema = lf.collect_schema()
        empty = lf.select(pl.len()).collect().item() == 0
    except pl.exceptions.PolarsError as exc:
        raise read_error(path, exc) from exc
    if empty:
        raise InputError(path, "file has no rows")
    # A rejected row keeps its cells as text, and a list or struct has no honest one-cell text form.
    for column, dtype in schema.items():
        if dtype.is_nested():
            raise InputError(path, f"nested type {dtype} is not supported (flatten it)", column=column)
    return lf


def _read_xlsx(path: Path) -> pl.DataFrame:
    from fastexcel import FastExcelError

    try:
        return pl.read_excel(path)
    except (FastExcelError, pl.exceptions.PolarsError) as exc:
        raise InputError(path, "file is not a readable .xlsx workbook (corrupt, encrypted or another format)") from exc


def read_error(path: Path, exc: Exception) -> InputError:
    """The one-line error for a file polars fails to parse, in our words rather than the parser's."""
    text = str(exc).lower()
    if path.suffix == ".csv" and ("utf-8" in text or "utf8" in text):
        return InputError(path, "file is not UTF-8 text (save it as UTF-8)")
    if path.suffix == ".csv" and "fields" in text:
        line = _first_long_line(path)
        where = f"line {line}" if line else "a line"
        return InputError(path, f"{where} has more fields than the header (check quoting and separators)")
    detail = str(exc).strip().splitlines() or [type(exc).__name__]
    return InputError(path, f"cannot be read ({detail[0]})")


def _first_long_line(path: Path) -> int | None:
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        rows = csv.reader(f)
        width = len(next(rows, []))
        return next((rows.line_num for row in rows if len(row) > width), None)


def require_columns(lf: pl.LazyFrame, path: Path, columns: list[str]) -> pl.Schema:
    present = lf.collect_schema()
    for column in columns:
        if column not in present:
            raise InputError(path, f"missing (found: {', '.join(present.names())})", column=column)
    return present


_NUMERIC = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64, pl.Float32, pl.Float64)


def typed_column(path: Path, column: str, kind: str, dtype: pl.DataType) -> pl.Expr:
    """Cast one input column to its canonical kind; cells that do not fit become null.

    A column whose whole type cannot hold the kind (a list where a number belongs,
    a number where a timestamp belongs) is a file-level error, not a million rejects.
    """
    col = pl.col(column)
    textual = dtype == pl.String
    if kind == "str":
        if not (textual or dtype in _NUMERIC or dtype == pl.Categorical):
            raise InputError(path, f"expected text, found {dtype}", column=column)
        return col.cast(pl.String).str.strip_chars()
    if kind in ("int", "float"):
        if not (textual or dtype in _NUMERIC):
            raise InputError(path, f"expected a number, found {dtype}", column=column)
        target = pl.Int64 if kind == "int" else pl.Float64
        if textual:
            col = col.str.strip_chars().cast(pl.Float64, strict=False)
        if kind == "int":
            col = pl.when(col.cast(pl.Float64) == col.cast(pl.Float64).round()).then(col)
        return col.cast(target, strict=False)
    if kind == "datetime":
        if textual:
            return parse_timestamp_text(col)
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
            return col.dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC"))
        if dtype == pl.Date:
            return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        raise InputError(path, f"expected a timestamp, found {dtype}", column=column)
    raise ValueError(f"unknown column kind {kind}")


def staged(column: str) -> pl.Expr:
    """The typed value of a canonical column inside `split_rows`, for use in checks."""
    return pl.col(f"__{column}")


# Tried in order, per cell, so one file may mix them. Month-first US dates come after the
# ISO forms; day-first dates are not guessed, since 01/02 could be either.
ZONED_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z")
NAIVE_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
)


def parse_timestamp_text(col: pl.Expr, naive_zone: str = "UTC") -> pl.Expr:
    """Text to UTC timestamps; naive values are read in `naive_zone`. Unparseable cells become null."""
    text = col.str.strip_chars().str.replace(r"Z$", "+00:00")
    zoned = [text.str.strptime(pl.Datetime("us", "UTC"), f, strict=False) for f in ZONED_FORMATS]
    naive = [text.str.strptime(pl.Datetime("us"), f, strict=False) for f in NAIVE_FORMATS]
    local = pl.coalesce(naive).dt.replace_time_zone(naive_zone, ambiguous="earliest", non_existent="null")
    return pl.coalesce([*zoned, local.dt.convert_time_zone("UTC")])


@dataclass(frozen=True)
class Check:
    """A row fails `reason` where `bad` is true. Checks run in order; the first failure wins."""

    reason: str
    bad: pl.Expr


def time_bounds(oldest: date, future_tolerance_days: int) -> tuple[datetime, datetime]:
    low = datetime(oldest.year, oldest.month, oldest.day, tzinfo=UTC)
    high = datetime.now(UTC) + timedelta(days=future_tolerance_days)
    return low, high


def non_finite(column: str, dtype: pl.DataType) -> pl.Expr:
    """True where a number cell holds NaN or an infinity, which float parsing accepts as numbers."""
    raw = pl.col(column).str.strip_chars() if dtype == pl.String else pl.col(column)
    return ~raw.cast(pl.Float64, strict=False).is_finite()


def id_checks(column: str) -> list[Check]:
    """An id the API could never be asked for, or that would rewrite a terminal it is printed on."""
    return [
        Check(f"{column}_too_long", staged(column).str.len_chars() > s.MAX_ID_LENGTH),
        Check(f"{column}_control_character", staged(column).str.contains(r"\p{Cc}")),
    ]


def canonical_checks(path: Path, lf: pl.LazyFrame, columns: dict[str, str]) -> tuple[dict[str, pl.Expr], list[Check]]:
    """Typed expressions and the missing/invalid checks for each canonical column."""
    present = require_columns(lf, path, list(columns))
    typed: dict[str, pl.Expr] = {}
    checks: list[Check] = []
    for column, kind in columns.items():
        expr = typed_column(path, column, kind, present[column])
        typed[column] = expr
        raw_missing = pl.col(column).is_null()
        if present[column] == pl.String:
            raw_missing = raw_missing | (pl.col(column).str.strip_chars() == "")
        if column not in s.NULLABLE_COLUMNS:
            checks.append(Check(f"missing_{column}", raw_missing))
        if kind in ("int", "float"):
            checks.append(Check(f"non_finite_{column}", non_finite(column, present[column])))
        checks.append(Check(f"invalid_{column}", ~raw_missing & staged(column).is_null()))
        if column in ID_COLUMNS:
            checks += id_checks(column)
    return typed, checks


def split_rows(
    lf: pl.LazyFrame, typed: dict[str, pl.Expr], checks: list[Check], identity: dict[str, str] | None = None
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """(accepted rows in canonical columns, rejected rows as text with `reason` and `source_row`).

    `lf` must carry a `source_row` column. Checks see typed values through `staged()`,
    so each cast is evaluated once. `identity` maps a source column to the canonical column its
    rejected rows should show instead, where it parsed: a customer number in the one form
    that pseudonyms and erasure look for ("12345", not "12345.0").
    """
    identity = identity or {}
    # Helper columns (prefixed "__") are not part of the source row.
    originals = [c for c in lf.collect_schema().names() if c != s.SOURCE_ROW and not c.startswith("__")]
    staged = lf.with_columns(**{f"__{k}": v for k, v in typed.items()})
    reason = pl.lit(None, dtype=pl.String)
    for check in reversed(checks):
        reason = pl.when(check.bad.fill_null(False)).then(pl.lit(check.reason)).otherwise(reason)
    staged = staged.with_columns(reason.alias(s.REASON))
    accepted = staged.filter(pl.col(s.REASON).is_null()).select([pl.col(f"__{k}").alias(k) for k in typed])
    shown = [
        pl.coalesce(pl.col(f"__{identity[c]}").cast(pl.String), pl.col(c).cast(pl.String)).alias(c)
        if c in identity
        else pl.col(c).cast(pl.String)
        for c in originals
    ]
    rejected = staged.filter(pl.col(s.REASON).is_not_null()).select(pl.col(s.SOURCE_ROW), *shown, pl.col(s.REASON))
    return accepted, rejected
