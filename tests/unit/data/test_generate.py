from datetime import date

import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.config import GenerateConfig
from seasonrec.data.calendar import hemisphere
from seasonrec.data.generate import generate
from seasonrec.errors import SeasonrecError

START, END = date(2024, 1, 1), date(2024, 12, 31)


def _cfg(**overrides):
    return GenerateConfig(
        **{"users": 200, "items": 60, "chunk_users": 80, "start": START, "end": END, "seed": 3, **overrides}
    )


def _events(out):
    return pl.read_parquet(sorted((out / s.EVENTS_TABLE).glob("part-*.parquet")))


def _files(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    out = tmp_path_factory.mktemp("shop")
    summary = generate(out, _cfg())
    return out, summary


def test_writes_canonical_tables_and_summary(shop):
    out, summary = shop
    events = _events(out)
    items = pl.read_parquet(out / f"{s.ITEMS_TABLE}.parquet")
    assert summary == {"users": 200, "items": 60, "events": events.height, "start": "2024-01-01", "end": "2024-12-31"}
    assert events.height > 0
    assert events.columns == list(s.EVENTS_COLUMNS)
    assert items.columns == list(s.ITEMS_COLUMNS)
    assert items.height == 60
    assert items[s.ITEM_ID].is_unique().all()
    assert set(events[s.EVENT_TYPE]) == set(s.EVENT_TYPES)
    assert events.filter(pl.col(s.QUANTITY) < 1).is_empty()
    assert events.filter(pl.col(s.PRICE) <= 0).is_empty()


def test_events_stay_inside_the_window(shop):
    out, _ = shop
    days = _events(out)[s.EVENT_TS].dt.date()
    assert days.min() >= START
    assert days.max() <= END


def test_events_reference_existing_items_and_never_precede_launch(shop):
    out, _ = shop
    items = pl.read_parquet(out / f"{s.ITEMS_TABLE}.parquet")
    events = _events(out)
    joined = events.join(items.select(s.ITEM_ID, s.LAUNCH_TS), on=s.ITEM_ID, how="left")
    assert joined[s.LAUNCH_TS].null_count() == 0
    assert joined.filter(pl.col(s.EVENT_TS) < pl.col(s.LAUNCH_TS)).is_empty()
    # The check means something only if some items launch during the window.
    new_items = items.filter(pl.col(s.LAUNCH_TS).dt.date() > START)
    assert new_items.height > 0
    assert events.filter(pl.col(s.ITEM_ID).is_in(new_items[s.ITEM_ID].to_list())).height > 0


def test_regions_cover_both_hemispheres(shop):
    out, _ = shop
    regions = set(_events(out)[s.REGION])
    assert {hemisphere(r) for r in regions} == {"north", "south"}


def test_each_user_has_one_region(shop):
    out, _ = shop
    per_user = _events(out).group_by(s.USER_ID).agg(pl.col(s.REGION).n_unique())
    assert per_user[s.REGION].max() == 1


def test_chunks_are_written_as_separate_parts_with_disjoint_users(shop):
    out, _ = shop
    parts = sorted((out / s.EVENTS_TABLE).glob("part-*.parquet"))
    assert len(parts) == 3  # 200 users in chunks of 80
    users = [set(pl.read_parquet(p)[s.USER_ID]) for p in parts]
    assert all(users)
    assert sum(len(u) for u in users) == len(set().union(*users))
    assert len(set().union(*users)) <= 200


def test_rerun_with_fewer_chunks_leaves_no_stale_parts(tmp_path):
    generate(tmp_path, _cfg())
    summary = generate(tmp_path, _cfg(chunk_users=500))
    assert len(list((tmp_path / s.EVENTS_TABLE).glob("*.parquet"))) == 1
    assert _events(tmp_path).height == summary["events"]


def test_same_seed_gives_identical_bytes(tmp_path, shop):
    out, _ = shop
    generate(tmp_path, _cfg())
    assert _files(tmp_path) == _files(out)


def test_different_seed_gives_different_data(tmp_path, shop):
    out, _ = shop
    generate(tmp_path, _cfg(seed=4))
    assert not _events(tmp_path).equals(_events(out))
    assert not pl.read_parquet(tmp_path / "items.parquet").equals(pl.read_parquet(out / "items.parquet"))


def test_end_before_start_is_rejected(tmp_path):
    with pytest.raises(SeasonrecError, match="--end"):
        generate(tmp_path, _cfg(start=date(2024, 5, 1), end=date(2024, 4, 1)))


def test_themes_are_kept_aside_for_every_item(shop):
    out, _ = shop
    themes = pl.read_parquet(out / "item_themes.parquet")
    items = pl.read_parquet(out / f"{s.ITEMS_TABLE}.parquet")
    assert "theme" not in items.columns
    assert sorted(themes[s.ITEM_ID].to_list()) == sorted(items[s.ITEM_ID].to_list())
    assert "evergreen" in set(themes["theme"])


def test_summer_items_sell_in_the_southern_summer(tmp_path):
    generate(tmp_path, _cfg(users=3000, items=150, chunk_users=1000, seed=11))
    themes = pl.read_parquet(tmp_path / "item_themes.parquet")
    events = _events(tmp_path).join(themes, on=s.ITEM_ID).with_columns(month=pl.col(s.EVENT_TS).dt.month())

    def summer_share(region, months):
        window = events.filter(pl.col(s.REGION) == region, pl.col("month").is_in(months))
        assert window.height > 300
        return (window["theme"] == "summer").mean()

    dec_feb, jun_aug = [12, 1, 2], [6, 7, 8]
    assert summer_share("AU", dec_feb) > 2 * summer_share("DE", dec_feb)
    assert summer_share("AU", dec_feb) > summer_share("AU", jun_aug)
    assert summer_share("DE", jun_aug) > summer_share("DE", dec_feb)
