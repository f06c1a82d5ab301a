"""The feed bookkeeping on real Redis: latest handles, collapsing runs, commits after the work."""

from __future__ import annotations

import uuid

import pytest
import redis

from bridge.state.feedbook import FeedBook
from tests.sandbox_client import wait_until

WORK = "accept_order"
READY = "ready-for-handling"


def new_order_id() -> str:
    return f"{uuid.uuid4().int % 10**13:013d}-01"


def new_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def book(redis_client: redis.Redis, key_prefix: str) -> FeedBook:
    return FeedBook(redis_client, key_prefix)


def deliver(book: FeedBook, order_id: str, handle: str = "h1") -> str:
    event_id = new_id("ev")
    book.note_delivery(event_id, handle, order_id, READY)
    return event_id


def test_a_redelivered_event_commits_with_its_recent_handles_the_latest_last(
    book: FeedBook,
) -> None:
    # A duplicate copy of an event is its own queue message, deleted only by its own handle;
    # an older handle of the same message is stale and ignored: committing both is right.
    order_id = new_order_id()
    event_id = deliver(book, order_id, handle="first-handle")
    book.note_delivery(event_id, "second-handle", order_id, READY)

    book.commit_later([event_id])

    assert book.in_flight() == 1
    assert book.take_commit_batch() == [(event_id, "first-handle"), (event_id, "second-handle")]


def test_only_the_few_most_recent_handles_of_an_event_are_kept(book: FeedBook) -> None:
    order_id = new_order_id()
    event_id = deliver(book, order_id, handle="h0")
    for n in range(1, 10):
        book.note_delivery(event_id, f"h{n}", order_id, READY)
    book.note_delivery(event_id, "h9", order_id, READY)  # the same handle twice counts once

    book.commit_later([event_id])

    assert book.take_commit_batch() == [(event_id, f"h{n}") for n in range(6, 10)]


def test_events_claimed_while_a_run_is_pending_collapse_into_that_run(book: FeedBook) -> None:
    order_id = new_order_id()
    events = [deliver(book, order_id) for _ in range(3)]

    claims = [book.claim(WORK, order_id, event_id) for event_id in events]

    assert claims == [True, False, False]
    assert book.waiting(WORK, order_id) == 3
    assert book.start(WORK, order_id, new_id("run")) == sorted(events)
    assert book.waiting(WORK, order_id) == 0


def test_an_event_claimed_while_the_run_executes_asks_for_a_new_run(book: FeedBook) -> None:
    order_id = new_order_id()
    first, second = deliver(book, order_id), deliver(book, order_id)
    assert book.claim(WORK, order_id, first)
    book.start(WORK, order_id, new_id("run"))

    assert book.claim(WORK, order_id, second) is True
    assert book.start(WORK, order_id, new_id("run")) == [second]


def test_runs_for_different_work_or_orders_do_not_collapse(book: FeedBook) -> None:
    order_a, order_b = new_order_id(), new_order_id()

    assert book.claim(WORK, order_a, deliver(book, order_a))
    assert book.claim(WORK, order_b, deliver(book, order_b))
    assert book.claim("check_cancelation", order_a, deliver(book, order_a))


def test_a_claim_without_an_event_collapses_like_an_event(book: FeedBook) -> None:
    # The sweeper claims without an event: it rides along with a pending run, and asks for a
    # fresh one once that run has started (it read the order before the sweep).
    order_id = new_order_id()
    assert book.claim(WORK, order_id, None) is True
    assert book.claim(WORK, order_id, deliver(book, order_id)) is False
    assert book.claim(WORK, order_id, None) is False
    assert book.waiting(WORK, order_id) == 1

    book.start(WORK, order_id, new_id("run"))

    assert book.claim(WORK, order_id, None) is True
    assert book.waiting(WORK, order_id) == 0


def test_nothing_is_committable_before_the_run_finishes(book: FeedBook) -> None:
    order_id = new_order_id()
    events = [deliver(book, order_id) for _ in range(2)]
    for event_id in events:
        book.claim(WORK, order_id, event_id)
    run_id = new_id("run")
    book.start(WORK, order_id, run_id)

    assert book.committable() == 0
    assert book.take_commit_batch() == []

    assert book.finish(run_id) == 2
    assert book.committable() == 2
    assert sorted(book.take_commit_batch()) == sorted((e, "h1") for e in events)


def test_a_committed_batch_leaves_nothing_in_flight(book: FeedBook) -> None:
    order_id = new_order_id()
    events = [deliver(book, order_id) for _ in range(3)]
    book.commit_later(events)

    batch = book.take_commit_batch(limit=2)
    assert len(batch) == 2
    book.committed(event_id for event_id, _ in batch)

    assert book.in_flight() == 1
    assert book.committable() == 1


def test_a_failed_commit_puts_the_batch_back(book: FeedBook) -> None:
    order_id = new_order_id()
    events = [deliver(book, order_id) for _ in range(3)]
    book.commit_later(events)
    batch = book.take_commit_batch()
    assert book.committable() == 0

    book.commit_failed(event_id for event_id, _ in batch)

    assert book.committable() == 3
    assert sorted(book.take_commit_batch()) == sorted(batch)
    assert book.in_flight() == 3


def test_an_event_redelivered_during_its_commit_stays_in_flight(book: FeedBook) -> None:
    # Given a batch taken with the old handle, when VTEX redelivers the event before the commit
    # returns, the old handle committed nothing: the new delivery must still be committed.
    order_id = new_order_id()
    event_id = deliver(book, order_id, handle="old")
    book.commit_later([event_id])
    assert book.take_commit_batch() == [(event_id, "old")]
    book.note_delivery(event_id, "new", order_id, READY)

    book.committed([event_id])

    assert book.in_flight() == 1
    book.commit_later([event_id])
    assert book.take_commit_batch()[-1] == (event_id, "new")


def test_the_commit_batch_skips_events_no_longer_in_flight(book: FeedBook) -> None:
    order_id = new_order_id()
    kept = deliver(book, order_id)
    book.commit_later([kept, "ev-never-delivered"])

    assert book.take_commit_batch() == [(kept, "h1")]
    assert book.committable() == 0


def test_a_claim_after_the_pending_marker_expired_asks_for_a_new_run(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given a run the broker lost: its pending marker expires and the redelivered event claims
    # a fresh run instead of waiting forever.
    book = FeedBook(redis_client, key_prefix, pending_ttl=0.2)
    order_id = new_order_id()
    event_id = deliver(book, order_id)
    assert book.claim(WORK, order_id, event_id)
    assert book.claim(WORK, order_id, event_id) is False

    marker = f"{key_prefix}feed:pending:{WORK}:{order_id}"
    assert redis_client.exists(marker)
    wait_until(lambda: not redis_client.exists(marker), timeout=5, what="pending marker expiry")

    assert book.claim(WORK, order_id, event_id) is True
    assert book.waiting(WORK, order_id) == 1


def test_starting_a_run_again_keeps_its_events_and_adds_new_ones(book: FeedBook) -> None:
    order_id = new_order_id()
    first, second = deliver(book, order_id), deliver(book, order_id)
    book.claim(WORK, order_id, first)
    run_id = new_id("run")
    assert book.start(WORK, order_id, run_id) == [first]
    assert book.claim(WORK, order_id, second) is True

    assert book.start(WORK, order_id, run_id) == sorted([first, second])
    assert book.claim(WORK, order_id, deliver(book, order_id)) is True
    assert book.finish(run_id) == 2


def test_finishing_twice_commits_the_events_once(book: FeedBook) -> None:
    order_id = new_order_id()
    event_id = deliver(book, order_id)
    book.claim(WORK, order_id, event_id)
    run_id = new_id("run")
    book.start(WORK, order_id, run_id)

    assert book.finish(run_id) == 1
    assert book.finish(run_id) == 0
    assert book.take_commit_batch() == [(event_id, "h1")]


def test_keys_are_built_only_from_valid_ids(book: FeedBook) -> None:
    with pytest.raises(ValueError):
        book.claim(WORK, "not an order*", None)
    with pytest.raises(ValueError):
        book.start("accept order", new_order_id(), new_id("run"))
    with pytest.raises(ValueError):
        book.finish("run\nwith newline")


def test_only_one_owner_holds_the_poller_lease(redis_client: redis.Redis, key_prefix: str) -> None:
    book = FeedBook(redis_client, key_prefix)
    beat_a, beat_b = new_id("beat"), new_id("beat")

    assert book.poller_lease(beat_a, ttl=30)
    assert not book.poller_lease(beat_b, ttl=30)
    assert book.poller_lease(beat_a, ttl=60)
    assert redis_client.pttl(f"{key_prefix}feed:poller") > 30_000

    assert not book.release_poller(beat_b)
    assert not book.poller_lease(beat_b, ttl=30)
    assert book.release_poller(beat_a)
    assert book.poller_lease(beat_b, ttl=30)


def test_an_expired_poller_lease_lets_another_owner_take_it(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    book = FeedBook(redis_client, key_prefix)
    beat_a, beat_b = new_id("beat"), new_id("beat")
    assert book.poller_lease(beat_a, ttl=0.2)
    assert not book.poller_lease(beat_b, ttl=30)

    wait_until(lambda: book.poller_lease(beat_b, ttl=30), timeout=5, what="lease expiry")

    assert not book.poller_lease(beat_a, ttl=30)


def test_a_start_is_numbered_and_sees_the_latest_finished_run_of_its_work(
    book: FeedBook,
) -> None:
    order_id = new_order_id()
    event_id = deliver(book, order_id)
    book.claim(WORK, order_id, event_id)
    queued = book.stamp()

    first = book.begin(WORK, order_id, new_id("run"))
    unfinished = book.begin(WORK, order_id, new_id("run"))
    assert first.events == [event_id] and first.last_finished is None
    assert queued < first.number < unfinished.number
    # a run that started is not enough: only one that finished counts
    assert unfinished.last_finished is None

    book.finished_reading(WORK, order_id, first.number)
    book.finished_reading(WORK, order_id, first.number - 1)  # an older run finishing late
    later = book.begin(WORK, order_id, new_id("run"))
    assert later.events == []
    assert later.last_finished == first.number
    # other work on the order keeps its own record
    assert book.begin("check_cancelation", order_id, new_id("run")).last_finished is None


def test_the_sequence_keeps_growing_after_redis_is_wiped(
    book: FeedBook, redis_client: redis.Redis, key_prefix: str
) -> None:
    order_id = new_order_id()
    before = book.begin(WORK, order_id, new_id("run")).number
    for key in redis_client.scan_iter(match=key_prefix + "*"):
        redis_client.delete(key)
    # a run queued after the wipe is numbered after every start before it
    assert book.stamp() > before


def test_a_finished_number_the_sequence_never_handed_out_is_not_recorded(book: FeedBook) -> None:
    # (Redis's clock stepped back across a wipe: recording it would supersede every run since)
    order_id = new_order_id()
    book.finished_reading(WORK, order_id, book.stamp() + 10**12)
    assert book.begin(WORK, order_id, new_id("run")).last_finished is None
