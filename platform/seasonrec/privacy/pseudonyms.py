"""Pseudonymous user ids: HMAC-SHA256 of the shop's id under a secret key, cut and encoded.

A keyed hash, not a plain one: without the key nobody can test a guessed customer id
against the tables, and a new key (a rotation) gives every user a new pseudonym that
cannot be linked to the old one. 20 base32 characters keep 100 bits: a collision among
a billion users has odds of about 1 in 10^12.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import polars as pl

from seasonrec import schema as s
from seasonrec.config import PrivacyConfig

PREFIX = "p_"  # tells a pseudonym from a raw id at a glance, in a table or a log
LENGTH = 20


def pseudonym(user_id: str, key: str) -> str:
    digest = hmac.new(key.encode(), user_id.encode(), hashlib.sha256).digest()
    return PREFIX + base64.b32encode(digest).decode("ascii")[:LENGTH].lower()


class Pseudonyms:
    """The mapping `privacy` asks for: a keyed hash with `pseudonymize`, else the id unchanged."""

    def __init__(self, privacy: PrivacyConfig):
        self.key = privacy.key.get_secret_value() if privacy.pseudonymize and privacy.key else None

    @property
    def active(self) -> bool:
        return self.key is not None

    def of(self, user_id: str) -> str:
        return pseudonym(user_id, self.key) if self.key is not None else user_id

    def column(self, frame: pl.DataFrame, column: str = s.USER_ID) -> pl.DataFrame:
        """`frame` with `column` replaced by pseudonyms; each distinct id is hashed once."""
        if self.key is None or column not in frame.columns or frame.is_empty():
            return frame
        ids = frame[column].cast(pl.String).unique().drop_nulls()
        mapping = pl.DataFrame({column: ids, "__pseudonym": [self.of(i) for i in ids]})
        joined = frame.with_columns(pl.col(column).cast(pl.String)).join(mapping, on=column, how="left")
        return joined.with_columns(pl.col("__pseudonym").alias(column)).drop("__pseudonym").select(frame.columns)
