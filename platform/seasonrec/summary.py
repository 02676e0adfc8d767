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
from rich.text import Text

from seasonrec import schema as s
from seasonrec.progress import shown, terminal_text

MAX_ROWS = 24  # values in a summary; the JSON holds the rest
MAX_TEXT = 60
OPEN_UP_TO = 4  # a nested record with more keys than this is cut to its first few, not opened


def short_title(title: str | None, width: int = 30) -> str:
    """A product title cut to `width` for a table cell; the id beside it says which item exactly."""
    title = " ".join((title or "").split())
    return title if len(title) <= width else title[: width - 1].rstrip() + "…"


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
        if not value:
            return "none"
        pairs = [f"{k} {compact(v)}" if not isinstance(v, Mapping | list) else str(k) for k, v in value.items()]
        return ", ".join(pairs[:3]) + (f", … ({len(pairs)})" if len(pairs) > 3 else "")
    return str(value)


def rows(result: Any, prefix: str = "", depth: int = 2) -> list[tuple[str, str]]:
    """(dotted key, compact value) pairs: small mappings are opened `depth` levels down, big ones cut."""
    if not isinstance(result, Mapping):
        return [(prefix or "result", compact(result))]
    out: list[tuple[str, str]] = []
    for key, value in result.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and 0 < len(value) <= OPEN_UP_TO and depth > 1:
            out.extend(rows(value, name, depth - 1))
        else:
            out.append((name, compact(value)))
    return out


def summary_line(result: Any, title: str) -> Text:
    """A stage's summary as one flowing paragraph: `title: key value · key value ...`."""
    found = rows(result)
    text = Text()
    text.append(f"{terminal_text(title)}: ", style="bold")
    for i, (key, value) in enumerate(found[:MAX_ROWS]):
        text.append(" · " if i else "")
        text.append(terminal_text(key), style="cyan")
        text.append(f" {terminal_text(value)}")
    if len(found) > MAX_ROWS:
        text.append(f" · … {len(found) - MAX_ROWS} more in the JSON")
    return text


def online_view(results: list[dict]) -> Group:
    """`features online`: per user, the user's features, then the items' features side by side."""
    tables = []
    for result in results:
        user = result.get("user", {})
        user_id = user.get(s.USER_ID, "?")
        line = summary_line({k: v for k, v in user.items() if k != s.USER_ID}, f"user {user_id}")
        # One line the terminal wraps, as every summary: rich would cut it at the table's width.
        line.no_wrap, line.overflow = True, "ignore"
        tables.append(line)
        items = result.get("items") or []
        if items:
            table = Table(title=shown(f"user {user_id}: features of {len(items)} items"), title_justify="left")
            table.add_column("feature", style="bold")
            for item in items:
                table.add_column(shown(str(item.get(s.ITEM_ID, "?"))), overflow="fold")
            names = [k for k in items[0] if k not in (s.ITEM_ID, s.USER_ID)]
            empty = [n for n in names if all(item.get(n) is None for item in items)]
            for name in names:
                if name not in empty:
                    table.add_row(shown(name), *(shown(compact(item.get(name))) for item in items))
            tables.append(table)
            if empty:  # one line, not a row of None each: a new user or item has many
                text = f"no value for these items: {', '.join(empty)}"
                tables.append(Text(terminal_text(text), style="dim", no_wrap=True, overflow="ignore"))
    return Group(*tables)
