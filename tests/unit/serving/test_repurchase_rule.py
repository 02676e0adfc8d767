"""The re-ranker's recently-bought filter with the repurchase-cycle exception, and the reasons a customer sees:
where a candidate came from, and whose season made it "in season"."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from seasonrec.serving.rules import Candidate, Rules, load_rules, rerank

AT = datetime(2024, 6, 1, 12, tzinfo=UTC)
NOW = int(AT.timestamp())
DAY = 86_400


def ago(days: float) -> int:
    return int(NOW - days * DAY)


def habit(item: str, last_days_ago: float, every_days: float = 7.0, buy_days: int = 3, **kw) -> Candidate:
    """An item bought on `buy_days` days, `every_days` apart, the last `last_days_ago` days ago."""
    last = ago(last_days_ago)
    first = int(last - (buy_days - 1) * every_days * DAY)
    return Candidate(item, 1.0, category=item, buy_days=buy_days, first_buy_ts=first, last_buy_ts=last, **kw)


# A stricter habit than the shipped one (2 days, due at once), so each boundary below has two sides to test.
HALF_CYCLE = Rules.model_validate(
    {"filters": {"recently_bought": {"habitual": {"min_buy_days": 3, "due_fraction": 0.5}}}}
)


def shown(candidates: list[Candidate], purchases: dict[str, int] | None = None, rules: Rules | None = None) -> dict:
    """Item id -> reasons of what comes out. Each candidate has its own category, so diversity hides nothing."""
    out = rerank(candidates, rules or HALF_CYCLE, k=10, at=AT, region="AU", purchases=purchases or {})
    return {c.item_id: c.reasons for c in out}


def test_the_habit_helper_makes_a_weekly_cycle():
    assert habit("TEA", last_days_ago=5).buy_interval_days() == pytest.approx(7.0)
    assert Candidate("X", 1.0, buy_days=1, first_buy_ts=ago(5), last_buy_ts=ago(5)).buy_interval_days() is None


def test_a_one_off_purchase_five_days_ago_is_hidden():
    one_off = Candidate("VASE", 1.0, category="decor")
    assert shown([one_off], {"VASE": ago(5)}) == {}


def test_a_one_off_purchase_is_shown_again_after_the_30_day_window():
    one_off = Candidate("VASE", 1.0, category="decor")
    assert shown([one_off], {"VASE": ago(31)}) == {"VASE": []}


def test_a_purchase_dated_after_the_request_hides_nothing():
    """Asked about June with a history that already holds August: in June the vase was not bought yet."""
    later = int(NOW + 60 * DAY)
    vase = Candidate("VASE", 1.0, category="decor", buy_days=1, first_buy_ts=later, last_buy_ts=later)
    assert shown([vase], {"VASE": later}) == {"VASE": []}


def test_a_first_purchase_before_the_request_still_hides_when_the_latest_is_after_it():
    bowl = Candidate("BOWL", 1.0, category="decor", buy_days=2, first_buy_ts=ago(5), last_buy_ts=int(NOW + 60 * DAY))
    assert shown([bowl]) == {}


def test_a_weekly_buy_five_days_ago_is_kept_as_a_repurchase_cycle():
    """Every 7 days, last 5 days ago: 5 >= 0.5 x 7, so it is nearly due and stays."""
    assert shown([habit("TEA", last_days_ago=5)], {"TEA": ago(5)}) == {"TEA": ["repurchase_cycle"]}


def test_a_weekly_buy_from_yesterday_is_still_hidden():
    """1 day < 0.5 x 7 days: bought too recently, even for a habit."""
    assert shown([habit("TEA", last_days_ago=1)], {"TEA": ago(1)}) == {}


def test_due_fraction_is_the_boundary():
    """3.5 days is exactly half a 7-day cycle: shown; 3.4 days is not."""
    assert "TEA" in shown([habit("TEA", last_days_ago=3.5)])
    assert shown([habit("TEA", last_days_ago=3.4)]) == {}


def test_two_buy_days_are_not_yet_a_habit():
    assert shown([habit("TEA", last_days_ago=5, buy_days=2)]) == {}


def test_a_cycle_longer_than_the_window_is_no_exception():
    """Every 40 days, last 25 days ago: the 30-day window hides it, the cycle is not shorter than the window."""
    assert shown([habit("TEA", last_days_ago=25, every_days=40)]) == {}


def test_a_habit_known_only_from_user_item_stats_is_kept_without_a_history_row():
    assert shown([habit("TEA", last_days_ago=5)], {}) == {"TEA": ["repurchase_cycle"]}


def test_habitual_null_in_the_rules_file_restores_hiding(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("filters:\n  recently_bought:\n    default_days: 30\n    habitual: null\n")
    rules = load_rules(path)
    assert rules.filters.recently_bought.habitual is None
    assert shown([habit("TEA", last_days_ago=5)], {"TEA": ago(5)}, rules) == {}


def test_a_stricter_due_fraction_from_the_rules_file_hides_it_longer(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("filters:\n  recently_bought:\n    habitual:\n      min_buy_days: 3\n      due_fraction: 0.9\n")
    rules = load_rules(path)
    assert shown([habit("TEA", last_days_ago=5)], rules=rules) == {}  # 5 < 0.9 x 7
    assert "TEA" in shown([habit("TEA", last_days_ago=6.5)], rules=rules)


def test_the_later_of_the_history_and_last_buy_ts_counts():
    """The history saw a purchase yesterday that `user_item_stats` has not caught up with: hidden.
    And the other way round: the stats know yesterday's purchase, the history only the one 5 days ago."""
    assert shown([habit("TEA", last_days_ago=5)], {"TEA": ago(1)}) == {}
    assert shown([habit("TEA", last_days_ago=1)], {"TEA": ago(5)}) == {}


def test_sources_come_first_in_the_reasons():
    tea = habit("TEA", last_days_ago=5, sources=("repeat", "seasonal_pool"), demand_index=2.0)
    assert shown([tea], {"TEA": ago(5)}) == {
        "TEA": ["source:repeat", "source:seasonal_pool", "repurchase_cycle", "in_season:AU"]
    }


def test_a_candidate_without_sources_has_no_source_reason():
    assert shown([Candidate("HAT", 1.0, category="hats", demand_index=2.0)]) == {"HAT": ["in_season:AU"]}


@pytest.mark.parametrize(
    ("level", "reason"),
    [
        ("region", "in_season:AU"),
        (None, "in_season:AU"),
        ("hemisphere", "in_season:AU:hemisphere"),
        ("global", "in_season:AU:global"),
    ],
)
def test_in_season_reason_names_whose_season_it_is(level, reason):
    hat = Candidate("HAT", 1.0, category="hats", demand_index=2.0, demand_level=level, sources=("seasonal_pool",))
    assert shown([hat]) == {"HAT": ["source:seasonal_pool", reason]}


def test_off_season_reason_names_the_level_too():
    coat = Candidate("COAT", 1.0, category="coats", demand_index=0.1, total_demand=50, demand_level="hemisphere")
    assert shown([coat]) == {"COAT": ["off_season:AU:hemisphere"]}


def test_the_shipped_habit_keeps_a_twice_bought_weekly_item_from_yesterday():
    """The defaults (chosen on validation weeks): two buy days make a habit, and a habit is never hidden."""
    assert shown([habit("TEA", last_days_ago=1, buy_days=2)], {"TEA": ago(1)}, Rules()) == {"TEA": ["repurchase_cycle"]}


def test_a_staple_of_the_shop_is_kept_even_for_a_one_off_buyer():
    staple = Candidate("MILK", 1.0, category="food", rebuy_share=0.4)
    rare = Candidate("VASE", 1.0, category="decor", rebuy_share=0.05)
    assert shown([staple, rare], {"MILK": ago(2), "VASE": ago(2)}, Rules()) == {"MILK": ["rebuy_item"]}
