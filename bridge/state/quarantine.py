"""The quarantine: what cannot be processed, kept with its payload and reason for replay.

A malformed feed item, a hook body that fails validation, work that keeps failing: each is put
here (and its feed event committed), so bad input never stops the line and nothing is lost
silently. Items stay until an operator replays or removes them.

Layout: one hash of items (id -> JSON) and an index sorted by Redis TIME in microseconds. Ids
start with a zero-padded sequence number, so items put in the same microsecond still list in
the order they were put.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis

MAX_REASON = 1000
MAX_KIND = 64
MAX_SOURCE = 200
TRUNCATED_MARKER = "...[truncated]"

_PUT = """
local t = redis.call('TIME')
local micros = tonumber(t[1]) * 1000000 + tonumber(t[2])
local seq = redis.call('INCR', KEYS[3])
local id = string.format('%012d', seq) .. '-' .. ARGV[2]
redis.call('HSET', KEYS[1], id, ARGV[1])
redis.call('ZADD', KEYS[2], micros, id)
return {id, tostring(micros)}
"""


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(TRUNCATED_MARKER)] + TRUNCATED_MARKER


@dataclass(frozen=True)
class QuarantineItem:
    """One quarantined item. ``payload`` is JSON text (or the raw text put), cut to the
    quarantine's ``max_payload`` when ``truncated``; ``payload_size`` is the original size in
    bytes. ``at`` is Redis time, in seconds since the epoch."""

    id: str
    kind: str
    payload: str
    reason: str
    at: float
    order_id: str | None
    source: str
    payload_size: int
    truncated: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def payload_data(self) -> Any:
        """The payload decoded from JSON for replay; None when truncated or not JSON."""
        if self.truncated:
            return None
        try:
            return json.loads(self.payload)
        except ValueError:
            return None


class Quarantine:
    """Quarantined items in Redis, newest first."""

    def __init__(self, redis: Redis, prefix: str, max_payload: int = 262_144) -> None:
        if max_payload < len(TRUNCATED_MARKER):
            raise ValueError("max_payload is too small")
        self.redis = redis
        self.prefix = prefix
        self.max_payload = max_payload
        self._items = f"{prefix}quarantine:items"
        self._index = f"{prefix}quarantine:index"
        self._seq = f"{prefix}quarantine:seq"
        self._put = redis.register_script(_PUT)

    def put(
        self,
        kind: str,
        payload: Mapping[str, Any] | str,
        reason: str,
        *,
        order_id: str | None = None,
        source: str = "",
    ) -> str:
        """Quarantine ``payload``; returns the item's id.

        ``reason`` must hold no secret (the caller's duty); it is capped at 1000 characters. A
        payload larger than ``max_payload`` bytes is cut, marked, and its original size kept.
        """
        text = payload if isinstance(payload, str) else json.dumps(payload, default=str)
        raw = text.encode("utf-8", errors="replace")
        truncated = len(raw) > self.max_payload
        if truncated:
            room = self.max_payload - len(TRUNCATED_MARKER)
            text = raw[:room].decode("utf-8", errors="ignore") + TRUNCATED_MARKER
        record = {
            "kind": _cap(kind, MAX_KIND),
            "payload": text,
            "reason": _cap(reason, MAX_REASON),
            "order_id": order_id if order_id is None else _cap(order_id, MAX_KIND),
            "source": _cap(source, MAX_SOURCE),
            "payload_size": len(raw),
            "truncated": truncated,
        }
        keys = [self._items, self._index, self._seq]
        result: Any = self._put(keys=keys, args=[json.dumps(record), secrets.token_hex(4)])
        return str(result[0])

    def get(self, item_id: str) -> QuarantineItem | None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self._items, item_id)
            pipe.zscore(self._index, item_id)
            raw, score = pipe.execute()
        return None if raw is None else _item(item_id, raw, score)

    def list(self, limit: int = 50) -> list[QuarantineItem]:
        """The newest ``limit`` items, newest first."""
        if limit < 1:
            return []
        pairs: Any = self.redis.zrevrange(self._index, 0, limit - 1, withscores=True)
        if not pairs:
            return []
        raws: Any = self.redis.hmget(self._items, [item_id for item_id, _ in pairs])
        return [
            _item(item_id, raw, score)
            for (item_id, score), raw in zip(pairs, raws, strict=True)
            if raw is not None
        ]

    def remove(self, item_id: str) -> bool:
        """Drop an item (after replay, or by an operator); False when there was none."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._items, item_id)
            pipe.zrem(self._index, item_id)
            removed, _ = pipe.execute()
        return bool(removed)

    def count(self) -> int:
        count: Any = self.redis.zcard(self._index)
        return int(count)


def _item(item_id: str, raw: str, score: float | None) -> QuarantineItem:
    record = json.loads(raw)
    return QuarantineItem(
        id=item_id,
        kind=record["kind"],
        payload=record["payload"],
        reason=record["reason"],
        at=(score or 0.0) / 1_000_000,
        order_id=record["order_id"],
        source=record["source"],
        payload_size=int(record["payload_size"]),
        truncated=bool(record["truncated"]),
    )
