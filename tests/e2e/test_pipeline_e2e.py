"""End to end: the real stack (Redis, the sandbox, Celery worker processes, beat) plays a
scenario of 300 orders with duplicate and shuffled delivery, cancellations inside and after the
window, split orders, and 429s and 500s on VTEX calls: no violation, every order at the end its
events call for, every feed event committed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workers.demo_cmd import summary
from workers.stack import Stack, StackConfig

ORDERS = 300
# A 429 stops every worker for its Retry-After (1 s here), so 5% of calls answered 429 caps the
# bridge at about 20 VTEX calls a second. The store clock runs 40x (a one-hour deadline in
# ready-for-handling is 90 s here) so the deadlines stay meaningful under that cap.
TIME_SCALE = 40.0
DEADLINE = 480.0


@pytest.fixture
def stack() -> Iterator[Stack]:
    # Its own embedded Redis: the broker's queues are not shared with any other test.
    config = StackConfig(
        orders=ORDERS,
        seed=20,
        workers=2,
        concurrency=4,
        time_scale=TIME_SCALE,
        duplicates=0.20,
        split=0.3,
        faults="vtex:429=5%,500=2%,retry-after=1",
        flower=False,
    )
    with Stack(config) as running:
        yield running


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE + 120)
def test_three_hundred_orders_under_faults_settle_with_no_violation(stack: Stack) -> None:
    report = stack.wait_settled(DEADLINE)

    assert report["violations"] == [], summary(report)
    assert report["settled"], summary(report)
    assert report["orders"]["created"] == ORDERS
    assert set(report["orders"]["by_status"]) <= {"canceled", "invoiced"}
    events = report["events"]
    assert events["waiting"] == 0 and events["in_flight"] == 0
    assert events["duplicated"] > 0
    assert report["faults"].get("429", 0) > 0 and report["faults"].get("500", 0) > 0
    assert not stack.dead(), f"processes died: {stack.dead()}"
