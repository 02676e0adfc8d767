"""House rule: a feature's name is spelled once, in `schema.py`; everything else refers to the constant."""

from __future__ import annotations

import re
from pathlib import Path

from seasonrec import schema as s

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "platform" / "seasonrec", ROOT / "feature_repo", ROOT / "ray_jobs"]
FEATURES = {
    name
    for group, names in vars(s).items()
    if group.endswith("_FEATURES") and isinstance(names, tuple)
    for name in names
}
# Also the name of a field of `serving.rules.Candidate` (or of the API's answer) that carries a feature to the
# re-ranker: there the word names the field, which the dataclass spells. (Candidate.buy_days is the user's own
# `item_buy_days`, not the item's `buy_days`.)
FIELD_NAMES = {s.CATEGORY, s.PRICE, s.STOCK, s.LAUNCH_TS, s.TOTAL_DEMAND, s.TREND_RATIO, s.DEMAND_LEVEL, s.BUY_DAYS}


def test_the_feature_groups_are_found():
    assert {s.TREND_RATIO, s.ITEM_WEEK_DEMAND, s.N_PURCHASES, s.HISTORY_ITEM_IDS} <= FEATURES


def test_no_feature_name_is_spelled_outside_the_schema():
    spelled = []
    for folder in SOURCES:
        for path in folder.rglob("*.py"):
            if path.name == "schema.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                for name in FEATURES - FIELD_NAMES:
                    if re.search(rf"""(?<![\w.])["']{name}["']""", line):
                        spelled.append(f"{path.relative_to(ROOT)}:{number}: {name}")
    assert not spelled, "use the schema's constant:\n" + "\n".join(spelled)
