"""What the terminal shows: progress bars for long work, on stderr so stdout stays parseable (JSON
summaries), and the user's own text made safe to print."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")
console = Console(stderr=True)


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=not console.is_terminal) as bar:
        yield from bar.track(items, total=total, description=description)


# File names, column headers and ids come from the user's data: an ESC byte among them would recolour or rewrite
# the terminal they are printed on, so every control character is shown as its escape (\x1b) instead.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def terminal_text(text: str) -> str:
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def shown(text: str) -> str:
    """User text for a rich table or line: no control characters, and `[bold]` printed, not obeyed."""
    return escape(terminal_text(text))
