"""Erasure: remove one person from every place seasonrec keeps them, and record that it was done.

The places: the online store (SQLite or Redis rows keyed by the user), every Parquet file under
`paths.data_dir` with a user column (canonical events, the offline feature tables, training sets,
evaluation outputs, the raw generator output), and the JSON files seasonrec wrote that name the user
(the CLI's last results). A running replica holds no user rows of its own (serving/fetcher.py caches
item rows only); the API's erasure clears the little the Ingress keeps (`serving/app.py`).

The caller gives the shop's raw id. It is mapped with `Pseudonyms` first, and rows under either
form go: data written before pseudonymization was turned on still holds the raw id.

Order matters for a retry: the online keys of views keyed by (user, item) are built from the user's
items in the offline tables, so the online store goes first and the offline files after. If the
online part fails nothing else has changed, and running it again finds the same items.

The audit line says who, when and how much from where, never the id or its pseudonym: an audit
file that named erased people would itself need erasing.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from seasonrec import schema as s
from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.privacy.pseudonyms import Pseudonyms

log = logging.getLogger(__name__)

PRIVACY_DIR = "privacy"
AUDIT_FILE = "audit.jsonl"
LOCK_FILE = "erasure.lock"
# Parameters per SQLite statement: under SQLITE_MAX_VARIABLE_NUMBER's oldest default (999).
SQL_BATCH = 500
# What an id in a path is replaced with in a result or the audit line.
MASK = "<erased>"

# An online key: the view's join keys and, for each, its value.
Key = tuple[tuple[str, str | int], ...]


def who_cli() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        user = str(os.getuid())
    return f"cli:{user}"


def stored_ids(settings: Settings, user_id: str, field: str = "--user") -> list[str]:
    """The forms `user_id` may be stored under: its pseudonym (when pseudonymizing) and the raw id.

    `field` names the input in the error (`--user` for the CLI, `user_id` for the API)."""
    if not isinstance(user_id, str) or not user_id.strip():
        raise SeasonrecError(f"{field}: empty")
    if len(user_id) > s.MAX_ID_LENGTH:
        raise SeasonrecError(f"{field}: longer than {s.MAX_ID_LENGTH} characters")
    return list(dict.fromkeys([Pseudonyms(settings.privacy).of(user_id), user_id]))


# --- offline -------------------------------------------------------------------------------------------


def _parquet_files(root: Path) -> Iterator[Path]:
    """Every Parquet file under `root`, our own temporary files and links aside (a link's target is
    either under root too, and found there, or not ours to rewrite)."""
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*.parquet")):
        if path.is_file() and not path.is_symlink():
            yield path


def _user_column(path: Path) -> bool:
    return s.USER_ID in pl.read_parquet_schema(path)


def _matches(ids: list[str]) -> pl.Expr:
    # fill_null: a row without a user (a rejected row) is no match, and must be kept, not dropped by filter.
    return pl.col(s.USER_ID).cast(pl.String).is_in(ids).fill_null(False)


def _scan(path: Path) -> pl.LazyFrame:
    # Never read `a=b/` folders as columns: the file is rewritten with exactly the columns it has.
    return pl.scan_parquet(path, hive_partitioning=False)


def _relative(path: Path, root: Path, ids: list[str]) -> str:
    """A path as the result and the audit show it: under the data folder, and masked if it holds the id."""
    try:
        text = str(path.relative_to(root))
    except ValueError:
        text = str(path)
    for i in ids:
        text = text.replace(i, MASK)
    return text


def user_keys(views: Iterable, ids: list[str]) -> dict[str, list[Key]]:
    """Online keys of the user, per feature view keyed by the user: read from each view's own offline
    table for a view keyed by the user and more (user_item_stats: one key per item bought), built
    directly for a view keyed by the user alone. Call it before the offline rows go."""
    keys: dict[str, list[Key]] = {}
    for view in views:
        join = [c.name for c in view.entity_columns]
        if s.USER_ID not in join:
            continue
        if join == [s.USER_ID]:
            keys[view.name] = [((s.USER_ID, i),) for i in ids]
            continue
        path = Path(getattr(view.batch_source, "path", "") or "")
        if not path.is_file():
            log.warning("%s: offline table not found; its online rows of this user cannot be listed", view.name)
            keys[view.name] = []
            continue
        rows = _scan(path).filter(_matches(ids)).select(join).unique().collect()
        keys[view.name] = [tuple(zip(join, row, strict=True)) for row in rows.iter_rows()]
    return keys


def forget_offline(settings: Settings, ids: list[str]) -> tuple[dict[str, int], list[str]]:
    """Remove the user's rows from every Parquet file under the data folder with a user column.

    Each affected file is written anew beside itself and moved over the old one (`os.replace`): a
    reader sees the old file or the new one, never half of one. Returns rows removed per file
    (affected files only) and the files that could not be read (not checked: the caller says so).
    """
    root = settings.paths.root
    removed: dict[str, int] = {}
    unreadable: list[str] = []
    for path in _parquet_files(root):
        name = _relative(path, root, ids)
        try:
            if not _user_column(path):
                continue
            n = _scan(path).filter(_matches(ids)).select(pl.len()).collect().item()
        except (OSError, pl.exceptions.PolarsError) as exc:
            log.warning("%s: not readable, not checked (%s)", name, type(exc).__name__)
            unreadable.append(name)
            continue
        if n:
            _rewrite(path, ids)
            removed[name] = n
    return removed, unreadable


def _rewrite(path: Path, ids: list[str]) -> None:
    # A hidden name that ends in neither .parquet nor a table name: no scan picks a half-written file up.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.erasing")
    try:
        _scan(path).filter(~_matches(ids)).sink_parquet(tmp)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- files seasonrec wrote -----------------------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _names(text: str, ids: list[str]) -> bool:
    """Whether a JSON text names one of `ids`: as a whole string, or a word in one (not U1 inside U12)."""
    patterns = [re.compile(rf"(?<![\w-]){re.escape(i)}(?![\w-])") for i in ids]
    try:
        strings: Iterable[str] = list(_strings(json.loads(text)))
    except ValueError:
        strings = [text]  # not JSON after all: search it as it is
    return any(p.search(t) for t in strings for p in patterns)


def forget_files(settings: Settings, ids: list[str]) -> list[str]:
    """Delete the JSON files under the data folder that name the user (a `runs/features-online.json` of
    `--user U`, say); the audit folder aside. A file is deleted whole: a result missing a part is wrong."""
    root = settings.paths.root
    audit_dir = root / PRIVACY_DIR
    deleted = []
    for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
        if not path.is_file() or path.is_symlink() or audit_dir in path.parents:
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError as exc:
            log.warning("%s: not readable, not checked (%s)", _relative(path, root, ids), type(exc).__name__)
            continue
        if _names(text, ids):
            path.unlink()
            deleted.append(_relative(path, root, ids))
    return deleted


# --- online --------------------------------------------------------------------------------------------


def _entity_key(key: Key):
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(
        join_keys=[k for k, _ in key],
        entity_values=[Value(int64_val=v) if isinstance(v, int) else Value(string_val=str(v)) for _, v in key],
    )


def forget_online(store, keys: dict[str, list[Key]], locks=None, user_ids: Iterable[str] = ()) -> dict[str, int]:
    """Delete the keys from the store's online store: rows per view (SQLite), keys per entity set (Redis).

    Feast has no delete for one entity, so this uses its own key encoding. `locks` (a UserLocks of
    the same store) is held for each id while its rows go: an event being written at that moment
    would otherwise read the old history and write it back after the delete.
    """
    with contextlib.ExitStack() as held:
        if locks is not None:
            for i in user_ids:
                held.enter_context(locks.hold(i))
        config = store.config
        if config.online_store.type == "redis":
            return _forget_redis(store, keys)
        return _forget_sqlite(store, keys)


def _forget_sqlite(store, keys: dict[str, list[Key]]) -> dict[str, int]:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.sqlite import _table_id

    config = store.config
    provider = store._get_provider()
    path = provider.online_store._get_db_path(config)
    removed: dict[str, int] = {}
    if not Path(path).is_file():
        return removed
    versioning = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))
    views = {v.name: v for v in store.list_feature_views()}
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        # Deleted rows' bytes would otherwise stay in the file's free pages, readable by anyone with the file.
        db.execute("PRAGMA secure_delete = ON")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        with db:  # one transaction: all of it or nothing
            for name, view_keys in keys.items():
                table = _table_id(config.project, views[name], versioning) if name in views else None
                if table not in tables:
                    continue
                blobs = [
                    serialize_entity_key(_entity_key(k), config.entity_key_serialization_version) for k in view_keys
                ]
                count = 0
                quoted = '"' + table.replace('"', '""') + '"'
                for start in range(0, len(blobs), SQL_BATCH):
                    chunk = blobs[start : start + SQL_BATCH]
                    marks = ",".join("?" * len(chunk))
                    found = db.execute(
                        f"SELECT COUNT(DISTINCT entity_key) FROM {quoted} WHERE entity_key IN ({marks})", chunk
                    )
                    count += found.fetchone()[0]
                    db.execute(f"DELETE FROM {quoted} WHERE entity_key IN ({marks})", chunk)
                removed[name] = count
    return removed


def _forget_redis(store, keys: dict[str, list[Key]]) -> dict[str, int]:
    """Redis keeps one hash per entity key, with the fields of every view keyed alike: the user's
    stats, history and repeats share one key. Counts are per set of join keys ("user_id",
    "item_id+user_id")."""
    from feast.infra.online_stores.helpers import _redis_key

    config = store.config
    client = store._get_provider().online_store._get_client(config.online_store)  # Feast's: same address, AUTH
    by_entity: dict[str, set[bytes]] = {}
    for view_keys in keys.values():
        for key in view_keys:
            name = "+".join(sorted(k for k, _ in key))
            redis_key = _redis_key(config.project, _entity_key(key), config.entity_key_serialization_version)
            by_entity.setdefault(name, set()).add(redis_key)
    removed: dict[str, int] = {}
    for name, redis_keys in sorted(by_entity.items()):
        ordered = sorted(redis_keys)
        with client.pipeline(transaction=True) as pipe:
            for key in ordered:
                pipe.delete(key)
            removed[name] = sum(pipe.execute())
    return removed


# --- the whole erasure ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _one_at_a_time(settings: Settings) -> Iterator[None]:
    """Two erasures (the CLI and the API, say) never rewrite the same file at once."""
    import fcntl

    folder = _private_dir(settings)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _private_dir(settings: Settings) -> Path:
    folder = settings.paths.root / PRIVACY_DIR
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)  # mkdir's mode passes through the umask, and an existing folder keeps its own
    return folder


def write_audit(settings: Settings, record: dict) -> Path:
    """Append one JSON line to <data_dir>/privacy/audit.jsonl (0600, folder 0700), synced to disk."""
    path = _private_dir(settings) / AUDIT_FILE
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def finish(
    settings: Settings,
    ids: list[str],
    online: dict[str, int],
    who: str,
    request_id: str | None = None,
    cached: int = 0,
) -> dict:
    """The offline and file parts of an erasure, once its online part is done; then the audit line."""
    if not settings.paths.root.is_dir():
        raise SeasonrecError(f"{settings.paths.root}: data folder not found (paths.data_dir)")
    with _one_at_a_time(settings):
        offline, unreadable = forget_offline(settings, ids)
        files = forget_files(settings, ids)
    removed = {
        "offline_rows": sum(offline.values()),
        "online_keys": sum(online.values()),
        "files": len(files),
        "cached": cached,
    }
    removed = {"total": sum(removed.values()), **removed}
    where = {"offline_rows": offline, "online_keys": online, "files": files}
    record = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "who": who,
        "request_id": request_id,
        "profile": settings.feast.profile,
        "pseudonymized": Pseudonyms(settings.privacy).active,
        "removed": removed,
        "where": where,
        "unreadable": unreadable,
    }
    audit = write_audit(settings, record)
    result = {"removed": removed, "where": where, "audit": str(audit)}
    if unreadable:
        result["unreadable"] = unreadable
    return result


def forget(
    settings: Settings,
    user_id: str,
    who: str,
    request_id: str | None = None,
    online: Callable[[list[str]], dict[str, int]] | None = None,
) -> dict:
    """Erase `user_id` (the shop's raw id) everywhere; returns counts per place and where.

    `online(ids)` deletes the online rows (the API asks its FeatureFetcher); default: this process
    opens the store and does it.
    An id nobody holds is no error: every count is 0 (and the audit line says so).
    """
    from seasonrec.features.store import open_store

    ids = stored_ids(settings, user_id)
    if online is None:
        from seasonrec.serving.writes import UserLocks

        store = open_store(settings)
        online_removed = forget_user_online(store, ids, UserLocks(store, store._get_provider()))
    else:
        online_removed = online(ids)
    return finish(settings, ids, online_removed, who, request_id)


def forget_user_online(store, ids: list[str], locks=None) -> dict[str, int]:
    """The online part for a store already open (the CLI's, or a FeatureFetcher replica's own)."""
    return forget_online(store, user_keys(store.list_feature_views(), ids), locks, ids)
