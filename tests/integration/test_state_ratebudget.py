"""The account-wide VTEX rate budget and its 429 pause, on a real Redis."""

from __future__ import annotations

import pytest
import redis

from bridge.state.ratebudget import RedisRateBudget
from tests.sandbox_client import wait_until


def test_a_burst_is_granted_then_the_next_call_must_wait(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given a budget of one call per second with a burst of five
    budget = RedisRateBudget(redis_client, key_prefix, rate=1, burst=5)
    # when six calls ask at once
    grants = [budget.acquire() for _ in range(5)]
    refused = budget.acquire()
    # then five go through and the sixth is told to wait, about a second at most
    assert grants == [0.0] * 5
    assert 0 < refused <= 1.0


def test_the_bucket_refills_at_the_rate(redis_client: redis.Redis, key_prefix: str) -> None:
    # given an empty bucket that refills twenty tokens a second
    budget = RedisRateBudget(redis_client, key_prefix, rate=20, burst=1)
    assert budget.acquire() == 0.0
    assert budget.acquire() > 0
    # then a call is granted again once a token has dripped in
    wait_until(lambda: budget.acquire() == 0.0, timeout=2, what="a refilled token")


def test_two_workers_on_the_same_prefix_share_one_bucket(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given two workers, each with its own budget object on the account's prefix
    worker_a = RedisRateBudget(redis_client, key_prefix, rate=1, burst=4)
    worker_b = RedisRateBudget(redis_client, key_prefix, rate=1, burst=4)
    # when each takes two calls
    taken = [worker_a.acquire(), worker_b.acquire(), worker_a.acquire(), worker_b.acquire()]
    # then the shared burst is spent for both
    assert taken == [0.0] * 4
    assert worker_a.acquire() > 0
    assert worker_b.acquire() > 0


def test_budgets_on_other_prefixes_are_independent(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    spent = RedisRateBudget(redis_client, key_prefix + "a:", rate=1, burst=1)
    other = RedisRateBudget(redis_client, key_prefix + "b:", rate=1, burst=1)
    assert spent.acquire() == 0.0
    assert spent.acquire() > 0
    assert other.acquire() == 0.0


def test_a_pause_stops_every_worker_and_a_shorter_one_does_not_shorten_it(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given two workers with plenty of budget
    worker_a = RedisRateBudget(redis_client, key_prefix, rate=100)
    worker_b = RedisRateBudget(redis_client, key_prefix, rate=100)
    # when one gets a 429 with Retry-After: 2, and later another with Retry-After: 1
    worker_a.pause(2)
    worker_b.pause(1)
    # then neither is granted anything, and both wait about the first pause
    for worker in (worker_a, worker_b):
        assert 1.5 < worker.acquire() <= 2.0
        assert 1.5 < worker.paused_for() <= 2.0


def test_a_longer_pause_extends_the_current_one(redis_client: redis.Redis, key_prefix: str) -> None:
    budget = RedisRateBudget(redis_client, key_prefix)
    budget.pause(1)
    budget.pause(3)
    assert 2.5 < budget.acquire() <= 3.0


def test_grants_resume_when_the_pause_ends_with_the_burst_intact(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given a short pause over a budget with a burst of three
    budget = RedisRateBudget(redis_client, key_prefix, rate=1, burst=3)
    assert budget.paused_for() == 0.0
    budget.pause(0.3)
    assert budget.acquire() > 0
    # when it ends
    wait_until(lambda: budget.acquire() == 0.0, timeout=3, what="the pause to end")
    # then calls go through again; asking during the pause spent nothing
    assert budget.paused_for() == 0.0
    assert [budget.acquire(), budget.acquire()] == [0.0, 0.0]
    assert budget.acquire() > 0


def test_a_budget_needs_a_positive_rate_and_room_for_one_call(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    with pytest.raises(ValueError):
        RedisRateBudget(redis_client, key_prefix, rate=0)
    with pytest.raises(ValueError):
        RedisRateBudget(redis_client, key_prefix, rate=1, burst=0.5)
