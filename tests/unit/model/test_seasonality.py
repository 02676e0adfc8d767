"""Which themes are in season where and when, from the retail calendar; reading the generator's item themes."""

from __future__ import annotations

import polars as pl
import pytest

from seasonrec import schema as s
from seasonrec.errors import SeasonrecError
from seasonrec.model.seasonality import load_themes, season_of

THEMES = {"I1": "summer", "I2": "evergreen", "I3": "spring_festival", "I4": "summer", "I5": "winter"}
IN, OFF, NEITHER = 1, -1, 0


@pytest.mark.parametrize(
    ("region", "month", "summer", "winter"),
    [
        ("GB", 7, IN, OFF),
        ("GB", 12, OFF, IN),
        ("AU", 12, IN, OFF),
        ("AU", 7, OFF, IN),
    ],
)
def test_summer_and_winter_flip_across_the_equator(region, month, summer, winter):
    season = season_of(THEMES, region, 2024, month)
    assert (season["summer"], season["winter"]) == (summer, winter)


def test_evergreen_counts_in_neither_and_every_theme_is_marked_once():
    for region, month in (("GB", 7), ("AU", 1)):
        season = season_of(THEMES, region, 2024, month)
        assert season.keys() == {"summer", "evergreen", "spring_festival", "winter"}
        assert season["evergreen"] == NEITHER


def test_a_theme_celebrated_only_elsewhere_is_off_season():
    assert season_of(THEMES, "GB", 2024, 1)["spring_festival"] == OFF
    # Chinese New Year 2024 fell on 10 February: shoppers in CN buy for it through January.
    assert season_of(THEMES, "CN", 2024, 1)["spring_festival"] == IN


def test_load_themes_reads_item_to_theme(tmp_path):
    path = tmp_path / s.THEMES_FILE
    pl.DataFrame({s.ITEM_ID: ["I1", "I2"], s.THEME: ["summer", "evergreen"], "other": [1, 2]}).write_parquet(path)
    assert load_themes(path) == {"I1": "summer", "I2": "evergreen"}


@pytest.mark.parametrize("content", [None, "no theme column"])
def test_unreadable_themes_are_a_one_line_error_naming_the_file(tmp_path, content):
    path = tmp_path / s.THEMES_FILE
    if content:
        pl.DataFrame({s.ITEM_ID: ["I1"]}).write_parquet(path)
    with pytest.raises(SeasonrecError) as err:
        load_themes(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
