"""The demo's comparison of regions: how much of one region's list another region shares."""

from __future__ import annotations

from datetime import UTC, datetime

from seasonrec.serving.demo import overlap_lines

JULY, DECEMBER = datetime(2024, 7, 10, tzinfo=UTC), datetime(2024, 12, 10, tzinfo=UTC)


def test_each_moment_says_how_many_items_the_regions_share():
    lists = {
        ("GB", JULY): ["a", "b", "c", "d"],
        ("GB", DECEMBER): ["x", "y"],
        ("AU", JULY): ["d", "e", "f", "g"],
        ("AU", DECEMBER): ["x", "y"],
    }
    assert overlap_lines(lists).splitlines() == [
        "2024-07-10: GB and AU share 1 of 4 items",
        "2024-12-10: GB and AU share 2 of 2 items",
    ]
