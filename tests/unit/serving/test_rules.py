"""The business rules one at a time: what `rerank` keeps, in what order and why (`reasons`); what `load_rules`
refuses; and how `RuleBook` swaps rules under a running service and keeps the last good ones when a file is bad."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from seasonrec.errors import SeasonrecError
from seasonrec.serving.rules import Candidate, RuleBook, Rules, load_rules, rerank

AT = datetime(2024, 12, 1, 12, tzinfo=UTC)  # inside the christmas campaign below
NOW = int(AT.timestamp())
DAY = 86_400
XMAS = {"name": "xmas", "start": "2024-11-25", "end": "2024-12-24", "regions": ["GB"]}


def ago(days: float) -> int:
    return int(NOW - days * DAY)


def item(item_id: str, score: float, **kw) -> Candidate:
    """A candidate in a category of its own unless told, so diversity hides nothing it is not asked to."""
    kw.setdefault("category", item_id.lower())
    return Candidate(item_id, score, **kw)


# Each case: the rules (over the defaults), the candidates, the user's purchases, and what comes out, in order,
# with each item's reasons. A, B, C score 3, 2, 1 unless the case says otherwise.
CASES = {
    "out_of_stock hides a known zero stock, not an unknown one": (
        {},
        [item("A", 3, stock=0), item("B", 2, stock=5), item("C", 1, stock=None)],
        {},
        [("B", []), ("C", [])],
    ),
    "out_of_stock off keeps it": (
        {"filters": {"out_of_stock": False}},
        [item("A", 3, stock=0), item("B", 2)],
        {},
        [("A", []), ("B", [])],
    ),
    "blocked_categories hides the category": (
        {"filters": {"blocked_categories": ["toys"]}},
        [item("A", 3, category="toys"), item("B", 2, category="decor")],
        {},
        [("B", [])],
    ),
    "recently_bought hides a purchase inside default_days only": (
        {"filters": {"recently_bought": {"default_days": 30, "min_rebuy_share": None}}},
        [item("A", 3), item("B", 2)],
        {"A": ago(5), "B": ago(40)},
        [("B", [])],
    ),
    "recently_bought by_category sets a window per category": (
        {"filters": {"recently_bought": {"by_category": {"food": 7}, "min_rebuy_share": None}}},
        [item("A", 3, category="food"), item("B", 2, category="decor")],
        {"A": ago(10), "B": ago(10)},
        [("A", [])],
    ),
    "rebuy_item keeps a staple bought yesterday": (
        {"filters": {"recently_bought": {"min_rebuy_share": 0.2}}},
        [item("A", 3, rebuy_share=0.5), item("B", 2, rebuy_share=0.1)],
        {"A": ago(1), "B": ago(1)},
        [("A", ["rebuy_item"])],
    ),
    "repurchase_cycle keeps a weekly habit that is due": (
        {"filters": {"recently_bought": {"min_rebuy_share": None, "habitual": {"due_fraction": 0.5}}}},
        [item("A", 3, buy_days=3, first_buy_ts=ago(19), last_buy_ts=ago(5)), item("B", 2, last_buy_ts=ago(5))],
        {},
        [("A", ["repurchase_cycle"])],
    ),
    "in_season by demand lifts an item over a slightly better one": (
        {"in_season": {"weight": 0.1}},
        [item("A", 1.05), item("B", 1.0, demand_index=2.0)],
        {},
        [("B", ["in_season:GB"]), ("A", [])],
    ),
    "in_season by trend names a borrowed season": (
        {"in_season": {"weight": 0.1}},
        [item("A", 1.05), item("B", 1.0, trend_ratio=2.0, demand_level="hemisphere")],
        {},
        [("B", ["in_season:GB:hemisphere"]), ("A", [])],
    ),
    "new_arrival lifts an item launched inside the window": (
        {"new_arrival": {"days": 30, "weight": 0.1}},
        [item("A", 1.05), item("B", 1.0, launch_ts=ago(10)), item("C", 1.0, launch_ts=ago(40))],
        {},
        [("B", ["new_arrival"]), ("A", []), ("C", [])],
    ),
    "off_season demotes an item that sells far below average": (
        {"off_season": {"max_demand_index": 0.3, "min_total_demand": 20, "weight": 0.5, "spare_min_buy_days": None}},
        [item("A", 2.0, demand_index=0.1, total_demand=50), item("B", 1.8), item("C", 1.7, demand_index=0.1)],
        {},
        [("B", []), ("C", []), ("A", ["off_season:GB"])],
    ),
    "off_season spares what this customer has bought on enough days": (
        {"off_season": {"max_demand_index": 0.3, "min_total_demand": 20, "weight": 0.5, "spare_min_buy_days": 2}},
        [
            item("A", 2.0, demand_index=0.1, total_demand=50, buy_days=2),
            item("B", 1.9, demand_index=0.1, total_demand=50, buy_days=1),
            item("C", 1.8),
        ],
        {},
        [("A", []), ("C", []), ("B", ["off_season:GB"])],
    ),
    "a campaign boosts its categories and items in its window and region": (
        {"campaigns": [{**XMAS, "categories": ["decor"], "items": ["C"], "weight": 0.5}]},
        [item("A", 1.2), item("B", 1.0, category="decor"), item("C", 0.9)],
        {},
        [("B", ["campaign:xmas"]), ("C", ["campaign:xmas"]), ("A", [])],
    ),
    "a campaign in another region does nothing": (
        {"campaigns": [{**XMAS, "regions": ["AU"], "categories": ["decor"], "weight": 0.5, "pin": ["C"]}]},
        [item("A", 1.2), item("B", 1.0, category="decor"), item("C", 0.9)],
        {},
        [("A", []), ("B", []), ("C", [])],
    ),
    "a campaign outside its window does nothing": (
        {"campaigns": [{**XMAS, "start": "2025-11-25", "end": "2025-12-24", "weight": 0.5, "pin": ["C"]}]},
        [item("A", 1.2), item("B", 1.0), item("C", 0.9)],
        {},
        [("A", []), ("B", []), ("C", [])],
    ),
    "a campaign pin goes to the top": (
        {"campaigns": [{**XMAS, "pin": ["C"]}]},
        [item("A", 3), item("B", 2), item("C", 1)],
        {},
        [("C", ["campaign:xmas:pin"]), ("A", []), ("B", [])],
    ),
    "pinned goes to the top, even when it is no candidate": (
        {"pinned": ["B", "Z"]},
        [item("A", 3), item("B", 2)],
        {},
        [("B", ["pinned"]), ("Z", ["pinned"]), ("A", [])],
    ),
    "a pinned item out of stock is not returned": (
        {"pinned": ["A"], "campaigns": [{**XMAS, "pin": ["B"]}]},
        [item("A", 3, stock=0), item("B", 2, stock=0), item("C", 1)],
        {},
        [("C", [])],
    ),
    "a pinned item in a blocked category is not returned": (
        {"pinned": ["A"], "campaigns": [{**XMAS, "pin": ["B"]}], "filters": {"blocked_categories": ["toys"]}},
        [item("A", 3, category="toys"), item("B", 2, category="toys"), item("C", 1)],
        {},
        [("C", [])],
    ),
    "diversity caps each category": (
        {"diversity": {"max_per_category": 2}},
        [item(i, s, category="toys") for i, s in (("A", 4), ("B", 3), ("C", 2))] + [item("D", 1, category="decor")],
        {},
        [("A", []), ("B", []), ("D", [])],
    ),
    "exploration puts a new in-season arrival at its position": (
        {"exploration": {"slots": 1, "position": 2}},
        [item("A", 3), item("B", 2), item("C", 1), item("E", 0.1, launch_ts=ago(3), demand_index=2.0)],
        {},
        [("A", []), ("E", ["in_season:GB", "new_arrival", "exploration"]), ("B", []), ("C", [])],
    ),
    "sources come first in the reasons": (
        {},
        [item("A", 3, sources=("repeat", "co_purchase"), demand_index=2.0)],
        {},
        [("A", ["source:repeat", "source:co_purchase", "in_season:GB"])],
    ),
}


@pytest.mark.parametrize(("overrides", "candidates", "bought", "expected"), CASES.values(), ids=CASES.keys())
def test_each_rule_decides_membership_order_and_reasons(overrides, candidates, bought, expected):
    out = rerank(candidates, Rules.model_validate(overrides), k=10, at=AT, region="GB", purchases=bought)
    assert [(c.item_id, c.reasons) for c in out] == expected


def test_k_cuts_the_list_after_the_pins():
    rules = Rules.model_validate({"pinned": ["C"]})
    out = rerank([item("A", 3), item("B", 2), item("C", 1)], rules, k=2, at=AT, region="GB", purchases={})
    assert [c.item_id for c in out] == ["C", "A"]


# What `load_rules` refuses, and the field its one-line error names.
REFUSED = {
    "nan weight": ("in_season:\n  weight: .nan\n", "in_season.weight: Input should be a finite number"),
    "inf weight": ("off_season:\n  weight: .inf\n", "off_season.weight: Input should be a finite number"),
    "-inf weight": ("new_arrival:\n  weight: -.inf\n", "new_arrival.weight: Input should be a finite number"),
    "overflowing weight": ("in_season:\n  weight: 1.0e+400\n", "in_season.weight: Input should be a finite number"),
    "nan campaign weight": (
        "campaigns:\n  - {name: x, start: 2024-11-25, end: 2024-12-24, weight: .nan}\n",
        "campaigns.0.weight: Input should be a finite number",
    ),
    "inf threshold": ("in_season:\n  min_demand_index: .inf\n", "in_season.min_demand_index: Input should be a finite"),
    "empty file": ("", "rules file is empty"),
    "comments only": ("# all rules moved elsewhere\n", "rules file is empty"),
    "a list": ("- pinned\n", "top level must be a mapping, not list"),
    "a scalar": ("42\n", "top level must be a mapping, not int"),
    "invalid YAML": ("filters: [\n", "not valid YAML"),
    "unknown key": ("pins: [A]\n", "pins: Extra inputs are not permitted"),
    "campaign ending before it starts": (
        "campaigns:\n  - {name: x, start: 2024-12-30, end: 2024-12-01}\n",
        "end 2024-12-01 is before start 2024-12-30",
    ),
}


@pytest.mark.parametrize(("text", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_load_rules_refuses_with_one_line_naming_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(SeasonrecError) as err:
        load_rules(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_load_rules_names_a_missing_file(tmp_path):
    with pytest.raises(SeasonrecError, match="rules.yaml: cannot read rules"):
        load_rules(tmp_path / "rules.yaml")


def test_an_explicit_empty_mapping_asks_for_the_defaults(tmp_path):
    """The chart's `rules: {}` renders as `{}`: the shipped defaults, not an error."""
    path = tmp_path / "rules.yaml"
    path.write_text("{}\n")
    assert load_rules(path) == Rules()


def test_the_shipped_rules_load():
    shipped = Path(__file__).parents[3] / "configs" / "rules.yaml"
    assert load_rules(shipped).campaigns[0].name == "christmas-uk"


class Files:
    """Writes a rules file so each write is seen as a change, as a ConfigMap swap or an editor's save is."""

    def __init__(self, path: Path):
        self.path, self.writes = path, 0

    def write(self, text: str) -> None:
        self.path.write_text(text)
        self.writes += 1
        stamp = 1_700_000_000_000_000_000 + self.writes * 1_000_000_000
        os.utime(self.path, ns=(stamp, stamp))


def good(version: int) -> str:
    return yaml.safe_dump({"version": version, "pinned": [f"P{version}"]})


BROKEN_KINDS = ("nan weight", "empty file", "a list", "invalid YAML", "campaign ending before it starts")
BROKEN = {kind: REFUSED[kind] for kind in BROKEN_KINDS}


@pytest.mark.parametrize(("text", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_rulebook_reloads_keeps_the_last_good_rules_on_a_bad_file_and_recovers(tmp_path, text, message):
    files = Files(tmp_path / "rules.yaml")
    files.write(good(1))
    book = RuleBook(files.path, check_s=0)
    assert (book.current().version, book.error) == (1, None)

    files.write(good(2))
    assert book.current().pinned == ["P2"]
    assert book.error is None

    files.write(text)
    assert book.current().pinned == ["P2"]  # the last good rules stay live
    assert book.rules.version == 2
    assert book.error.startswith(f"{files.path}: ") and message in book.error

    files.write(good(3))
    assert (book.current().version, book.current().pinned, book.error) == (3, ["P3"], None)


def test_rulebook_keeps_the_last_good_rules_while_the_file_is_gone(tmp_path):
    files = Files(tmp_path / "rules.yaml")
    files.write(good(1))
    book = RuleBook(files.path, check_s=0)
    files.path.unlink()
    assert book.current().version == 1
    assert "cannot read rules" in book.error
    files.write(good(2))
    assert (book.current().version, book.error) == (2, None)


def test_rulebook_follows_a_kubernetes_configmap_symlink_swap(tmp_path):
    """The kubelet writes a new directory and swaps the `..data` link; rules.yaml itself never changes."""
    for version in (1, 2):
        (tmp_path / f"..v{version}").mkdir()
        (tmp_path / f"..v{version}" / "rules.yaml").write_text(good(version))
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "rules.yaml").symlink_to("..data/rules.yaml")
    book = RuleBook(tmp_path / "rules.yaml", check_s=0)
    assert book.current().version == 1
    (tmp_path / "..next").symlink_to("..v2")
    (tmp_path / "..next").replace(tmp_path / "..data")
    assert book.current().version == 2


def test_rulebook_checks_the_file_at_most_every_check_s(tmp_path):
    files = Files(tmp_path / "rules.yaml")
    files.write(good(1))
    book = RuleBook(files.path, check_s=3600)
    files.write(good(2))
    assert book.current().version == 1


@pytest.mark.parametrize(("text", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_a_rulebook_will_not_start_on_a_bad_file(tmp_path, text, message):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(SeasonrecError, match="rules.yaml: "):
        RuleBook(path)
