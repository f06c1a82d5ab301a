"""Each order's history of decisions and effects, for operators (a :class:`HistoryPort`).

One Redis list per order, newest entry first, trimmed to the last ``keep`` entries and expiring
``ttl`` after the order's last entry. Entries are stamped with Redis TIME, so every worker's
entries share one clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from redis import Redis

from bridge.domain.models import ORDER_ID_PATTERN

_ORDER_ID = re.compile(ORDER_ID_PATTERN)

THIRTY_DAYS = 30 * 86_400.0


class History:
    """Order histories in Redis (implements :class:`bridge.domain.ports.HistoryPort`)."""

    def __init__(
        self, redis: Redis, prefix: str, keep: int = 200, ttl: float = THIRTY_DAYS
    ) -> None:
        if keep < 1 or ttl <= 0:
            raise ValueError("keep and ttl must be positive")
        self.redis = redis
        self.prefix = prefix
        self.keep = keep
        self.ttl_ms = max(1, round(ttl * 1000))

    def _key(self, order_id: str) -> str:
        if not isinstance(order_id, str) or not _ORDER_ID.fullmatch(order_id):
            raise ValueError("not an order id")
        return f"{self.prefix}history:{order_id}"

    def add(self, order_id: str, entry: Mapping[str, Any]) -> None:
        """Append an entry, stamped ``at`` (Redis time, seconds since the epoch)."""
        key = self._key(order_id)
        seconds, micros = self.redis.time()
        line = json.dumps({**entry, "at": seconds + micros / 1_000_000}, default=str)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, line)
            pipe.ltrim(key, 0, self.keep - 1)
            pipe.pexpire(key, self.ttl_ms)
            pipe.execute()

    def entries(self, order_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The order's latest ``limit`` entries, newest first."""
        if limit < 1:
            return []
        lines: Any = self.redis.lrange(self._key(order_id), 0, limit - 1)
        return [json.loads(line) for line in lines]
