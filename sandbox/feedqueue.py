"""In-memory imitation of the queue behind VTEX's Orders Feed v3 (an AWS SQS standard queue).

Semantics, all driven by the injected ``clock`` and ``random.Random`` (so runs are
deterministic); no I/O, no threads, the caller serialises access:

* At-least-once delivery: ``enqueue`` stores one message and, with probability
  ``duplicate_share``, a second independent message with the same body.
* Best-effort ordering: ``receive`` looks at the visible messages in enqueue order and
  repeatedly picks one at random among the first ``shuffle_window`` of them, so order is
  shuffled locally but old messages are never starved.
* Short reads: with probability ``partial_share`` a receive that could return ``n > 0``
  messages returns a random count in ``0..n-1`` instead.
* Visibility timeout: every delivery gets a fresh, never repeated receipt handle and hides
  the message until ``now + visibility_timeout``; an uncommitted message then becomes
  visible again and its next delivery carries a new handle.
* Receipt-handle rule: ``commit`` deletes a message only through its latest handle, even
  after the visibility timeout passed (as long as it was not redelivered). Stale, unknown
  and already used handles are ignored.
* Retention: a message whose age exceeds ``retention`` is dropped, in flight or not, and
  counted as expired. Expiry and visibility are re-evaluated at the start of ``receive``,
  ``commit``, ``stats`` and ``pending_events``.

The clock is assumed monotonic: messages are kept in enqueue (= time) order so expired
ones are always at the front. Visible messages sit in a min-heap of message ids and hidden
ones in a heap keyed by ``hidden_until``; both use lazy deletion, so a receive costs
``O((shuffle_window + maxlot) log n)`` plus the messages that expire or reappear.
"""

from __future__ import annotations

import base64
import heapq
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

MAX_LOT = 10


@dataclass(frozen=True)
class QueueStats:
    waiting: int  # messages visible now
    in_flight: int  # delivered, hidden, not committed
    oldest_age: float  # seconds since the oldest message still queued was enqueued (0 if empty)
    enqueued: int  # total messages ever enqueued (duplicates count as messages)
    delivered: int  # total deliveries (a redelivery counts again)
    committed: int  # messages deleted by a commit
    expired: int  # messages dropped by retention


@dataclass
class _Message:
    body: dict[str, str]
    enqueued_at: float
    handle: str | None = None
    deliveries: int = 0
    visible: bool = True


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], got {value!r}")


class FeedQueue:
    """SQS-standard-like queue of feed events; see the module docstring."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        rng: random.Random,
        visibility_timeout: float = 30.0,
        retention: float = 345_600.0,
        duplicate_share: float = 0.10,
        partial_share: float = 0.10,
        shuffle_window: int = 20,
    ) -> None:
        _check_share("duplicate_share", duplicate_share)
        _check_share("partial_share", partial_share)
        if shuffle_window < 1:
            raise ValueError(f"shuffle_window must be >= 1, got {shuffle_window!r}")
        self._clock = clock
        self._rng = rng
        self._duplicate_share = duplicate_share
        self._partial_share = partial_share
        self._shuffle_window = shuffle_window
        self._visibility_timeout = 0.0
        self._retention = 0.0
        self.configure(visibility_timeout=visibility_timeout, retention=retention)
        self._next_id = 0
        self.clear()

    def configure(self, *, visibility_timeout: float, retention: float) -> None:
        """Change the timeouts; visibility applies to future deliveries."""
        if visibility_timeout < 0:
            raise ValueError(f"visibility_timeout must be >= 0, got {visibility_timeout!r}")
        if retention <= 0:
            raise ValueError(f"retention must be > 0, got {retention!r}")
        self._visibility_timeout = float(visibility_timeout)
        self._retention = float(retention)

    def clear(self) -> None:
        """Drop every message and reset the counters (handles still never repeat)."""
        self._messages: OrderedDict[int, _Message] = OrderedDict()
        self._visible: list[int] = []  # min-heap of ids; entries of deleted ids are stale
        self._hidden: list[tuple[float, int, int]] = []  # (hidden_until, id, deliveries)
        self._handles: dict[str, int] = {}  # latest handle -> message id
        self._waiting = 0
        self._enqueued = self._delivered = self._committed = self._expired = 0

    def enqueue(self, event: Mapping[str, str]) -> int:
        """Store ``event``; returns how many copies were stored (1, or 2 for a duplicate)."""
        if "handle" in event:
            raise ValueError("event bodies must not carry a 'handle'")
        copies = 2 if self._rng.random() < self._duplicate_share else 1
        now = self._clock()
        for _ in range(copies):
            message_id = self._next_id
            self._next_id += 1
            self._messages[message_id] = _Message(body=dict(event), enqueued_at=now)
            heapq.heappush(self._visible, message_id)
            self._waiting += 1
        self._enqueued += copies
        return copies

    def receive(self, maxlot: int = 10) -> list[dict[str, str]]:
        """Deliver up to ``maxlot`` (1..10) visible messages, each with a new ``handle``."""
        if not 1 <= maxlot <= MAX_LOT:
            raise ValueError(f"maxlot must be within 1..{MAX_LOT}, got {maxlot!r}")
        now = self._refresh()
        count = min(maxlot, self._waiting)
        if count > 0 and self._rng.random() < self._partial_share:
            count = self._rng.randrange(count)
        window: list[int] = []  # the first visible ids, ascending
        self._fill(window)
        batch: list[dict[str, str]] = []
        for _ in range(count):
            message_id = window.pop(self._rng.randrange(len(window)))
            self._fill(window)
            batch.append(self._deliver(message_id, now))
        for message_id in window:
            heapq.heappush(self._visible, message_id)
        return batch

    def commit(self, handles: Iterable[str]) -> int:
        """Delete the messages whose latest handle is given; returns how many were deleted."""
        self._refresh()
        deleted = 0
        for handle in handles:
            message_id = self._handles.pop(handle, None)
            if message_id is None:
                continue
            message = self._messages.pop(message_id)
            if message.visible:
                self._waiting -= 1
            deleted += 1
        self._committed += deleted
        self._compact()
        return deleted

    def stats(self) -> QueueStats:
        now = self._refresh()
        oldest = next(iter(self._messages.values()), None)
        return QueueStats(
            waiting=self._waiting,
            in_flight=len(self._messages) - self._waiting,
            oldest_age=0.0 if oldest is None else max(0.0, now - oldest.enqueued_at),
            enqueued=self._enqueued,
            delivered=self._delivered,
            committed=self._committed,
            expired=self._expired,
        )

    def pending_events(self) -> list[dict[str, str]]:
        """Bodies (without handles) of every message still queued, in enqueue order."""
        self._refresh()
        return [dict(message.body) for message in self._messages.values()]

    def _refresh(self) -> float:
        """Drop expired messages and make those whose visibility ran out visible again."""
        now = self._clock()
        while self._messages:
            message_id, message = next(iter(self._messages.items()))
            if now - message.enqueued_at <= self._retention:
                break
            del self._messages[message_id]
            if message.handle is not None:
                self._handles.pop(message.handle, None)
            if message.visible:
                self._waiting -= 1
            self._expired += 1
        while self._hidden and self._hidden[0][0] <= now:
            _, message_id, deliveries = heapq.heappop(self._hidden)
            found = self._messages.get(message_id)
            if found is None or found.visible or found.deliveries != deliveries:
                continue  # committed or expired meanwhile
            found.visible = True
            heapq.heappush(self._visible, message_id)
            self._waiting += 1
        self._compact()
        return now

    def _fill(self, window: list[int]) -> None:
        """Top ``window`` up to ``shuffle_window`` ids with the smallest live visible ids."""
        while len(window) < self._shuffle_window and self._visible:
            message_id = heapq.heappop(self._visible)
            if message_id in self._messages:
                window.append(message_id)

    def _deliver(self, message_id: int, now: float) -> dict[str, str]:
        message = self._messages[message_id]
        if message.handle is not None:
            del self._handles[message.handle]
        handle = self._new_handle()
        self._handles[handle] = message_id
        message.handle = handle
        message.visible = False
        message.deliveries += 1
        hidden_until = now + self._visibility_timeout
        heapq.heappush(self._hidden, (hidden_until, message_id, message.deliveries))
        self._waiting -= 1
        self._delivered += 1
        return {**message.body, "handle": handle}

    def _new_handle(self) -> str:
        # 192 random bits: a repeat is as likely as guessing a key, so none is tracked.
        raw = self._rng.getrandbits(192).to_bytes(24, "big")
        return base64.urlsafe_b64encode(raw).decode("ascii")

    def _compact(self) -> None:
        """Rebuild the heaps when lazily deleted entries dominate them."""
        if len(self._visible) > 2 * self._waiting + 64:
            self._visible = [i for i in self._visible if i in self._messages]
            heapq.heapify(self._visible)
        if len(self._hidden) > 2 * (len(self._messages) - self._waiting) + 64:
            self._hidden = [
                entry
                for entry in self._hidden
                if (m := self._messages.get(entry[1])) is not None
                and not m.visible
                and m.deliveries == entry[2]
            ]
            heapq.heapify(self._hidden)
