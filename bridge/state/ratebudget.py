"""One VTEX rate budget for the whole account, shared by every worker through Redis.

A token bucket kept in Redis and updated by one Lua script on the Redis server's clock (TIME), so
workers on different machines draw from the same bucket however their clocks drift. VTEX
publishes 6000 get-order calls per minute per account: rate 100/s, burst 100 by default.

After a 429, :meth:`RedisRateBudget.pause` stops every worker until ``Retry-After`` has passed:
while the pause key lives, ``acquire`` grants nothing and answers with the pause's remaining time.
A pause is only ever extended, never shortened, by a later, shorter ``Retry-After``.
"""

from __future__ import annotations

import math
from typing import Any

import redis

DEFAULT_RATE = 100.0  # calls per second: VTEX's 6000/min for get-order

# KEYS[1] bucket hash {tokens, ts}, KEYS[2] pause key; ARGV[1] rate/s, ARGV[2] burst,
# ARGV[3] bucket expiry in ms (an idle bucket refills completely by then anyway).
# Returns the microseconds to wait: 0 when a call is granted.
# Numbers are formatted explicitly: Redis would turn a Lua number into a string with 14 digits
# only, too few for a timestamp in microseconds.
_ACQUIRE = """
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return paused * 1000 end
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate * 1000000)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
  'ts', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return wait
"""

# KEYS[1] pause key; ARGV[1] pause in ms. Only a longer pause replaces the current one (a
# pause key without expiry, which acquire ignores, is replaced too).
_PAUSE = """
local remaining = redis.call('PTTL', KEYS[1])
if remaining >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 1
"""


class RedisRateBudget:
    """The account's VTEX rate budget (implements :class:`bridge.domain.ports.RateBudget`)."""

    def __init__(
        self,
        redis: redis.Redis,
        prefix: str,
        rate: float = DEFAULT_RATE,
        burst: float | None = None,
    ) -> None:
        burst = rate if burst is None else burst
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.redis = redis
        self.rate = rate
        self.burst = burst
        self._bucket_key = f"{prefix}vtex:ratebudget"
        self._pause_key = f"{prefix}vtex:pause"
        self._bucket_ttl_ms = math.ceil(burst / rate * 1000) + 1000
        self._acquire = redis.register_script(_ACQUIRE)
        self._pause = redis.register_script(_PAUSE)

    def acquire(self) -> float:
        """Take one call: 0.0 when granted, else seconds until asking again may succeed
        (the remaining pause while one is in force; nothing is taken then)."""
        wait_us: Any = self._acquire(
            keys=[self._bucket_key, self._pause_key],
            args=[repr(self.rate), repr(self.burst), self._bucket_ttl_ms],
        )
        return int(wait_us) / 1_000_000

    def pause(self, seconds: float) -> None:
        """No worker is granted a call for ``seconds``, unless a longer pause is already on."""
        if seconds <= 0:
            return
        self._pause(keys=[self._pause_key], args=[math.ceil(seconds * 1000)])

    def paused_for(self) -> float:
        """Seconds left of the current pause; 0.0 when none is in force."""
        remaining: Any = self.redis.pttl(self._pause_key)
        return max(0, int(remaining)) / 1000
