"""Per-order lease locks with fencing tokens.

A lock is a lease: ``SET lock NX PX ttl`` whose value is a fencing token, the next value of a
per-order counter that releases never reset. Celery's task cookbook warns that a lock must never
be released by someone who no longer holds it, and Kleppmann's fencing-token argument adds that a
lease can expire under a paused worker. So every check and write compares the lock's value with
the holder's token inside Redis (a Lua script): a stale holder can neither release, renew nor
record (see :mod:`bridge.state.ledger`) over the new holder.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import redis

from bridge.domain.errors import StaleLockError, TransientError
from bridge.domain.models import ORDER_ID_PATTERN

log = logging.getLogger(__name__)

_ORDER_ID = re.compile(ORDER_ID_PATTERN)

# The fence counter outlives any lease by far; it only expires after a month without a holder,
# when no lease that could hold an older token can still be alive.
FENCE_RETENTION_SECONDS = 30 * 86400

# The token grows with Redis's clock (microseconds) and is above the last one handed out, so it
# keeps growing even after Redis is wiped: the ERP, which remembers the highest token it saw for
# an order, must never take a new holder for a stale one.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local now = redis.call('TIME')
local clock = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local token = math.max(clock, last + 1)
redis.call('SET', KEYS[2], string.format('%.0f', token), 'PX', ARGV[2])
token = string.format('%.0f', token)
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def checked_order_id(order_id: str) -> str:
    """The order id, if it may become part of a Redis key; ValueError otherwise."""
    if not isinstance(order_id, str) or not _ORDER_ID.fullmatch(order_id):
        raise ValueError("not an order id")
    return order_id


def lock_key(prefix: str, order_id: str) -> str:
    """The order's lock key; the ledger checks the fencing token against it."""
    return f"{prefix}lock:order:{checked_order_id(order_id)}"


def fence_key(prefix: str, order_id: str) -> str:
    return f"{prefix}lock:fence:{checked_order_id(order_id)}"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class LockBusy(TransientError):
    """Another worker holds the order's lease: try again shortly."""


class OrderLease:
    """A held lease on one order (implements :class:`bridge.domain.ports.Lease`).

    ``token`` is the fencing token: larger for every new holder of the order.
    """

    def __init__(self, locks: OrderLocks, order_id: str, token: int) -> None:
        self.order_id = order_id
        self.token = token
        self._locks = locks
        self._key = lock_key(locks.prefix, order_id)
        self._lost = threading.Event()

    def __repr__(self) -> str:
        return f"OrderLease(order_id={self.order_id!r}, token={self.token})"

    @property
    def lost(self) -> bool:
        """True once this lease is known to be gone (expired, taken over or released)."""
        return self._lost.is_set()

    def mark_lost(self) -> None:
        if not self._lost.is_set():
            self._lost.set()
            log.warning("order %s: lease with token %s lost", self.order_id, self.token)

    def held(self) -> bool:
        """Whether the order's lock still holds this lease's token."""
        if self.lost:
            return False
        return bool(self._locks.redis.get(self._key) == str(self.token))

    def ensure(self) -> None:
        """Raise StaleLockError unless the lease is still ours; fails fast once known lost."""
        if self.lost or not self.held():
            self.mark_lost()
            raise StaleLockError(f"order {self.order_id}: lease {self.token} is no longer held")

    def renew(self) -> bool:
        """Extend the lease by the lock's ttl, only if it is still ours."""
        if self.lost:
            return False
        renewed = bool(self._locks._renew(keys=[self._key], args=[self.token, self._locks.ttl_ms]))
        if not renewed:
            self.mark_lost()
        return renewed

    def release(self) -> bool:
        """Delete the lock, only if it is still ours; never deletes another holder's lock."""
        released = bool(self._locks._release(keys=[self._key], args=[self.token]))
        self._lost.set()  # released on purpose: no write may follow under this token
        return released

    def __enter__(self) -> OrderLease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class OrderLocks:
    """Per-order leases shared by all workers through Redis."""

    def __init__(
        self,
        redis: redis.Redis,
        prefix: str,
        ttl: float = 30.0,
        *,
        busy_retry_after: float = 1.0,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl
        self.ttl_ms = _ms(ttl)
        self.busy_retry_after = busy_retry_after
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def acquire(self, order_id: str) -> OrderLease | None:
        """Take the order's lease without waiting; None when another worker holds it."""
        keys = [lock_key(self.prefix, order_id), fence_key(self.prefix, order_id)]
        token: Any = self._acquire(keys=keys, args=[self.ttl_ms, FENCE_RETENTION_SECONDS * 1000])
        if token is None:
            return None
        return OrderLease(self, order_id, int(token))

    def current_token(self, order_id: str) -> int | None:
        """The fencing token of the order's current holder; None when nobody holds it."""
        value: Any = self.redis.get(lock_key(self.prefix, order_id))
        return None if value is None else int(value)

    @contextmanager
    def hold(self, order_id: str) -> Iterator[OrderLease]:
        """Hold the order's lease for the block, renewed every ttl/3 by a keeper thread.

        Raises LockBusy when another worker holds it. If a renewal finds the lease gone, the
        lease is marked lost and ``ensure()`` fails at once, without asking Redis.
        """
        lease = self.acquire(order_id)
        if lease is None:
            raise LockBusy(
                f"order {order_id} is locked by another worker", retry_after=self.busy_retry_after
            )
        stop = threading.Event()
        keeper = threading.Thread(
            target=self._keep, args=(lease, stop), name=f"lease-keeper-{order_id}", daemon=True
        )
        keeper.start()
        try:
            yield lease
        finally:
            stop.set()
            keeper.join()
            lease.release()

    def _keep(self, lease: OrderLease, stop: threading.Event) -> None:
        last_renewed = time.monotonic()
        while not stop.wait(self.ttl / 3):
            try:
                if not lease.renew():
                    return  # renew() marked the lease lost
                last_renewed = time.monotonic()
            except redis.RedisError as exc:
                # Redis unreachable: the lease may still be ours, until its ttl has run out.
                log.warning("order %s: lease renewal failed: %s", lease.order_id, exc)
                if time.monotonic() - last_renewed >= self.ttl:
                    lease.mark_lost()
                    return
