"""Ask the running API for the same users at several moments and places, and print the lists side by side."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.progress import shown
from seasonrec.summary import short_title

DEFAULT_MOMENTS = (datetime(2024, 7, 10, 12, tzinfo=UTC), datetime(2024, 12, 10, 12, tzinfo=UTC))
DEFAULT_REGIONS = ("GB", "AU")
TITLE_WIDTH = 30  # two regions side by side fit an 80-column terminal
SOURCE = "source:"  # the reasons that name a candidate source, shown together


def show_recommendations(
    settings: Settings,
    users: int,
    moments: list[datetime] | None,
    regions: list[str] | None,
    k: int,
) -> None:
    """For each user and moment, one table: a column per region, a row per rank."""
    import httpx

    from seasonrec.features.store import sample_users

    url = f"http://{settings.serving.host}:{settings.serving.port}/v1/recommendations"
    headers = read_headers(settings)
    # Off a terminal (a pipe, a log) 120 columns: two regions side by side without wrapping every reason.
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 120)
    regions = regions or list(DEFAULT_REGIONS)
    for user in sample_users(settings, users):
        lists: dict[tuple[str, datetime], list[str]] = {}
        for at in moments or DEFAULT_MOMENTS:
            answers = {}
            for region in regions:
                body = {"user_id": user, "k": k, "region": region, "at": at.isoformat()}
                try:
                    reply = httpx.post(url, json=body, headers=headers, timeout=30)
                except httpx.HTTPError as exc:
                    raise SeasonrecError(f"{url}: {type(exc).__name__}; is `seasonrec serve start` running?") from exc
                if reply.status_code != 200:
                    raise SeasonrecError(f"{url}: HTTP {reply.status_code}: {reply.text[:200]}")
                answers[region] = reply.json()
                lists[(region, at)] = [i["item_id"] for i in answers[region]["items"]]
            console.print(comparison_table(user, at, answers))
        console.print(overlap_lines(lists), highlight=False)


def comparison_table(user: str, at: datetime, answers: dict[str, dict]) -> Table:
    """Ranks down, regions across; each cell the item's short title and id, its category, score and reasons."""
    table = Table(title=f"user {shown(user)} on {at:%Y-%m-%d}", title_justify="left", show_lines=True)
    table.add_column("#", justify="right")
    for region, data in answers.items():
        flag = " [bold red]DEGRADED[/]" if data["degraded"] else ""
        table.add_column(f"{shown(region)} (model v{shown(str(data['model_version']))}){flag}", overflow="fold")
    for rank in range(max(len(d["items"]) for d in answers.values())):
        cells = [item_cell(d["items"][rank]) if rank < len(d["items"]) else "" for d in answers.values()]
        table.add_row(str(rank + 1), *cells)
    return table


def item_cell(item: dict) -> str:
    """Title and id; category, score and the candidate sources that proposed it; then the rules' reasons."""
    score = "-" if item["score"] is None else f"{item['score']:.2f}"
    name = short_title(item.get("title"), TITLE_WIDTH) or item["item_id"]
    sources = [r.removeprefix(SOURCE) for r in item["reasons"] if r.startswith(SOURCE)]
    rules = [r for r in item["reasons"] if not r.startswith(SOURCE)]
    details = " · ".join(x for x in (item.get("category"), score, "+".join(sources)) if x)
    lines = [f"{shown(name)} [dim]{shown(item['item_id'])}[/]", f"[dim]{shown(details)}[/]"]
    if rules:
        lines.append(shown(", ".join(rules)))
    return "\n".join(lines)


def read_headers(settings: Settings) -> dict[str, str]:
    """The bearer token where reads need it too (`auth.protect_reads`): the configured one, else the stack's."""
    if not settings.auth.protect_reads:
        return {}
    from seasonrec.serving.stack import ServeStack

    return {"Authorization": f"Bearer {ServeStack(settings).write_token()}"}


def overlap_lines(lists: dict[tuple[str, datetime], list[str]]) -> str:
    """One line per moment: how many items the first region's list shares with each other region's."""
    regions = list(dict.fromkeys(region for region, _ in lists))
    lines = []
    for at in dict.fromkeys(when for _, when in lists):
        first = lists[(regions[0], at)]
        for other in regions[1:]:
            shared = len(set(first) & set(lists[(other, at)]))
            lines.append(f"{at:%Y-%m-%d}: {regions[0]} and {other} share {shared} of {len(first)} items")
    return "\n".join(lines)
