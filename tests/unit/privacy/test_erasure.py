"""The offline and file parts of an erasure, and its audit line, on small files (no Feast)."""

from __future__ import annotations

import json
import stat

import polars as pl
import pytest
from pydantic import SecretStr

from seasonrec import schema as s
from seasonrec.config import PathsConfig, PrivacyConfig, Settings
from seasonrec.errors import SeasonrecError
from seasonrec.privacy.erasure import AUDIT_FILE, PRIVACY_DIR, finish, forget_files, forget_offline, stored_ids
from seasonrec.privacy.pseudonyms import pseudonym


def _settings(root, pseudonymize: bool = False) -> Settings:
    privacy = PrivacyConfig(pseudonymize=pseudonymize, key=SecretStr("k") if pseudonymize else None)
    return Settings(paths=PathsConfig(data_dir=root), privacy=privacy)


def _events(users: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame({s.USER_ID: users, s.ITEM_ID: [f"I{i}" for i in range(len(users))]})


@pytest.mark.parametrize(("given", "message"), [("", "--user: empty"), ("  ", "--user: empty"), ("x" * 129, "longer")])
def test_a_bad_id_is_one_line_naming_the_field(tmp_path, given, message):
    with pytest.raises(SeasonrecError, match=message):
        stored_ids(_settings(tmp_path), given)


def test_ids_are_the_pseudonym_and_the_raw_id_when_pseudonymizing(tmp_path):
    assert stored_ids(_settings(tmp_path), "U1") == ["U1"]
    assert stored_ids(_settings(tmp_path, pseudonymize=True), "U1") == [pseudonym("U1", "k"), "U1"]


def test_offline_rows_of_the_user_go_and_every_other_row_stays(tmp_path):
    settings = _settings(tmp_path)
    (tmp_path / "features").mkdir()
    (tmp_path / "train").mkdir()
    table = tmp_path / "features" / "user_stats.parquet"
    _events(["U1", "U2", None, "U1", "U12"]).write_parquet(table)
    table.chmod(0o640)
    untouched = tmp_path / "train" / "set.parquet"
    _events(["U2"]).write_parquet(untouched)
    no_users = tmp_path / "features" / "items.parquet"
    pl.DataFrame({s.ITEM_ID: ["U1"]}).write_parquet(no_users)
    mtimes = {p: p.stat().st_mtime_ns for p in (untouched, no_users)}

    removed, unreadable = forget_offline(settings, ["U1"])

    assert removed == {"features/user_stats.parquet": 2} and unreadable == []
    # A row without a user is kept; U12 is another user, not U1 with a suffix.
    assert pl.read_parquet(table)[s.USER_ID].to_list() == ["U2", None, "U12"]
    assert stat.S_IMODE(table.stat().st_mode) == 0o640
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # only affected files are rewritten
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == ["items.parquet", "user_stats.parquet"]


def test_an_unreadable_parquet_file_is_reported_not_skipped_silently(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    assert forget_offline(_settings(tmp_path), ["U1"]) == ({}, ["broken.parquet"])


def test_json_files_naming_the_user_are_deleted_and_others_kept(tmp_path):
    settings = _settings(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "features-online.json").write_text(json.dumps({"user": {s.USER_ID: "U1", "n": 3}}))
    (tmp_path / "runs" / "train.json").write_text(json.dumps({"users": ["U12", "XU1"], "note": "U1x"}))
    (tmp_path / "runs" / "note.json").write_text("not json, but names U1 all the same")
    (tmp_path / PRIVACY_DIR).mkdir()
    (tmp_path / PRIVACY_DIR / "kept.json").write_text('"U1"')

    assert forget_files(settings, ["U1"]) == ["runs/features-online.json", "runs/note.json"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["train.json"]
    assert (tmp_path / PRIVACY_DIR / "kept.json").is_file()


def test_the_audit_line_counts_what_went_and_names_nobody(tmp_path):
    settings = _settings(tmp_path, pseudonymize=True)
    ids = stored_ids(settings, "U1")
    (tmp_path / "eval").mkdir()
    # A file whose very name holds the pseudonym: the result and the audit line mask it.
    _events([ids[0], "U2"]).write_parquet(tmp_path / "eval" / f"{ids[0]}.parquet")
    _events(["U1"]).write_parquet(tmp_path / "raw.parquet")

    result = finish(settings, ids, {"user_stats": 1}, who="cli:tester", request_id=None)

    assert result["removed"] == {"total": 3, "offline_rows": 2, "online_keys": 1, "files": 0, "cached": 0}
    audit = tmp_path / PRIVACY_DIR / AUDIT_FILE
    text = audit.read_text()
    assert "U1" not in text and ids[0] not in text and "<erased>.parquet" in text
    record = json.loads(text)
    assert record["who"] == "cli:tester" and record["pseudonymized"] is True and record["removed"] == result["removed"]
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600 and stat.S_IMODE(audit.parent.stat().st_mode) == 0o700

    finish(settings, ids, {}, who="api", request_id="r1")
    lines = audit.read_text().splitlines()
    assert (
        len(lines) == 2 and json.loads(lines[1])["removed"]["total"] == 0 and json.loads(lines[1])["request_id"] == "r1"
    )
