"""Ingest with `privacy`: no raw customer id in anything written, and old events counted, not lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from seasonrec import schema as s
from seasonrec.config import IngestConfig, PrivacyConfig
from seasonrec.data.ingest import ingest
from seasonrec.privacy.pseudonyms import Pseudonyms

ITEMS_CSV = "item_id,title,category,price,launch_ts,stock\nI1,Beach Towel,outdoor,10.0,2023-01-01,5\n"
HEADER = "user_id,item_id,event_ts,event_type,quantity,price,region\n"
RETAIL_HEADER = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"


def _canonical(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.csv").write_text(ITEMS_CSV)
    (folder / "events.csv").write_text(HEADER + "".join(rows))
    return folder


def _every_byte(folder) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_pseudonymized_ingest_writes_no_raw_id_anywhere_rejected_rows_included(tmp_path):
    rows = ["CUSTOMER-ALICE,I1,2024-01-01 10:00:00,purchase,1,10.0,GB\n", "CUSTOMER-BOB,I9,2024-01-01,view,1,1,GB\n"]
    privacy = PrivacyConfig(pseudonymize=True, key="secret")
    summary = ingest("canonical", _canonical(tmp_path / "in", rows), tmp_path / "out", IngestConfig(), privacy)
    assert summary["rows_rejected"] == {"unknown_item": 1} and summary["user_ids"] == "pseudonymized"
    written = _every_byte(tmp_path / "out")
    assert b"CUSTOMER-ALICE" not in written and b"CUSTOMER-BOB" not in written
    ids = Pseudonyms(privacy)
    assert pl.read_parquet(tmp_path / "out" / "events.parquet")[s.USER_ID].to_list() == [ids.of("CUSTOMER-ALICE")]
    rejected = pl.read_parquet(tmp_path / "out" / "events_rejected.parquet")
    assert rejected[s.USER_ID].to_list() == [ids.of("CUSTOMER-BOB")]


def test_a_retail_customer_number_maps_as_the_api_will_see_it(tmp_path):
    # "12345.0" in a spreadsheet is customer 12345: the pseudonym is of "12345", in rejected rows too.
    lines = ["536365,85123A,MUG,6,2010-12-01 08:26:00,2.55,12345.0,United Kingdom\n"]
    lines.append("C536366,85123A,MUG,-6,2010-12-01 08:28:00,2.55,12345.0,United Kingdom\n")
    (tmp_path / "retail.csv").write_text(RETAIL_HEADER + "".join(lines))
    privacy = PrivacyConfig(pseudonymize=True, key="secret")
    ingest("online-retail", tmp_path / "retail.csv", tmp_path / "out", IngestConfig(), privacy)
    expected = Pseudonyms(privacy).of("12345")
    assert pl.read_parquet(tmp_path / "out" / "events.parquet")[s.USER_ID].to_list() == [expected]
    assert pl.read_parquet(tmp_path / "out" / "events_rejected.parquet")["Customer ID"].to_list() == [expected]
    assert b"12345" not in _every_byte(tmp_path / "out")


def test_rotating_the_key_is_a_reingest_that_maps_every_user_anew_and_consistently(tmp_path):
    rows = ["U1,I1,2024-01-01 10:00:00,view,1,10.0,GB\n", "U1,I1,2024-01-02 10:00:00,purchase,1,10.0,GB\n"]
    rows.append("U2,I1,2024-01-03 10:00:00,view,1,10.0,GB\n")
    source = _canonical(tmp_path / "in", rows)
    users = {}
    for key in ("old-key", "new-key"):
        ingest("canonical", source, tmp_path / key, IngestConfig(), PrivacyConfig(pseudonymize=True, key=key))
        users[key] = pl.read_parquet(tmp_path / key / "events.parquet")[s.USER_ID].to_list()
    old, new = users["old-key"], users["new-key"]
    assert old[0] == old[1] != old[2] and new[0] == new[1] != new[2]  # one person, one pseudonym per key
    assert not set(old) & set(new)  # and nothing links the two


def test_events_past_retention_are_rejected_under_their_own_reason(tmp_path):
    now = datetime.now(UTC)
    old, recent = (now - timedelta(days=400)).strftime("%Y-%m-%d"), (now - timedelta(days=10)).strftime("%Y-%m-%d")
    rows = [f"U1,I1,{old} 10:00:00,view,1,10.0,GB\n", f"U1,I1,{recent} 10:00:00,view,1,10.0,GB\n"]
    source, keep_a_year = _canonical(tmp_path / "in", rows), PrivacyConfig(retention_days=365)
    summary = ingest("canonical", source, tmp_path / "out", IngestConfig(), keep_a_year)
    assert summary["rows_accepted"] == 1 and summary["rows_rejected"] == {"older_than_retention": 1}
