"""A stage's result as a person reads it: a short table of its headline values.

Each command's full result is JSON, kept in a file (or on stdout with `--json`); the terminal gets
this view of it. Long values are cut to what a glance needs: a vector shows its length and first
values, a list its length and first entries, a nested record its keys one level down.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group
from rich.table import Table

from seasonrec import schema as s
from seasonrec.progress import shown

MAX_ROWS = 24  # past this the file holds the rest
MAX_TEXT = 60


def compact(value: Any) -> str:
    """One short line for any JSON value."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            head = ", ".join(compact(v) for v in value[:3])
            return f"{len(value)} values: {head}{', …' if len(value) > 3 else ''}"
        if all(isinstance(v, str | int | bool) for v in value):
            text = ", ".join(str(v) for v in value[:6])
            return compact(f"{text}{', …' if len(value) > 6 else ''}") + (f" ({len(value)})" if len(value) > 6 else "")
        return f"{len(value)} records"
    if isinstance(value, Mapping):
        keys = list(value)
        return f"{{{', '.join(str(k) for k in keys[:5])}{', …' if len(keys) > 5 else ''}}}"
    return str(value)


def rows(result: Any, prefix: str = "", depth: int = 2) -> list[tuple[str, str]]:
    """(dotted key, compact value) pairs: mappings are opened `depth` levels down."""
    if not isinstance(result, Mapping):
        return [(prefix or "result", compact(result))]
    out: list[tuple[str, str]] = []
    for key, value in result.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value and depth > 1:
            out.extend(rows(value, name, depth - 1))
        else:
            out.append((name, compact(value)))
    return out


def summary_table(result: Any, title: str) -> Table:
    table = Table(title=shown(title), title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    found = rows(result)
    for key, value in found[:MAX_ROWS]:
        table.add_row(shown(key), shown(value))
    if len(found) > MAX_ROWS:
        table.add_row("…", f"{len(found) - MAX_ROWS} more in the JSON")
    return table


def online_view(results: list[dict]) -> Group:
    """`features online`: per user, the user's features, then the items' features side by side."""
    tables = []
    for result in results:
        user = result.get("user", {})
        user_id = user.get(s.USER_ID, "?")
        tables.append(summary_table({k: v for k, v in user.items() if k != s.USER_ID}, f"user {user_id}"))
        items = result.get("items") or []
        if items:
            table = Table(title=shown(f"user {user_id}: features of {len(items)} items"), title_justify="left")
            table.add_column("feature", style="bold")
            for item in items:
                table.add_column(shown(str(item.get(s.ITEM_ID, "?"))), overflow="fold")
            for name in [k for k in items[0] if k not in (s.ITEM_ID, s.USER_ID)]:
                table.add_row(shown(name), *(shown(compact(item.get(name))) for item in items))
            tables.append(table)
    return Group(*tables)
