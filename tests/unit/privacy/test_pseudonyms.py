"""Pseudonyms: a keyed hash, stable under one key, unlinkable across keys, and off unless asked for."""

from __future__ import annotations

import polars as pl
import pytest

from seasonrec.config import PrivacyConfig
from seasonrec.privacy.pseudonyms import LENGTH, PREFIX, Pseudonyms, pseudonym


def test_a_pseudonym_is_stable_under_one_key_and_changes_with_the_key():
    one = pseudonym("12345", "key-a")
    assert one == pseudonym("12345", "key-a") and one != pseudonym("12346", "key-a")
    assert one != pseudonym("12345", "key-b")  # a rotation unlinks every user
    assert one.startswith(PREFIX) and len(one) == len(PREFIX) + LENGTH and one[2:].isalnum()
    assert "12345" not in one


def test_without_pseudonymize_ids_pass_unchanged():
    ids = Pseudonyms(PrivacyConfig())
    frame = pl.DataFrame({"user_id": ["U1", "U2"]})
    assert not ids.active and ids.of("U1") == "U1" and ids.column(frame).equals(frame)


def test_a_column_is_mapped_row_for_row_keeping_order_nulls_and_other_columns():
    ids = Pseudonyms(PrivacyConfig(pseudonymize=True, key="k"))
    frame = pl.DataFrame({"n": [1, 2, 3, 4], "user_id": ["U2", "U1", None, "U2"]})
    mapped = ids.column(frame)
    assert mapped.columns == ["n", "user_id"] and mapped["n"].to_list() == [1, 2, 3, 4]
    assert mapped["user_id"].to_list() == [ids.of("U2"), ids.of("U1"), None, ids.of("U2")]


def test_pseudonymize_without_a_key_is_refused():
    with pytest.raises(ValueError, match="a key is required when pseudonymize is true"):
        PrivacyConfig(pseudonymize=True)
