"""What the terminal shows: progress for long work, on stderr so stdout stays for results, and the
user's own text made safe to print.

On a terminal each task is a rich line (spinner, bar or count, a note such as the validation
metric, elapsed time) that stays once done, so the finished lines read as the run's log. Anywhere
else (CI, a pipe, a file) there are no control sequences at all: a plain line when a task ends, and
one every `PLAIN_EVERY_S` while it runs, so a slow step still shows it is alive.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

T = TypeVar("T")
console = Console(stderr=True)
PLAIN_EVERY_S = 30.0

# rich allows one live display at a time: tasks started inside another task join its display.
_live: Progress | None = None
_depth = 0
_lock = threading.Lock()


def _elapsed(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


class Task:
    """One piece of long work: `advance` as parts finish, `note` what is worth seeing (a metric)."""

    def __init__(self, description: str, total: int | None):
        self.description, self.total = description, total
        self.completed, self.text = 0, ""
        self.started = self._last_line = time.monotonic()
        self._id: TaskID | None = None

    def advance(self, n: int = 1) -> None:
        self.completed += n
        self._show()

    def set(self, completed: int) -> None:
        """Where the work stands, for work that can step back (a restarted Ray Train run repeats epochs)."""
        self.completed = completed
        self._show()

    def note(self, text: str) -> None:
        self.text = text
        self._show()

    def _counts(self) -> str:
        if self.total is not None:
            return f" {self.completed}/{self.total}"
        return f" {self.completed}" if self.completed else ""

    def _show(self) -> None:
        if self._id is not None and _live is not None:
            _live.update(self._id, completed=self.completed, total=self.total, note=self.text)
        elif self.total is not None and self.completed >= self.total:
            return  # the done line follows at once
        elif (now := time.monotonic()) - self._last_line >= PLAIN_EVERY_S:
            self._last_line = now
            self._plain(f"{self._counts()}{self._noted()} ({_elapsed(now - self.started)})")

    def _noted(self) -> str:
        return f", {self.text}" if self.text else ""

    def _plain(self, text: str) -> None:
        print(terminal_text(f"{self.description}:{text}"), file=sys.stderr, flush=True)

    def _done(self) -> None:
        if self._id is None:
            self._plain(f" done{self._counts()}{self._noted()} in {_elapsed(time.monotonic() - self.started)}")


@contextmanager
def task(description: str, total: int | None = None) -> Iterator[Task]:
    """A spinner (no `total`) or a bar for the work inside the block."""
    global _live, _depth
    current = Task(description, total)
    with _lock:
        if console.is_terminal:
            if _live is None:
                _live = Progress(
                    SpinnerColumn(finished_text="[green]✓"),
                    TextColumn("{task.description}"),
                    BarColumn(bar_width=24),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[note]}"),
                    TimeElapsedColumn(),
                    console=console,
                )
                _live.start()
            current._id = _live.add_task(shown(description), total=total, note="")
        _depth += 1
    try:
        yield current
        if current._id is not None and _live is not None:
            _live.update(current._id, total=current.completed if total is None else total, completed=current.completed)
        current._done()
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _live is not None:
                _live.stop()
                _live = None


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """`items`, shown as a bar while they are worked through."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with task(description, total) as bar:
        for item in items:
            yield item
            bar.advance()


# File names, column headers and ids come from the user's data: an ESC byte among them would recolour or rewrite
# the terminal they are printed on, so every control character is shown as its escape (\x1b) instead.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def terminal_text(text: str) -> str:
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def shown(text: str) -> str:
    """User text for a rich table or line: no control characters, and `[bold]` printed, not obeyed."""
    return escape(terminal_text(text))
