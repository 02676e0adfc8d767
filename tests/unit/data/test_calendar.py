from datetime import date

import numpy as np
import pytest

from seasonrec.data.calendar import days_to_next_holiday, hemisphere, retail_events, theme_intensity


def _year(year=2024):
    return np.arange(np.datetime64(f"{year}-01-01"), np.datetime64(f"{year + 1}-01-01"))


def _event_days(region, year, name):
    return [e.day for e in retail_events(region, year) if e.name == name]


@pytest.mark.parametrize(
    ("region", "side"), [("AU", "south"), ("BR", "south"), ("ZA", "south"), ("DE", "north"), ("CN", "north")]
)
def test_hemisphere(region, side):
    assert hemisphere(region) == side


@pytest.mark.parametrize(
    ("year", "day"), [(2023, date(2023, 11, 24)), (2024, date(2024, 11, 29)), (2025, date(2025, 11, 28))]
)
def test_black_friday_is_the_day_after_the_fourth_thursday_of_november(year, day):
    assert _event_days("US", year, "Black Friday") == [day]


def test_black_friday_only_where_it_is_celebrated():
    assert _event_days("CN", 2024, "Black Friday") == []


def test_days_to_christmas():
    assert days_to_next_holiday("GB", date(2024, 12, 20)) == 5
    assert days_to_next_holiday("GB", date(2024, 12, 25)) == 0


def test_days_to_next_holiday_crosses_the_year_end():
    # After Boxing Day, GB's next holiday is New Year's Day of the following year.
    assert days_to_next_holiday("GB", date(2024, 12, 27)) == 5


def test_region_unknown_to_holidays_package_still_gets_retail_events():
    assert days_to_next_holiday("ZZ", date(2024, 12, 20)) == 5


@pytest.mark.parametrize(
    ("year", "day"), [(2023, date(2023, 1, 22)), (2024, date(2024, 2, 10)), (2025, date(2025, 1, 29))]
)
def test_china_gets_spring_festival_on_its_lunar_date(year, day):
    assert _event_days("CN", year, "Spring Festival") == [day]
    assert days_to_next_holiday("CN", day) == 0


def test_spring_festival_is_not_a_german_event():
    assert _event_days("DE", 2024, "Spring Festival") == []


def test_retail_events_are_in_date_order():
    days = [e.day for e in retail_events("CN", 2024)]
    assert days == sorted(days)
    assert all(d.year == 2024 for d in days)


@pytest.mark.parametrize(("region", "peak_month"), [("DE", 7), ("GB", 7), ("AU", 1), ("BR", 1)])
def test_summer_peaks_in_the_local_summer(region, peak_month):
    days = _year()
    lift = theme_intensity("summer", region, days)
    assert lift.shape == days.shape
    assert days[lift.argmax()].astype(object).month == peak_month


def test_theme_intensity_ramps_up_before_the_day_and_fades_after():
    days = np.arange(np.datetime64("2024-11-01"), np.datetime64("2025-01-10"))
    lift = theme_intensity("christmas", "GB", days)
    at = {str(d): float(v) for d, v in zip(days, lift, strict=True)}
    assert at["2024-12-25"] == pytest.approx(lift.max())
    assert 0 < at["2024-12-01"] < at["2024-12-15"] < at["2024-12-25"]
    assert 0 < at["2024-12-26"] < at["2024-12-25"]
    assert at["2025-01-05"] == 0
    assert at["2024-11-01"] == 0
    assert lift.min() >= 0
    assert lift.max() <= 1


def test_theme_intensity_is_zero_for_a_theme_without_events_and_for_no_days():
    assert theme_intensity("no_such_theme", "GB", _year()).max() == 0
    assert len(theme_intensity("summer", "GB", np.array([], dtype="datetime64[D]"))) == 0


def test_theme_intensity_near_new_year_sees_next_years_event():
    # Winter peaks on 15 January, so late December 2024 is already lifted by the 2025 event.
    days = np.arange(np.datetime64("2024-12-20"), np.datetime64("2025-01-01"))
    assert theme_intensity("winter", "DE", days).min() > 0
