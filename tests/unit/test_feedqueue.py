"""Behaviour of the SQS-standard-like queue behind the sandbox Orders Feed."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.feedqueue import FeedQueue, QueueStats


class ManualClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_queue(clock: ManualClock, seed: int = 7, **overrides: Any) -> FeedQueue:
    options: dict[str, Any] = {
        "visibility_timeout": 30.0,
        "retention": 345_600.0,
        "duplicate_share": 0.0,
        "partial_share": 0.0,
        "shuffle_window": 20,
    }
    options.update(overrides)
    return FeedQueue(clock=clock, rng=random.Random(seed), **options)


def event(number: int) -> dict[str, str]:
    return {"eventId": f"ev-{number}", "orderId": f"order-{number}", "state": "invoiced"}


def event_ids(items: list[dict[str, str]]) -> list[str]:
    return [item["eventId"] for item in items]


def test_an_uncommitted_item_reappears_with_a_new_handle_after_the_visibility_timeout() -> None:
    # given an item delivered once
    clock = ManualClock()
    queue = make_queue(clock)
    queue.enqueue(event(1))
    [first] = queue.receive()
    # when the visibility timeout has not passed yet / then it stays hidden
    clock.advance(29.9)
    assert queue.receive() == []
    # when the timeout passes
    clock.advance(0.2)
    [second] = queue.receive()
    # then the same body comes back with a different handle
    assert second["eventId"] == "ev-1"
    assert second["handle"] != first["handle"]
    assert {k: v for k, v in second.items() if k != "handle"} == event(1)


def test_a_stale_handle_deletes_nothing_and_leaves_the_item_in_the_queue() -> None:
    # given an item redelivered after its visibility expired
    clock = ManualClock()
    queue = make_queue(clock)
    queue.enqueue(event(1))
    [first] = queue.receive()
    clock.advance(31)
    [second] = queue.receive()
    # when committing the first (stale) handle
    deleted = queue.commit([first["handle"]])
    # then nothing is deleted and the item is still in flight
    assert deleted == 0
    assert queue.stats().in_flight == 1
    assert event_ids(queue.pending_events()) == ["ev-1"]
    clock.advance(31)
    assert event_ids(queue.receive()) == ["ev-1"]
    assert second["handle"] != first["handle"]


def test_the_latest_handle_deletes_the_item_for_good() -> None:
    # given an item redelivered once
    clock = ManualClock()
    queue = make_queue(clock)
    queue.enqueue(event(1))
    queue.receive()
    clock.advance(31)
    [latest] = queue.receive()
    # when committing the latest handle twice in one call
    deleted = queue.commit([latest["handle"], latest["handle"]])
    # then it is deleted once and never comes back
    assert deleted == 1
    clock.advance(1_000)
    assert queue.receive() == []
    assert queue.pending_events() == []
    assert queue.commit([latest["handle"]]) == 0


def test_a_handle_still_deletes_after_its_visibility_expired_if_not_redelivered() -> None:
    # given a delivered item whose visibility timeout has passed
    clock = ManualClock()
    queue = make_queue(clock)
    queue.enqueue(event(1))
    [item] = queue.receive()
    clock.advance(45)
    assert queue.stats().waiting == 1
    # when committing its handle before another receive
    deleted = queue.commit([item["handle"]])
    # then the item is gone
    assert deleted == 1
    assert queue.receive() == []
    assert queue.stats().waiting == 0


def test_an_unknown_handle_is_ignored() -> None:
    # given a queue with one delivered item
    clock = ManualClock()
    queue = make_queue(clock)
    queue.enqueue(event(1))
    queue.receive()
    # when committing handles the queue never issued
    deleted = queue.commit(["not-a-handle", ""])
    # then nothing changes
    assert deleted == 0
    assert queue.stats().in_flight == 1


def test_retention_drops_old_items_waiting_or_in_flight_and_counts_them() -> None:
    # given one item in flight, one waiting, both old, and one fresh item
    clock = ManualClock()
    queue = make_queue(clock, retention=100.0, visibility_timeout=1_000.0)
    queue.enqueue(event(1))
    queue.enqueue(event(2))
    [in_flight] = queue.receive(maxlot=1)
    clock.advance(60)
    queue.enqueue(event(3))
    # when the retention period passes for the old ones
    clock.advance(41)
    delivered = queue.receive()
    # then only the fresh item is delivered and the old ones count as expired
    assert event_ids(delivered) == ["ev-3"]
    stats = queue.stats()
    assert stats.expired == 2
    assert stats.in_flight == 1
    assert stats.oldest_age == pytest.approx(41.0)
    assert queue.commit([in_flight["handle"]]) == 0


def test_duplicate_share_one_enqueues_two_copies_with_the_same_event_id() -> None:
    # given a queue that always duplicates
    clock = ManualClock()
    queue = make_queue(clock, duplicate_share=1.0)
    # when enqueueing one event
    copies = queue.enqueue(event(1))
    # then two independent messages with the same eventId are delivered
    assert copies == 2
    items = queue.receive()
    assert event_ids(items) == ["ev-1", "ev-1"]
    assert items[0]["handle"] != items[1]["handle"]
    assert queue.commit([items[0]["handle"]]) == 1
    assert queue.stats().in_flight == 1


def test_duplicate_share_zero_enqueues_a_single_copy() -> None:
    clock = ManualClock()
    queue = make_queue(clock, duplicate_share=0.0)
    assert [queue.enqueue(event(n)) for n in range(50)] == [1] * 50
    assert queue.stats().enqueued == 50


def test_partial_share_one_returns_fewer_than_available_when_items_wait() -> None:
    # given a queue that always answers short with 15 items waiting
    clock = ManualClock()
    queue = make_queue(clock, partial_share=1.0)
    for n in range(15):
        queue.enqueue(event(n))
    # when receiving repeatedly
    for _ in range(20):
        waiting = queue.stats().waiting
        if waiting == 0:
            break
        # then each call returns strictly fewer than it could
        assert len(queue.receive(maxlot=10)) < min(10, waiting)
    # and an empty queue answers nothing
    clock.advance(10_000_000)
    assert queue.receive() == []


def test_partial_share_zero_returns_min_of_maxlot_and_waiting() -> None:
    clock = ManualClock()
    queue = make_queue(clock, partial_share=0.0)
    for n in range(13):
        queue.enqueue(event(n))
    assert len(queue.receive(maxlot=10)) == 10
    assert len(queue.receive(maxlot=10)) == 3
    assert queue.receive(maxlot=10) == []
    clock.advance(31)
    assert len(queue.receive(maxlot=4)) == 4


@pytest.mark.parametrize("maxlot", [0, 11, -1])
def test_maxlot_outside_one_to_ten_is_rejected(maxlot: int) -> None:
    queue = make_queue(ManualClock())
    with pytest.raises(ValueError):
        queue.receive(maxlot=maxlot)


def test_delivery_order_is_shuffled_but_every_item_is_delivered() -> None:
    # given ten items enqueued in order, over several seeds
    shuffled_once = False
    for seed in range(5):
        clock = ManualClock()
        queue = make_queue(clock, seed=seed)
        for n in range(10):
            queue.enqueue(event(n))
        # when draining in small lots
        delivered: list[str] = []
        while batch := queue.receive(maxlot=3):
            delivered += event_ids(batch)
        # then all are delivered exactly once
        assert sorted(delivered) == sorted(f"ev-{n}" for n in range(10))
        shuffled_once |= delivered != [f"ev-{n}" for n in range(10)]
    # and at least one run was out of enqueue order
    assert shuffled_once


def test_old_items_are_not_starved_by_a_steady_stream_of_new_ones() -> None:
    # given a small shuffle window and a stream of new items
    clock = ManualClock()
    queue = make_queue(clock, shuffle_window=3)
    queue.enqueue(event(0))
    seen: set[str] = set()
    for n in range(1, 200):
        queue.enqueue(event(n))
        seen.update(event_ids(queue.receive(maxlot=1)))
    # then the first item was delivered long before the stream ended
    assert "ev-0" in seen


def test_the_same_seed_gives_the_same_deliveries_and_handles() -> None:
    def run(seed: int) -> list[list[dict[str, str]]]:
        clock = ManualClock()
        queue = make_queue(clock, seed=seed, duplicate_share=0.3, partial_share=0.3)
        for n in range(30):
            queue.enqueue(event(n))
        batches = []
        for _ in range(12):
            batch = queue.receive()
            batches.append(batch)
            queue.commit([item["handle"] for item in batch[::2]])
            clock.advance(20)
        return batches

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_handles_never_repeat() -> None:
    clock = ManualClock()
    queue = make_queue(clock, visibility_timeout=0.0)
    queue.enqueue(event(1))
    handles = [queue.receive()[0]["handle"] for _ in range(500)]
    assert len(set(handles)) == 500


def test_stats_count_enqueued_delivered_committed_and_ages() -> None:
    # given a duplicating queue with some activity
    clock = ManualClock()
    queue = make_queue(clock, duplicate_share=1.0)
    assert queue.stats() == QueueStats(0, 0, 0.0, 0, 0, 0, 0)
    queue.enqueue(event(1))
    clock.advance(5)
    queue.enqueue(event(2))
    clock.advance(5)
    first = queue.receive(maxlot=3)
    clock.advance(31)
    second = queue.receive(maxlot=10)
    # when committing one current handle and one stale handle
    queue.commit([second[0]["handle"], first[0]["handle"]])
    # then the counters reflect it
    assert queue.stats() == QueueStats(
        waiting=0,
        in_flight=3,
        oldest_age=41.0,
        enqueued=4,
        delivered=7,
        committed=1,
        expired=0,
    )


def test_clear_empties_the_queue_and_resets_the_counters() -> None:
    clock = ManualClock()
    queue = make_queue(clock)
    queue.enqueue(event(1))
    [item] = queue.receive()
    queue.clear()
    assert queue.stats() == QueueStats(0, 0, 0.0, 0, 0, 0, 0)
    assert queue.commit([item["handle"]]) == 0
    assert queue.pending_events() == []


def test_configure_applies_new_timeouts_to_later_deliveries() -> None:
    clock = ManualClock()
    queue = make_queue(clock)
    queue.enqueue(event(1))
    queue.configure(visibility_timeout=5.0, retention=1_000.0)
    queue.receive()
    clock.advance(6)
    assert event_ids(queue.receive()) == ["ev-1"]


def test_pending_events_lists_bodies_without_handles_in_enqueue_order() -> None:
    clock = ManualClock()
    queue = make_queue(clock)
    for n in range(3):
        queue.enqueue(event(n))
    queue.receive(maxlot=1)
    assert queue.pending_events() == [event(0), event(1), event(2)]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), st.integers(0, 0)),
        st.tuples(st.just("receive"), st.integers(1, 10)),
        st.tuples(st.just("commit"), st.integers(0, 100)),
        st.tuples(st.just("advance"), st.integers(0, 60)),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(
    ops=operations,
    seed=st.integers(0, 2**32),
    retention=st.sampled_from([50.0, 1e9]),
    duplicate_share=st.sampled_from([0.0, 0.5, 1.0]),
    partial_share=st.sampled_from([0.0, 0.3]),
)
def test_no_message_is_lost_and_no_committed_message_is_delivered_again(
    ops: list[tuple[str, int]],
    seed: int,
    retention: float,
    duplicate_share: float,
    partial_share: float,
) -> None:
    clock = ManualClock()
    queue = make_queue(
        clock,
        seed=seed,
        retention=retention,
        duplicate_share=duplicate_share,
        partial_share=partial_share,
        shuffle_window=4,
    )
    copies: Counter[str] = Counter()
    committed: Counter[str] = Counter()
    seen_handles: set[str] = set()
    outstanding: list[tuple[str, str]] = []  # (handle, eventId) delivered, not yet committed

    def receive(maxlot: int) -> None:
        for item in queue.receive(maxlot):
            assert item["handle"] not in seen_handles
            seen_handles.add(item["handle"])
            assert committed[item["eventId"]] < copies[item["eventId"]]
            outstanding.append((item["handle"], item["eventId"]))

    def commit(handle: str, event_id: str) -> None:
        deleted = queue.commit([handle])
        committed[event_id] += deleted
        assert committed[event_id] <= copies[event_id]
        if deleted:
            assert queue.commit([handle]) == 0

    for number, (operation, argument) in enumerate(ops):
        if operation == "enqueue":
            copies[f"ev-{number}"] += queue.enqueue(event(number))
        elif operation == "receive":
            receive(argument)
        elif operation == "commit" and outstanding:
            commit(*outstanding.pop(argument % len(outstanding)))
        elif operation == "advance":
            clock.advance(argument)
        stats = queue.stats()
        pending = Counter(event_ids(queue.pending_events()))
        assert stats.waiting + stats.in_flight == sum(pending.values())
        assert sum(copies.values()) == stats.committed + stats.expired + sum(pending.values())
        for event_id, count in pending.items():
            assert count + committed[event_id] <= copies[event_id]
        if stats.expired == 0:
            assert pending + committed == copies

    # draining: everything still queued is eventually delivered and can be committed
    for _ in range(500):
        if not queue.pending_events():
            break
        clock.advance(31)
        receive(10)
        while outstanding:
            commit(*outstanding.pop())
    stats = queue.stats()
    assert queue.pending_events() == []
    assert stats.enqueued == sum(copies.values()) == stats.committed + stats.expired
