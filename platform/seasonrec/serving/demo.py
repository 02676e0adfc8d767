"""Ask the running API for the same users at several moments and places, and print the lists side by side."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.progress import shown

DEFAULT_MOMENTS = (datetime(2024, 7, 10, 12, tzinfo=UTC), datetime(2024, 12, 10, 12, tzinfo=UTC))
DEFAULT_REGIONS = ("GB", "AU")


def show_recommendations(
    settings: Settings,
    users: int,
    moments: list[datetime] | None,
    regions: list[str] | None,
    k: int,
) -> None:
    import httpx

    from seasonrec.features.store import sample_users

    url = f"http://{settings.serving.host}:{settings.serving.port}/v1/recommendations"
    headers = read_headers(settings)
    console = Console(file=sys.stdout)
    for user in sample_users(settings, users):
        table = Table(title=f"user {shown(user)}: top {k}", show_lines=True)
        table.add_column("when / where")
        table.add_column("items (score; reasons)")
        lists: dict[tuple[str, datetime], list[str]] = {}
        for region in regions or DEFAULT_REGIONS:
            for at in moments or DEFAULT_MOMENTS:
                body = {"user_id": user, "k": k, "region": region, "at": at.isoformat()}
                try:
                    reply = httpx.post(url, json=body, headers=headers, timeout=30)
                except httpx.HTTPError as exc:
                    raise SeasonrecError(f"{url}: {type(exc).__name__}; is `seasonrec serve start` running?") from exc
                if reply.status_code != 200:
                    raise SeasonrecError(f"{url}: HTTP {reply.status_code}: {reply.text[:200]}")
                data = reply.json()
                lists[(region, at)] = [i["item_id"] for i in data["items"]]
                lines = [
                    f"{shown(i['item_id'])} ({i['score'] if i['score'] is None else round(i['score'], 2)}; "
                    f"{shown(', '.join(i['reasons'])) or '-'})"
                    for i in data["items"]
                ]
                flag = " DEGRADED" if data["degraded"] else ""
                table.add_row(f"{at:%Y-%m-%d} {region}\nmodel v{data['model_version']}{flag}", "\n".join(lines))
        console.print(table)
        console.print(overlap_lines(lists))


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
