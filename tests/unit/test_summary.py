"""A stage's result as the terminal shows it: short, whatever the JSON holds."""

from __future__ import annotations

import io

from rich.console import Console

from seasonrec.summary import MAX_ROWS, compact, online_view, rows, summary_line


def _text(renderable) -> str:
    out = io.StringIO()
    Console(file=out, width=100).print(renderable)
    return out.getvalue()


def test_a_vector_shows_its_length_and_first_values():
    assert compact([0.123456, -2.0, 3.5, 7.0]) == "4 values: 0.1235, -2, 3.5, …"
    assert compact(list(range(20)))[:9] == "20 values"


def test_lists_of_names_are_cut_and_counted_and_records_counted():
    assert compact(["a", "b"]) == "a, b"
    assert compact([f"I{i:03d}" for i in range(10)]) == "I000, I001, I002, I003, I004, I005, … (10)"
    assert compact([{"a": 1}, {"a": 2}]) == "2 records"
    assert compact("x" * 200).endswith("…") and len(compact("x" * 200)) == 60


def test_small_nested_records_open_with_dotted_keys_and_big_ones_are_cut():
    result = {"rows_in": 5, "items": {"rows_in": 3, "rejected": {"a": 1}}, "rows": {f"t{i}": i for i in range(9)}}
    assert rows(result) == [
        ("rows_in", "5"),
        ("items.rows_in", "3"),
        ("items.rejected", "a 1"),
        ("rows", "t0 0, t1 1, t2 2, … (9)"),
    ]


def test_a_summary_is_one_short_paragraph_and_a_long_one_says_where_the_rest_is():
    assert _text(summary_line({"users": 40, "items": 15}, "data generate")).strip() == (
        "data generate: users 40 · items 15"
    )
    text = _text(summary_line({f"k{i}": i for i in range(MAX_ROWS + 5)}, "stage"))
    assert "k0 0" in text and f"k{MAX_ROWS + 4}" not in text and "5 more in the JSON" in text


def test_online_features_show_items_side_by_side_with_vectors_cut_and_empty_ones_named_once():
    result = {
        "user": {"user_id": "U1", "n_purchases": 3, "history_item_ids": ["I1", "I2"]},
        "items": [
            {"item_id": "I1", "price": 2.5, "title_embedding": [0.1] * 384, "sales_7d": None},
            {"item_id": "I2", "price": 4.0, "title_embedding": [0.2] * 384, "sales_7d": None},
        ],
    }
    text = _text(online_view([result]))
    assert "user U1: n_purchases 3 · history_item_ids I1, I2" in text
    assert "384 values: 0.1" in text and "384 values: 0.2" in text
    assert "no value for these items: sales_7d" in text and "None" not in text
    assert len(text.splitlines()) < 15
