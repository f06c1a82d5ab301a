"""The effects ledger: per order, which effects are done, recorded under the order's lease.

It is the fast path of the at-most-once guard (the systems of record are checked too, so a wiped
ledger does no harm). A record is fenced: one Lua script checks that the order's lock still holds
the writer's token and only then writes, so a worker whose lease expired cannot record.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from bridge.domain.errors import StaleLockError
from bridge.state.locks import checked_order_id, lock_key

RETENTION_SECONDS = 30 * 86400

# The first record of an effect is kept (HSETNX): it says when, and under which token, the effect
# was done; a later record of the same key only means a run found it already done. The time is
# the Redis server's, the one clock all workers share.
_RECORD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local now = redis.call('TIME')
local entry = '{"token":' .. ARGV[1] .. ',"at":' .. now[1] .. '.' ..
    string.format('%06d', tonumber(now[2])) .. '}'
redis.call('HSETNX', KEYS[2], ARGV[2], entry)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

MAX_KEY_LENGTH = 200


class Ledger:
    """Effects done per order (implements :class:`bridge.domain.ports.LedgerPort`).

    Each order's hash expires ``retention`` seconds after its last record.
    """

    def __init__(
        self, redis: redis.Redis, prefix: str, retention: float = RETENTION_SECONDS
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retention_ms = max(1, round(retention * 1000))
        self._record = redis.register_script(_RECORD)

    def _key(self, order_id: str) -> str:
        return f"{self.prefix}ledger:{checked_order_id(order_id)}"

    def done(self, order_id: str) -> set[str]:
        """The ledger keys of the effects recorded for the order."""
        keys: Any = self.redis.hkeys(self._key(order_id))
        return set(keys)

    def record(self, order_id: str, key: str, token: int) -> None:
        """Record an effect; StaleLockError unless ``token`` still holds the order's lock."""
        if not key or len(key) > MAX_KEY_LENGTH:
            raise ValueError("ledger key must be 1 to 200 characters")
        token = int(token)  # only an integer may be spliced into the entry
        written = self._record(
            keys=[lock_key(self.prefix, order_id), self._key(order_id)],
            args=[token, key, self.retention_ms],
        )
        if not written:
            raise StaleLockError(
                f"order {order_id}: token {token} no longer holds the lock; {key} not recorded"
            )

    def entries(self, order_id: str) -> dict[str, dict[str, Any]]:
        """For operators: each recorded effect with its ``token`` and ``at`` (Unix seconds)."""
        raw: Any = self.redis.hgetall(self._key(order_id))
        return {key: json.loads(value) for key, value in raw.items()}
