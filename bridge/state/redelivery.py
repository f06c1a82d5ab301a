"""How many times a message's worker died while running it.

Celery redelivers a message whose worker was lost (late acknowledgement with
``task_reject_on_worker_lost``). A message that kills its worker every time would loop forever, so
each delivery bumps a counter and the task quarantines the message after N losses.
"""

from __future__ import annotations

import re
from typing import Any

import redis

# Celery task ids and delivery tags: uuids and the like. Nothing else becomes part of a key.
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

DEFAULT_TTL_SECONDS = 86400


class RedeliveryCounter:
    """Per-message delivery counts that expire ``ttl`` seconds after the last bump."""

    def __init__(self, redis: redis.Redis, prefix: str, ttl: float = DEFAULT_TTL_SECONDS) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_ms = max(1, round(ttl * 1000))

    def _key(self, delivery_id: str) -> str:
        if not isinstance(delivery_id, str) or not _DELIVERY_ID.fullmatch(delivery_id):
            raise ValueError("not a delivery id")
        return f"{self.prefix}redelivery:{delivery_id}"

    def bump(self, delivery_id: str) -> int:
        """Count one more delivery of the message; returns the count so far."""
        key = self._key(delivery_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.incr(key)
        pipe.pexpire(key, self.ttl_ms)
        count, _ = pipe.execute()
        return int(count)

    def settle(self, delivery_id: str) -> None:
        """Undo this delivery's bump: it ended normally (done, retried, quarantined). What stays
        counted are the deliveries whose worker died under them."""
        key = self._key(delivery_id)
        left: Any = self.redis.decr(key)
        if int(left) <= 0:
            self.redis.delete(key)

    def clear(self, delivery_id: str) -> None:
        """Forget the message: it finished (or went to quarantine)."""
        self.redis.delete(self._key(delivery_id))

    def count(self, delivery_id: str) -> int:
        value: Any = self.redis.get(self._key(delivery_id))
        return 0 if value is None else int(value)
