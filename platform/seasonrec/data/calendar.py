"""Holiday calendars per region: the `holidays` package plus the retail-events YAML.

Regions are ISO 3166 alpha-2 codes. The hemisphere matters because seasons flip:
December is summer in Australia, so "summer" items peak there in January.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import holidays
import numpy as np
import yaml

from seasonrec.config import PROJECT_ROOT
from seasonrec.errors import SeasonrecError

RETAIL_EVENTS_FILE = PROJECT_ROOT / "configs" / "retail_events.yaml"

SOUTHERN = frozenset({"AU", "NZ", "BR", "AR", "CL", "ZA", "UY", "PY", "PE", "BO", "ID", "MU"})


def hemisphere(region: str) -> str:
    return "south" if region in SOUTHERN else "north"


@dataclass(frozen=True)
class RetailEvent:
    name: str
    theme: str
    day: date
    lead_days: int


@lru_cache(maxsize=4)
def _event_specs(path: Path = RETAIL_EVENTS_FILE) -> tuple[dict, ...]:
    try:
        specs = yaml.safe_load(path.read_text())["events"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise SeasonrecError(f"{path}: cannot read retail events ({exc})") from exc
    return tuple(specs)


def _black_friday(year: int) -> date:
    nov1 = date(year, 11, 1)
    first_thursday = nov1 + timedelta(days=(3 - nov1.weekday()) % 7)
    return first_thursday + timedelta(weeks=3, days=1)


def _event_day(spec: dict, region: str, year: int) -> date | None:
    if "rule" in spec:
        if spec["rule"] != "black_friday":
            raise SeasonrecError(f"{RETAIL_EVENTS_FILE}: unknown rule '{spec['rule']}' in {spec['name']}")
        return _black_friday(year)
    if "holiday" in spec:
        found = holidays.country_holidays(spec.get("holiday_country", region), years=year, language="en_US")
        days = sorted(d for d, name in found.items() if name == spec["holiday"])
        return days[0] if days else None
    when = spec["date"]
    if isinstance(when, dict):
        when = when[hemisphere(region)]
    month, day = (int(x) for x in when.split("-"))
    return date(year, month, day)


@lru_cache(maxsize=1024)
def retail_events(region: str, year: int) -> tuple[RetailEvent, ...]:
    """The retail events that apply to `region` in `year`, in date order."""
    out = []
    for spec in _event_specs():
        regions = spec.get("regions", "all")
        if regions != "all" and region not in regions:
            continue
        day = _event_day(spec, region, year)
        if day is not None:
            out.append(RetailEvent(spec["name"], spec["theme"], day, int(spec.get("lead_days", 14))))
    return tuple(sorted(out, key=lambda e: e.day))


@lru_cache(maxsize=1024)
def _holiday_days(region: str, year: int) -> tuple[date, ...]:
    try:
        public = set(holidays.country_holidays(region, years=year))
    except NotImplementedError:
        # Regions the package does not know still get the retail events.
        public = set()
    return tuple(sorted(public | {e.day for e in retail_events(region, year)}))


@lru_cache(maxsize=65536)
def days_to_next_holiday(region: str, day: date) -> int:
    """Days from `day` to the next public holiday or retail event in `region` (0 on the day)."""
    days = _holiday_days(region, day.year) + _holiday_days(region, day.year + 1)
    i = bisect.bisect_left(days, day)
    return (days[i] - day).days if i < len(days) else 366


def theme_intensity(theme: str, region: str, days: np.ndarray) -> np.ndarray:
    """Demand lift in [0, 1] for items of `theme` on each of `days` (numpy datetime64[D]).

    Shoppers buy ahead of a moment, so the lift ramps up over `lead_days` before it,
    peaks just before the day and is gone a few days after.
    """
    days = days.astype("datetime64[D]")
    lift = np.zeros(len(days), dtype=np.float32)
    if len(days) == 0:
        return lift
    first = int(str(days.min())[:4])
    last = int(str(days.max())[:4])
    for year in range(first - 1, last + 2):
        for event in retail_events(region, year):
            if event.theme != theme:
                continue
            delta = (np.datetime64(event.day, "D") - days).astype(np.int64)
            ramp = np.where((delta >= 0) & (delta <= event.lead_days), 1.0 - delta / (event.lead_days + 1), 0.0)
            after = np.where((delta < 0) & (delta > -4), 0.5 * (4 + delta) / 4, 0.0)
            lift = np.maximum(lift, (ramp + after).astype(np.float32))
    return lift
