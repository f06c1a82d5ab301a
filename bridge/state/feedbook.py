"""The bookkeeping that makes the feed the queue of record (DESIGN.md, Semantics 1 and 3).

A feed event is committed only once the work its state needs is done, or decided to need nothing,
or the event is quarantined. The flow through Redis:

- ``note_delivery``: the poller remembers every delivered event with its *latest* handle (a
  redelivery carries a new one, and a stale handle commits nothing).
- ``claim``: the event waits on its (work, order); only the first claim while no run is pending
  asks for a run, the others ride along, so several events for one order collapse into one run.
- ``start`` / ``finish``: the run takes the waiting events when it starts and makes them
  committable when its work is done. Nothing is committable before that.
- ``take_commit_batch`` / ``committed`` / ``commit_failed``: the committer commits in batches
  with the latest handles and puts a batch back when the commit call fails.

Every piece that can be lost (a pending marker, a run that never finishes, a popped batch) leaves
the event uncommitted, so VTEX delivers it again and it is claimed again: nothing is lost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from redis import Redis

from bridge.domain.models import ORDER_ID_PATTERN

_ORDER_ID = re.compile(ORDER_ID_PATTERN)
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

# A run's events and an order's waiting events outlive any run by far; after a day they are
# dropped, and VTEX redelivers whatever was not committed.
RUN_TTL_SECONDS = 86_400
_CHUNK = 500

# Duplicate copies of one event are separate queue messages, each deleted only by its own latest
# handle: keep the event's few most recent handles and commit them all (a stale one is ignored).
MAX_HANDLES = 4
_NOTE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local handles = {}
if current then
  local entry = cjson.decode(current)
  for _, h in ipairs(entry.handles or {entry.handle}) do
    if h ~= ARGV[2] then handles[#handles + 1] = h end
  end
end
handles[#handles + 1] = ARGV[2]
while #handles > tonumber(ARGV[5]) do table.remove(handles, 1) end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(
  {handle = ARGV[2], handles = handles, order_id = ARGV[3], state = ARGV[4]}))
return #handles
"""

_CLAIM = """
if ARGV[1] ~= '' then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# The book's sequence numbers queued runs and run starts. Like the lock tokens it grows with
# Redis's clock (microseconds) and stays above the last number handed out, so it keeps growing
# after Redis is wiped or rolled back: a number handed out later is always larger.
_NEXT_NUMBER = """
local function next_number(key)
  local now = redis.call('TIME')
  local clock = tonumber(now[1]) * 1000000 + tonumber(now[2])
  local number = math.max(clock, tonumber(redis.call('GET', key) or '0') + 1)
  local text = string.format('%.0f', number)
  redis.call('SET', key, text, 'PX', ARGV[1])
  return text
end
"""

_STAMP = _NEXT_NUMBER + "return next_number(KEYS[1])"

# Also numbers the start, and returns, ahead of the run's events, that number and the start
# number of the latest run of the (work, order) that finished (or '').
_START = (
    _NEXT_NUMBER
    + """
redis.call('DEL', KEYS[1])
redis.call('SUNIONSTORE', KEYS[3], KEYS[3], KEYS[2])
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[1]) end
local out = redis.call('SMEMBERS', KEYS[3])
table.insert(out, 1, redis.call('GET', KEYS[4]) or '')
table.insert(out, 1, next_number(KEYS[5]))
return out
"""
)

# Keep the highest start number of the finished runs of a (work, order). A number above the
# sequence cannot have come from it (Redis's clock stepped back across a wipe): it is dropped,
# or it would make every run queued since look superseded.
_READ = """
local number = tonumber(ARGV[1])
if number > tonumber(redis.call('GET', KEYS[2]) or '0') then return 0 end
if number > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""

_FINISH = """
local ids = redis.call('SMEMBERS', KEYS[1])
for i = 1, #ids, 500 do
  redis.call('SADD', KEYS[2], unpack(ids, i, math.min(i + 499, #ids)))
end
redis.call('DEL', KEYS[1])
return #ids
"""

_TAKE = """
local ids = redis.call('SPOP', KEYS[1], ARGV[1])
local out = {}
for _, id in ipairs(ids) do
  local entry = redis.call('HGET', KEYS[2], id)
  if entry then
    redis.call('HSET', KEYS[3], id, entry)
    out[#out + 1] = id
    out[#out + 1] = entry
  end
end
if #out > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[2]) end
return out
"""

# Forget an event only if it was not redelivered since its batch was taken: the commit then used
# a stale handle, which VTEX answers with 200 but ignores, so the new delivery must stay in flight.
_COMMITTED = """
for _, id in ipairs(ARGV) do
  local taken = redis.call('HGET', KEYS[2], id)
  if (not taken) or taken == redis.call('HGET', KEYS[1], id) then
    redis.call('HDEL', KEYS[1], id)
  end
  redis.call('HDEL', KEYS[2], id)
end
return 0
"""

_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"not a valid {what}")
    return value


def _order(order_id: str) -> str:
    if not isinstance(order_id, str) or not _ORDER_ID.fullmatch(order_id):
        raise ValueError("not an order id")
    return order_id


def _chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for event_id in ids:
        chunk.append(event_id)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass(frozen=True)
class Started:
    """A run's start: the events it carries, its number in the book's sequence, and the start
    number of the latest run of the same (work, order) that finished (None: none within a day)."""

    events: list[str]
    number: int
    last_finished: int | None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FeedBook:
    """In-flight feed events, the runs they wait on, and the commit queue, shared in Redis.

    ``pending_ttl`` bounds how long a pending run blocks new runs for its order: set it to the
    feed's visibility timeout, so a run the broker lost is replaced when VTEX redelivers.
    """

    def __init__(self, redis: Redis, prefix: str, pending_ttl: float = 60.0) -> None:
        if pending_ttl <= 0:
            raise ValueError("pending_ttl must be positive")
        self.redis = redis
        self.prefix = prefix
        self.pending_ttl = pending_ttl
        self._inflight = f"{prefix}feed:inflight"
        self._committable = f"{prefix}feed:committable"
        self._committing = f"{prefix}feed:committing"
        self._poller = f"{prefix}feed:poller"
        self._sequence = f"{prefix}feed:sequence"
        self._note = redis.register_script(_NOTE)
        self._claim = redis.register_script(_CLAIM)
        self._start = redis.register_script(_START)
        self._stamp = redis.register_script(_STAMP)
        self._read = redis.register_script(_READ)
        self._finish = redis.register_script(_FINISH)
        self._take = redis.register_script(_TAKE)
        self._committed = redis.register_script(_COMMITTED)
        self._lease = redis.register_script(_LEASE)
        self._release = redis.register_script(_RELEASE)

    def _pending_key(self, work: str, order_id: str) -> str:
        return f"{self.prefix}feed:pending:{_name(work, 'work')}:{_order(order_id)}"

    def _waiting_key(self, work: str, order_id: str) -> str:
        return f"{self.prefix}feed:waiting:{_name(work, 'work')}:{_order(order_id)}"

    def _read_key(self, work: str, order_id: str) -> str:
        return f"{self.prefix}feed:read:{_name(work, 'work')}:{_order(order_id)}"

    def _run_key(self, run_id: str) -> str:
        return f"{self.prefix}feed:run:{_name(run_id, 'run id')}"

    def note_delivery(self, event_id: str, handle: str, order_id: str, state: str) -> None:
        """Remember a delivered event with its latest handle (and a few before it, for copies)."""
        self._note(keys=[self._inflight], args=[event_id, handle, order_id, state, MAX_HANDLES])

    def claim(self, work: str, order_id: str, event_id: str | None) -> bool:
        """Let the event wait on (work, order); True when a new run must be enqueued.

        False when a run is already pending (enqueued, not yet started): the event rides along
        with it, and that run reads the order after the event. A claim without an event (the
        sweeper's) collapses the same way. A manual trigger must not claim at all: it runs
        whatever is pending, so nothing can swallow it.
        """
        keys = [self._pending_key(work, order_id), self._waiting_key(work, order_id)]
        args: list[str | int] = [event_id or "", _ms(self.pending_ttl), RUN_TTL_SECONDS * 1000]
        return bool(self._claim(keys=keys, args=args))

    def start(self, work: str, order_id: str, run_id: str) -> list[str]:
        """A run of (work, order) starts: it takes the waiting events; returns their ids."""
        return self.begin(work, order_id, run_id).events

    def begin(self, work: str, order_id: str, run_id: str) -> Started:
        """A run of (work, order) starts: it takes the waiting events.

        The pending marker is cleared, so events arriving from now on ask for a fresh run (the
        order may change after this run has read it). Starting again with the same ``run_id``
        (a retry) returns the run's events plus any that arrived since. The start gets a number
        from the book's sequence; the number of the latest finished run comes back with it.
        """
        keys = [
            self._pending_key(work, order_id),
            self._waiting_key(work, order_id),
            self._run_key(run_id),
            self._read_key(work, order_id),
            self._sequence,
        ]
        reply: Any = self._start(keys=keys, args=[RUN_TTL_SECONDS * 1000])
        last = _text(reply[1])
        return Started(
            events=sorted(_text(i) for i in reply[2:]),
            number=int(reply[0]),
            last_finished=int(last) if last else None,
        )

    def stamp(self) -> int:
        """The next number of the book's sequence: a queued run's place among the starts."""
        number: Any = self._stamp(keys=[self._sequence], args=[RUN_TTL_SECONDS * 1000])
        return int(number)

    def finished_reading(self, work: str, order_id: str, number: int) -> None:
        """A run of (work, order) that started as ``number`` read the order and finished."""
        keys = [self._read_key(work, order_id), self._sequence]
        self._read(keys=keys, args=[number, RUN_TTL_SECONDS * 1000])

    def finish(self, run_id: str) -> int:
        """The run's work is done: its events become committable; returns how many."""
        count: Any = self._finish(keys=[self._run_key(run_id), self._committable])
        return int(count)

    def commit_later(self, event_ids: Iterable[str]) -> None:
        """Events that need no work, or were quarantined: committable now."""
        for chunk in _chunks(event_ids):
            self.redis.sadd(self._committable, *chunk)

    def take_commit_batch(self, limit: int = 100) -> list[tuple[str, str]]:
        """Pop up to ``limit`` committable events as (event id, handle) pairs: the latest handle
        of each, and of each duplicate copy the feed delivered (one pair per handle).

        Events no longer in flight (committed already, or Redis was wiped) are skipped.
        """
        if limit < 1:
            return []
        keys = [self._committable, self._inflight, self._committing]
        flat: Any = self._take(keys=keys, args=[limit, RUN_TTL_SECONDS * 1000])
        pairs: list[tuple[str, str]] = []
        for i in range(0, len(flat), 2):
            entry = json.loads(flat[i + 1])
            for handle in entry.get("handles") or [entry["handle"]]:
                pairs.append((flat[i], str(handle)))
        return pairs

    def committed(self, event_ids: Iterable[str]) -> None:
        """VTEX accepted the commit: forget the events (unless redelivered meanwhile)."""
        for chunk in _chunks(event_ids):
            self._committed(keys=[self._inflight, self._committing], args=chunk)

    def commit_failed(self, event_ids: Iterable[str]) -> None:
        """The commit call failed: the events are committable again."""
        for chunk in _chunks(event_ids):
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.sadd(self._committable, *chunk)
                pipe.hdel(self._committing, *chunk)
                pipe.execute()

    def in_flight(self) -> int:
        count: Any = self.redis.hlen(self._inflight)
        return int(count)

    def committable(self) -> int:
        count: Any = self.redis.scard(self._committable)
        return int(count)

    def waiting(self, work: str, order_id: str) -> int:
        count: Any = self.redis.scard(self._waiting_key(work, order_id))
        return int(count)

    def poller_lease(self, owner: str, ttl: float) -> bool:
        """Take or renew the poller lease, so two beats never poll the feed at once."""
        taken: Any = self._lease(keys=[self._poller], args=[owner, _ms(ttl)])
        return bool(taken)

    def release_poller(self, owner: str) -> bool:
        """Give the lease up, only if ``owner`` holds it."""
        released: Any = self._release(keys=[self._poller], args=[owner])
        return bool(released)
