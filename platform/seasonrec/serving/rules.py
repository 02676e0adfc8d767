"""Business rules applied after scoring: filters, boosts, demotion, diversity, pins, exploration.

`configs/rules.yaml` holds them. `RuleBook` rereads the file when it changes
(a ConfigMap update swaps the file under a running pod), rejects an invalid
file with a one-line error and keeps the last good rules live.
Every item that comes out lists the rules that touched it in `reasons`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from seasonrec import schema as s
from seasonrec.errors import SeasonrecError

log = logging.getLogger(__name__)


class _Rule(BaseModel):
    # YAML reads `.nan` and `.inf` as floats; one such weight would make every score NaN or infinite.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Habitual(_Rule):
    # A customer who has bought an item on at least `min_buy_days` days, on average sooner than the hiding
    # window, re-buys it on a cycle of their own: it is hidden only until `due_fraction` of that cycle has passed.
    min_buy_days: int = Field(2, ge=2)
    due_fraction: float = Field(0.0, ge=0, le=1)


class RecentlyBought(_Rule):
    # Hide what the user bought within this many days; some categories are bought again sooner or later.
    default_days: int = Field(30, ge=0)
    by_category: dict[str, int] = {}
    # ...unless this shop's customers re-buy the item: at least this share of its purchases were by someone who
    # had bought it before (`rebuy_share`, learned from the log). null: no exception for staples.
    min_rebuy_share: float | None = Field(0.2, ge=0, le=1)
    # null: hide every recent purchase for the whole window, whatever the customer's own rhythm.
    habitual: Habitual | None = Habitual()


class Filters(_Rule):
    out_of_stock: bool = True
    recently_bought: RecentlyBought = RecentlyBought()
    blocked_categories: list[str] = []


class InSeason(_Rule):
    # An item is in season where it sells above its yearly average this week (demand index,
    # 1.0 = average), or is rising in the user's region (short- over long-window sales).
    min_demand_index: float = Field(1.5, gt=0)
    min_trend_ratio: float = Field(1.5, gt=0)
    # A nudge: the ranker already reads the item's regional demand (configs/rules.yaml says why this value).
    weight: float = 0.1


class NewArrival(_Rule):
    days: int = Field(30, ge=0)
    weight: float = 0.1


class OffSeason(_Rule):
    # Demote items that sell far below their average this week, on enough demand (units, views, carts) to tell.
    max_demand_index: float = Field(0.3, ge=0)
    min_total_demand: int = Field(20, ge=0)
    weight: float = 1.0
    # Not for an item this customer has bought on at least this many days (null: for every item): their own
    # staple is in season for them whatever the shop sells that week (configs/rules.yaml says why).
    spare_min_buy_days: int | None = Field(1, ge=1)


class Campaign(_Rule):
    name: str
    start: date
    end: date  # inclusive
    regions: list[str] | None = None  # None: every region
    categories: list[str] = []
    items: list[str] = []
    weight: float = 0.0
    pin: list[str] = []  # item ids put at the top while the campaign runs

    @model_validator(mode="after")
    def _window(self) -> Campaign:
        if self.end < self.start:
            raise ValueError(f"campaign {self.name!r}: end {self.end} is before start {self.start}")
        return self

    def active(self, at: datetime, region: str) -> bool:
        return self.start <= at.date() <= self.end and (self.regions is None or region in self.regions)


class Diversity(_Rule):
    max_per_category: int = Field(3, gt=0)


class Exploration(_Rule):
    # Slots kept for new in-season arrivals the model has little evidence about.
    slots: int = Field(1, ge=0)
    position: int = Field(5, ge=1)  # 1-based position of the first exploration slot


class Rules(_Rule):
    version: int = 1
    filters: Filters = Filters()
    in_season: InSeason = InSeason()
    new_arrival: NewArrival = NewArrival()
    off_season: OffSeason = OffSeason()
    campaigns: list[Campaign] = []
    diversity: Diversity = Diversity()
    pinned: list[str] = []
    exploration: Exploration = Exploration()


def load_rules(path: Path) -> Rules:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise SeasonrecError(f"{path}: cannot read rules ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise SeasonrecError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    # An empty file is more likely a truncated write than a wish for the defaults; `{}` asks for those.
    if raw is None:
        raise SeasonrecError(f"{path}: rules file is empty (write {{}} for the default rules)")
    if not isinstance(raw, dict):
        raise SeasonrecError(f"{path}: top level must be a mapping, not {type(raw).__name__}")
    try:
        return Rules.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "rules"
        raise SeasonrecError(f"{path}: {where}: {first['msg']}") from exc


class RuleBook:
    """The live rules; `current()` rereads the file at most every `check_s` seconds if it changed."""

    def __init__(self, path: Path, check_s: float = 1.0):
        self.path = Path(path)
        self.check_s = check_s
        self.rules = load_rules(self.path)
        self.error: str | None = None
        self._seen = self._stamp()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def _stamp(self) -> tuple:
        try:
            # The resolved target too: Kubernetes swaps a symlink, the file itself never changes.
            stat = self.path.stat()
            return (str(self.path.resolve()), stat.st_mtime_ns, stat.st_size)
        except OSError:
            return ("missing",)

    def current(self) -> Rules:
        now = time.monotonic()
        if now - self._checked < self.check_s:
            return self.rules
        with self._lock:
            self._checked = now
            stamp = self._stamp()
            if stamp != self._seen:
                self._seen = stamp
                try:
                    self.rules = load_rules(self.path)
                    self.error = None
                    log.info("rules reloaded from %s", self.path)
                except SeasonrecError as exc:
                    self.error = str(exc)
                    log.error("rules not reloaded, the last good ones stay live: %s", exc)
        return self.rules


@dataclass(slots=True)
class Candidate:
    item_id: str
    score: float
    category: str | None = None
    stock: int | None = None
    launch_ts: int | None = None
    demand_index: float | None = None
    total_demand: int | None = None
    trend_ratio: float | None = None
    sources: tuple[str, ...] = ()  # the candidate sources that proposed it
    # The user's own purchases of the item (`user_item_stats`): days bought, first and latest (Unix time).
    buy_days: int | None = None
    first_buy_ts: int | None = None
    last_buy_ts: int | None = None
    demand_level: str | None = None  # whose week-of-year profile: the region's, its hemisphere's or "global"
    rebuy_share: float | None = None  # `rebuy_share` of the item: how much it is bought again by the same people
    reasons: list[str] = field(default_factory=list)

    def buy_interval_days(self) -> float | None:
        """The user's average days between purchases of this item; None before a second purchase day."""
        if not self.buy_days or self.buy_days < 2 or self.first_buy_ts is None or self.last_buy_ts is None:
            return None
        return (self.last_buy_ts - self.first_buy_ts) / 86_400.0 / (self.buy_days - 1)


def purchases(user: dict) -> dict[str, int]:
    """Item id -> Unix time of the user's last purchase of it, from their history row."""
    types = user.get(s.HISTORY_EVENT_TYPES) or []
    return {
        item: ts
        for item, ts, kind in zip(user.get(s.HISTORY_ITEM_IDS) or [], user.get(s.HISTORY_TS) or [], types, strict=False)
        if kind == "purchase"
    }


@dataclass(slots=True)
class CandidateColumns:
    """`Candidate`s as one list per field, in candidate order (as they travel between stages); None: every
    candidate takes the field's default."""

    item_id: list[str]
    score: list[float]
    category: list[str | None] | None = None
    stock: list[int | None] | None = None
    launch_ts: list[int | None] | None = None
    demand_index: list[float | None] | None = None
    total_demand: list[int | None] | None = None
    trend_ratio: list[float | None] | None = None
    sources: list[tuple[str, ...]] | None = None
    buy_days: list[int | None] | None = None
    first_buy_ts: list[int | None] | None = None
    last_buy_ts: list[int | None] | None = None
    demand_level: list[str | None] | None = None
    rebuy_share: list[float | None] | None = None


_COLUMN_DEFAULTS = {f: spec.default for f, spec in Candidate.__dataclass_fields__.items() if f != "reasons"}


def from_columns(columns: CandidateColumns) -> list[Candidate]:
    """Candidates from one list per field; a missing field takes its default."""
    n = len(columns.item_id)
    lists = (getattr(columns, f) or [default] * n for f, default in _COLUMN_DEFAULTS.items())
    return [Candidate(*values) for values in zip(*lists, strict=True)]


def rerank(
    candidates: list[Candidate],
    rules: Rules,
    k: int,
    at: datetime,
    region: str,
    purchases: dict[str, int],
) -> list[Candidate]:
    """The top `k` after the rules; `purchases` maps item id to the Unix time of the user's last purchase."""
    now = at.timestamp()
    kept: list[Candidate] = []
    barred: set[str] = set()  # out of stock or blocked: not even a pin brings these back
    for c in candidates:
        if (rules.filters.out_of_stock and c.stock is not None and c.stock <= 0) or (
            c.category in rules.filters.blocked_categories
        ):
            barred.add(c.item_id)
            continue
        if _recently_bought(c, rules.filters.recently_bought, purchases.get(c.item_id), now):
            continue
        # Where it came from first: "source:repeat" says "you buy this", "source:co_purchase" "people like you".
        c.reasons[:0] = [f"source:{source}" for source in c.sources]
        _adjust(c, rules, now, region)
        kept.append(c)
    campaigns = [camp for camp in rules.campaigns if camp.active(at, region)]
    for camp in campaigns:
        for c in kept:
            if camp.weight and (c.item_id in camp.items or c.category in camp.categories):
                c.score += camp.weight
                c.reasons.append(f"campaign:{camp.name}")
    kept.sort(key=lambda c: c.score, reverse=True)
    pins = [(f"campaign:{camp.name}:pin", i) for camp in campaigns for i in camp.pin] + [
        ("pinned", i) for i in rules.pinned
    ]
    pins = [(reason, item) for reason, item in pins if item not in barred]
    return _assemble(kept, pins, rules, k, now)


def pinned_items(rules: Rules, at: datetime, region: str) -> list[str]:
    """The items the rules put on top at this moment and place: active campaigns' pins, then `pinned`."""
    campaigns = [camp.pin for camp in rules.campaigns if camp.active(at, region)]
    return list(dict.fromkeys([*(item for pins in campaigns for item in pins), *rules.pinned]))


# Purchases an item needs before its re-buy share counts in full: with few, the share is shrunk towards 0.
REBUY_PRIOR_BUYS = 10


def rebuy_share(buy_days: float | None, rebuy_days: float | None) -> float | None:
    """Of an item's (user, day) purchases, the share by users who had bought it before, shrunk for few buys."""
    if buy_days is None or rebuy_days is None or buy_days != buy_days:  # None or NaN: never bought
        return None
    return float(rebuy_days) / (float(buy_days) + REBUY_PRIOR_BUYS)


def _recently_bought(c: Candidate, rule: RecentlyBought, in_history: int | None, now: float) -> bool:
    """Is `c` hidden as bought too recently? A habitual re-buy is hidden only until it is nearly due again."""
    if in_history is None and c.last_buy_ts is None:  # never bought: most candidates, so checked first
        return False
    last = _last_purchase(c, in_history, now)
    if last is None:
        return False
    days = rule.by_category.get(c.category or "", rule.default_days)
    since = (now - last) / 86_400.0
    if since >= days:
        return False
    if rule.min_rebuy_share is not None and (c.rebuy_share or 0.0) >= rule.min_rebuy_share:
        c.reasons.append("rebuy_item")
        return False
    interval = c.buy_interval_days()
    habit = rule.habitual
    habitual = habit is not None and interval is not None and (c.buy_days or 0) >= habit.min_buy_days
    if habitual and interval < days and since >= habit.due_fraction * interval:
        c.reasons.append("repurchase_cycle")
        return False
    return True


def _last_purchase(c: Candidate, in_history: int | None, now: float) -> int | None:
    """The user's latest purchase of `c` by `now`, the request's moment. A purchase dated after it has not
    happened yet then: a request about July, asked with a history that holds December, must not hide what
    was bought in December. If the stats' latest purchase is later, their first (when earlier) still counts."""
    times = [t for t in (in_history, c.last_buy_ts) if t is not None and t <= now]
    if c.last_buy_ts is not None and c.last_buy_ts > now and c.first_buy_ts is not None and c.first_buy_ts <= now:
        times.append(c.first_buy_ts)
    return max(times, default=None)


def _adjust(c: Candidate, rules: Rules, now: float, region: str) -> None:
    season = rules.in_season
    if (c.demand_index or 0) >= season.min_demand_index or (c.trend_ratio or 0) >= season.min_trend_ratio:
        c.score += season.weight
        c.reasons.append(_seasonal_reason("in_season", c, region))
    if c.launch_ts is not None and 0 <= now - c.launch_ts < rules.new_arrival.days * 86_400:
        c.score += rules.new_arrival.weight
        c.reasons.append("new_arrival")
    off = rules.off_season
    if (
        c.demand_index is not None
        and c.demand_index < off.max_demand_index
        and (c.total_demand or 0) >= off.min_total_demand
        and not (off.spare_min_buy_days and (c.buy_days or 0) >= off.spare_min_buy_days)
    ):
        c.score -= off.weight
        c.reasons.append(_seasonal_reason("off_season", c, region))


def _seasonal_reason(rule: str, c: Candidate, region: str) -> str:
    """ "in_season:AU" from Australia's own sales; "in_season:AU:hemisphere" (or ":global") where the region has
    too few sales of the item and its season is read from the southern hemisphere's (or every region's)."""
    level = c.demand_level
    return f"{rule}:{region}" if level in (None, "region") else f"{rule}:{region}:{level}"


def _assemble(kept: list[Candidate], pins, rules: Rules, k: int, now: float) -> list[Candidate]:
    by_id = {c.item_id: c for c in kept}
    out: list[Candidate] = []
    taken: set[str] = set()
    for reason, item in pins:
        if item in taken or len(out) >= k:
            continue
        c = by_id.get(item) or Candidate(item_id=item, score=float("nan"))
        c.reasons.append(reason)
        out.append(c)
        taken.add(item)
    per_category: dict[str, int] = {}
    explore = [c for c in kept if "new_arrival" in c.reasons and any(r.startswith("in_season") for r in c.reasons)]
    explore_ids = {c.item_id for c in explore[: rules.exploration.slots]}
    for c in kept:
        if len(out) >= k:
            break
        if c.item_id in taken or c.item_id in explore_ids:
            continue
        count = per_category.get(c.category or "", 0)
        if count >= rules.diversity.max_per_category:
            continue
        per_category[c.category or ""] = count + 1
        out.append(c)
        taken.add(c.item_id)
    slot = min(rules.exploration.position - 1, len(out))
    for c in explore[: rules.exploration.slots]:
        if c.item_id in taken:
            continue
        c.reasons.append("exploration")
        out.insert(slot, c)
        taken.add(c.item_id)
        slot += 1
    return out[:k]
