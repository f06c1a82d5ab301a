"""Per-order leases with fencing tokens, on a real Redis."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

from bridge.domain.errors import StaleLockError, TransientError
from bridge.state.locks import LockBusy, OrderLease, OrderLocks, lock_key
from tests.sandbox_client import wait_until


def new_order_id() -> str:
    return f"{uuid.uuid4().hex[:12]}-01"


def expire(locks: OrderLocks, order_id: str) -> None:
    """Wait for the order's lease to run out on its own (locks with a short ttl)."""
    wait_until(lambda: locks.current_token(order_id) is None, timeout=5, what="lease expiry")


def test_only_one_of_two_acquirers_gets_the_lease(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given two workers after the same order
    worker_a, worker_b = OrderLocks(redis_client, key_prefix), OrderLocks(redis_client, key_prefix)
    order_id = new_order_id()
    # when both try to take its lease
    first = worker_a.acquire(order_id)
    second = worker_b.acquire(order_id)
    # then the first holds it and the second gets nothing
    assert first is not None
    assert second is None
    assert first.held()
    assert worker_b.current_token(order_id) == first.token


def test_leases_on_different_orders_do_not_exclude_each_other(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    locks = OrderLocks(redis_client, key_prefix)
    assert locks.acquire(new_order_id()) is not None
    assert locks.acquire(new_order_id()) is not None


def test_tokens_strictly_increase_across_holders_after_release_and_expiry(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given an order taken and released, then taken and left to expire
    locks = OrderLocks(redis_client, key_prefix, ttl=0.2)
    order_id = new_order_id()
    tokens = []
    first = locks.acquire(order_id)
    assert first is not None
    tokens.append(first.token)
    assert first.release()
    second = locks.acquire(order_id)
    assert second is not None
    tokens.append(second.token)
    expire(locks, order_id)
    # when a third worker takes it
    third = locks.acquire(order_id)
    assert third is not None
    tokens.append(third.token)
    # then every holder got a larger token than the one before
    assert tokens == sorted(set(tokens))


def test_a_stale_holder_cannot_release_the_new_holders_lease(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given a lease that expired under its holder, and a new holder since
    locks = OrderLocks(redis_client, key_prefix, ttl=0.2)
    order_id = new_order_id()
    stale = locks.acquire(order_id)
    assert stale is not None
    expire(locks, order_id)
    current = OrderLocks(redis_client, key_prefix, ttl=30).acquire(order_id)
    assert current is not None
    # when the stale holder releases (and tries to renew)
    released = stale.release()
    renewed = stale.renew()
    # then nothing of the new holder's lease changed
    assert not released
    assert not renewed
    assert current.held()
    assert locks.current_token(order_id) == current.token
    assert redis_client.pttl(lock_key(key_prefix, order_id)) > 20_000


def test_an_expired_lease_fails_ensure_with_stale_lock_error(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given a lease with a short ttl, checked while fresh
    locks = OrderLocks(redis_client, key_prefix, ttl=0.2)
    order_id = new_order_id()
    lease = locks.acquire(order_id)
    assert lease is not None
    lease.ensure()
    # when its ttl runs out with nobody renewing it
    expire(locks, order_id)
    # then the holder may no longer write
    with pytest.raises(StaleLockError):
        lease.ensure()
    assert not lease.held()


def test_a_lease_used_as_context_manager_is_released_on_exit(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    locks = OrderLocks(redis_client, key_prefix)
    order_id = new_order_id()
    lease = locks.acquire(order_id)
    assert isinstance(lease, OrderLease)
    with lease:
        assert locks.acquire(order_id) is None
    assert locks.current_token(order_id) is None
    with pytest.raises(StaleLockError):
        lease.ensure()


def test_the_keeper_renews_so_a_held_lease_outlives_several_ttls(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given a lease with a 0.3 s ttl held by the keeper
    locks = OrderLocks(redis_client, key_prefix, ttl=0.3)
    order_id = new_order_id()
    lapses: list[float] = []
    with locks.hold(order_id) as lease:
        started = time.monotonic()

        def held_past_three_ttls() -> bool:
            if not lease.held():
                lapses.append(time.monotonic() - started)
            return time.monotonic() - started > 3 * locks.ttl

        # when more than three ttls pass while the block runs
        wait_until(held_past_three_ttls, timeout=5, what="three ttls under the keeper")
        # then the lease was held all along and is still good
        assert lapses == []
        lease.ensure()
        assert locks.acquire(order_id) is None
    # and leaving the block releases it
    assert locks.current_token(order_id) is None


def test_hold_raises_lock_busy_while_another_worker_holds_the_order(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    locks = OrderLocks(redis_client, key_prefix)
    order_id = new_order_id()
    with locks.hold(order_id) as lease:
        with pytest.raises(LockBusy) as busy, locks.hold(order_id):
            pass
        assert isinstance(busy.value, TransientError)
        assert busy.value.retry_after is not None and busy.value.retry_after > 0
        # the refused attempt left the holder's lease alone
        assert lease.held()


def test_the_keeper_marks_a_lease_lost_when_another_worker_took_the_order(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given a kept lease whose lock is taken over (as after a long pause of its holder)
    locks = OrderLocks(redis_client, key_prefix, ttl=0.3)
    order_id = new_order_id()
    key = lock_key(key_prefix, order_id)
    with locks.hold(order_id) as lease:
        redis_client.set(key, str(lease.token + 1000), px=30_000)
        # when the keeper next tries to renew
        wait_until(lambda: lease.lost, timeout=5, what="keeper notices the lost lease")
        # then the lease refuses writes, and the keeper did not extend the new holder's lock
        with pytest.raises(StaleLockError):
            lease.ensure()
    # and leaving the block did not delete the new holder's lock
    assert redis_client.get(key) == str(lease.token + 1000)


def test_exactly_one_of_many_racing_threads_wins_the_order(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given eight workers starting at the same moment
    order_id = new_order_id()
    start = threading.Barrier(8)
    winners: list[OrderLease] = []
    guard = threading.Lock()

    def race() -> None:
        locks = OrderLocks(redis_client, key_prefix)
        start.wait()
        lease = locks.acquire(order_id)
        if lease is not None:
            with guard:
                winners.append(lease)

    threads = [threading.Thread(target=race) for _ in range(8)]
    # when they all try to take the same order
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    # then exactly one holds it
    assert len(winners) == 1
    assert OrderLocks(redis_client, key_prefix).current_token(order_id) == winners[0].token


def test_an_order_id_that_is_not_one_never_becomes_a_key(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    locks = OrderLocks(redis_client, key_prefix)
    for bad in ["", "1234-01:*", "../x-01", "a b-01", "x" * 50 + "-01"]:
        with pytest.raises(ValueError):
            locks.acquire(bad)
    assert list(redis_client.scan_iter(match=key_prefix + "*")) == []
