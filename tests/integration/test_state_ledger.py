"""The fenced effects ledger and the redelivery counter, on a real Redis."""

from __future__ import annotations

import uuid

import pytest
import redis

from bridge.domain.errors import StaleLockError
from bridge.state.ledger import Ledger
from bridge.state.locks import OrderLocks
from bridge.state.redelivery import RedeliveryCounter
from tests.sandbox_client import wait_until


def new_order_id() -> str:
    return f"{uuid.uuid4().hex[:12]}-01"


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1_000_000


def test_an_effect_recorded_under_the_current_lease_shows_as_done(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given a worker holding the order's lease
    ledger = Ledger(redis_client, key_prefix)
    order_id = new_order_id()
    lease = OrderLocks(redis_client, key_prefix).acquire(order_id)
    assert lease is not None
    assert ledger.done(order_id) == set()
    # when it records two effects with its token
    ledger.record(order_id, "erp.import", lease.token)
    ledger.record(order_id, "vtex.start_handling", lease.token)
    # then both are done, each with the token and the Redis time of the record
    assert ledger.done(order_id) == {"erp.import", "vtex.start_handling"}
    entry = ledger.entries(order_id)["erp.import"]
    assert entry["token"] == lease.token
    assert abs(entry["at"] - redis_now(redis_client)) < 5


def test_a_worker_whose_lease_was_taken_over_cannot_record(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given a worker whose lease expired while it was paused, and a new holder since
    ledger = Ledger(redis_client, key_prefix)
    order_id = new_order_id()
    short = OrderLocks(redis_client, key_prefix, ttl=0.2)
    stale = short.acquire(order_id)
    assert stale is not None
    wait_until(lambda: short.current_token(order_id) is None, timeout=5, what="lease expiry")
    current = OrderLocks(redis_client, key_prefix).acquire(order_id)
    assert current is not None
    # when the stale worker records its effect
    with pytest.raises(StaleLockError):
        ledger.record(order_id, "erp.import", stale.token)
    # then the ledger is unchanged, and the current holder still records
    assert ledger.done(order_id) == set()
    ledger.record(order_id, "erp.import", current.token)
    assert ledger.entries(order_id)["erp.import"]["token"] == current.token


def test_nobody_records_for_an_order_whose_lock_is_free(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    ledger = Ledger(redis_client, key_prefix)
    order_id = new_order_id()
    lease = OrderLocks(redis_client, key_prefix).acquire(order_id)
    assert lease is not None
    lease.release()
    with pytest.raises(StaleLockError):
        ledger.record(order_id, "erp.import", lease.token)
    assert ledger.done(order_id) == set()


def test_the_first_record_of_an_effect_is_kept(redis_client: redis.Redis, key_prefix: str) -> None:
    # given an effect recorded by one holder
    locks = OrderLocks(redis_client, key_prefix)
    ledger = Ledger(redis_client, key_prefix)
    order_id = new_order_id()
    with locks.hold(order_id) as first:
        ledger.record(order_id, "erp.hold", first.token)
    # when a later holder finds it done and records it again
    with locks.hold(order_id) as second:
        ledger.record(order_id, "erp.hold", second.token)
    # then the entry still says who did it
    assert ledger.entries(order_id)["erp.hold"]["token"] == first.token


def test_a_wiped_redis_leaves_an_empty_ledger(redis_client: redis.Redis, key_prefix: str) -> None:
    # given effects recorded for an order
    ledger = Ledger(redis_client, key_prefix)
    order_id = new_order_id()
    lease = OrderLocks(redis_client, key_prefix).acquire(order_id)
    assert lease is not None
    ledger.record(order_id, "erp.import", lease.token)
    assert ledger.done(order_id) == {"erp.import"}
    # when Redis loses the keys
    redis_client.delete(*redis_client.scan_iter(match=key_prefix + "*"))
    # then nothing shows as done (the systems of record are the guard then)
    assert ledger.done(order_id) == set()
    assert ledger.entries(order_id) == {}


def test_ledger_hashes_expire_after_the_retention_refreshed_on_write(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    ledger = Ledger(redis_client, key_prefix, retention=100)
    order_id = new_order_id()
    lease = OrderLocks(redis_client, key_prefix).acquire(order_id)
    assert lease is not None
    ledger.record(order_id, "erp.import", lease.token)
    key = key_prefix + f"ledger:{order_id}"
    redis_client.pexpire(key, 5_000)
    ledger.record(order_id, "vtex.start_handling", lease.token)
    assert 90_000 < redis_client.pttl(key) <= 100_000


def test_an_order_id_that_is_not_one_never_reaches_the_ledger(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    ledger = Ledger(redis_client, key_prefix)
    with pytest.raises(ValueError):
        ledger.done("*")
    with pytest.raises(ValueError):
        ledger.record("x:1-01", "erp.import", 1)


def test_the_redelivery_counter_counts_clears_and_expires(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given a message whose worker died twice
    counter = RedeliveryCounter(redis_client, key_prefix, ttl=60)
    delivery_id = str(uuid.uuid4())
    assert counter.count(delivery_id) == 0
    assert counter.bump(delivery_id) == 1
    assert counter.bump(delivery_id) == 2
    # then its count is two, other messages are untouched, and the count expires in time
    assert counter.count(delivery_id) == 2
    assert counter.count(str(uuid.uuid4())) == 0
    assert 0 < redis_client.pttl(key_prefix + f"redelivery:{delivery_id}") <= 60_000
    # when it finishes, it is forgotten
    counter.clear(delivery_id)
    assert counter.count(delivery_id) == 0
    with pytest.raises(ValueError):
        counter.bump("no spaces or * please")


def test_the_redelivery_counter_keeps_only_the_deliveries_that_never_settled(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    counter = RedeliveryCounter(redis_client, key_prefix)
    counter.bump("msg-1")  # a delivery whose worker died: never settled
    counter.bump("msg-1")  # a delivery that ended normally (a retry, say)
    counter.settle("msg-1")
    assert counter.count("msg-1") == 1
    counter.bump("msg-1")
    counter.settle("msg-1")
    assert counter.count("msg-1") == 1
    counter.settle("msg-1")
    assert counter.count("msg-1") == 0
