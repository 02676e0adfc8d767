"""What guards a write to the online store: a lock per user, a rate for new users, and the errors.

An event rewrites the user's history (read, append, write back). Two writes of one
user at once would lose one of them, so each holds that user's lock: in Redis
itself, or on SQLite a byte of a file next to the database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from seasonrec.errors import SeasonrecError

log = logging.getLogger(__name__)

# An event waiting longer than this for another write of the same user's history gets a 503.
LOCK_WAIT_S = 2.0
# A Redis lock whose holder died frees itself after this; a push takes milliseconds.
LOCK_HOLD_S = 10.0
# SQLite: users share a lock byte per stripe, so the lock file stays small whatever the number of users.
LOCK_STRIPES = 4096
# fcntl locks belong to the process, so its threads (and its readers of one store) need these as well.
_THREAD_STRIPES = [threading.Lock() for _ in range(LOCK_STRIPES)]


class StoreUnavailable(SeasonrecError):
    """The online store did not answer (or another write of the user held it too long)."""


class UnknownItem(SeasonrecError):
    """An event names an item that the catalogue does not hold."""


class NewUserLimit(SeasonrecError):
    """Too many events this minute for users that the online store has never seen."""


class TokenBucket:
    """At most `per_minute` takes a minute, in bursts of up to that many."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.rate, self.capacity, self.clock = per_minute / 60, float(per_minute), clock
        self.tokens, self.last = self.capacity, clock()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


class UserLocks:
    """One lock per user, shared by every process that writes the same online store.

    Redis: redis-py's Lock in the store's own Redis (SET NX PX, released by a Lua script that
    checks the holder's token), so replicas on any host exclude each other. SQLite: a byte of a
    lock file next to the database (fcntl, one byte per stripe of users), with a thread lock
    per stripe for this process's own threads.
    """

    def __init__(self, store, provider):
        config = store.config.online_store
        self.redis = None
        if config.type == "redis":
            self.redis = provider.online_store._get_client(config)  # Feast's own client: same address and AUTH
            self.prefix = f"{store.project}:event_lock:"
        else:
            path = f"{provider.online_store._get_db_path(store.config)}.events.lock"
            # Never closed: closing any descriptor of the file would drop every lock this process holds on it.
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def hold(self, user_id: str) -> Iterator[Callable[[], None]]:
        """Hold the user's lock; the value is `confirm`, to call just before the write.

        A Redis lock frees itself after LOCK_HOLD_S, so a holder that stalled that long may
        have lost it to another writer: `confirm` then raises StoreUnavailable rather than let
        the stale read-modify-write overwrite the other's event, and otherwise renews the lock
        for a full LOCK_HOLD_S. A file lock never expires: its `confirm` does nothing."""
        if self.redis is None:
            with self._file(user_id):
                yield lambda: None
        else:
            with self._redis(user_id) as lock:
                yield lambda: _renew(lock)

    @contextlib.contextmanager
    def _redis(self, user_id: str) -> Iterator[Any]:
        from redis.exceptions import LockError, RedisError

        lock = self.redis.lock(self.prefix + user_id, timeout=LOCK_HOLD_S, blocking_timeout=LOCK_WAIT_S)
        try:
            acquired = lock.acquire()
        except RedisError as exc:
            raise StoreUnavailable(f"online store: lock failed: {type(exc).__name__}") from exc
        if not acquired:
            raise StoreUnavailable(f"another write of this user's history held its lock over {LOCK_WAIT_S} s")
        try:
            yield lock
        finally:
            try:
                lock.release()
            except (LockError, RedisError) as exc:  # expired meanwhile, or Redis went away: it frees itself
                log.warning("event lock not released: %s", type(exc).__name__)

    @contextlib.contextmanager
    def _file(self, user_id: str) -> Iterator[None]:
        import fcntl

        # crc32, not hash(): every process must pick the same byte for a user.
        stripe = zlib.crc32(user_id.encode()) % LOCK_STRIPES
        deadline = time.monotonic() + LOCK_WAIT_S
        busy = StoreUnavailable(f"another write of this user's history held its lock over {LOCK_WAIT_S} s")
        if not _THREAD_STRIPES[stripe].acquire(timeout=LOCK_WAIT_S):
            raise busy
        try:
            while True:  # fcntl cannot wait with a bound: poll
                try:
                    fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, stripe)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise busy from None
                    time.sleep(0.005)
            try:
                yield
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, stripe)
        finally:
            _THREAD_STRIPES[stripe].release()


def _renew(lock) -> None:
    """Reset the Redis lock's expiry to LOCK_HOLD_S, or raise StoreUnavailable if it is no longer ours."""
    from redis.exceptions import LockError, RedisError

    try:
        lock.reacquire()
    except LockError as exc:  # LockNotOwnedError: it expired, and perhaps another writer holds it now
        raise StoreUnavailable(f"this write held the user's lock over {LOCK_HOLD_S} s and lost it") from exc
    except RedisError as exc:
        raise StoreUnavailable(f"online store: lock failed: {type(exc).__name__}") from exc
