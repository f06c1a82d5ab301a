"""The pipeline's acceptance rules (DESIGN.md, Semantics), each checked end to end: the real feed
poller and order work against the sandbox over HTTP, the real Redis state, real threads, and one
run through a real Celery worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from bridge.domain.errors import StaleLockError
from bridge.domain.services import Outcome, run_work
from bridge.state.ledger import Ledger
from bridge.state.locks import LockBusy, OrderLocks
from bridge.vtex.errors import RateLimited
from tests.integration.pipeline_kit import (
    NO_WORK_STATUSES,
    READY,
    Make,
    Worker,
    effect_count,
    effects,
    enqueue_raw,
    queued_events,
    ready_sandbox,
    recording_order_reads,
)
from tests.sandbox_client import SandboxClient, wait_until
from workers.redis_server import EmbeddedRedis

ROOT = Path(__file__).resolve().parents[2]
ACCEPTED = ["erp.import", "vtex.start_handling"]


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Workers made by a test (``make_worker``), closed afterwards."""
    made: list[Worker] = []
    yield made
    for worker in made:
        worker.close()


def make_worker(
    made: list[Worker], box: SandboxClient, r: redis.Redis, prefix: str, **kw: Any
) -> Worker:
    worker = Worker(box, r, prefix, **kw)
    made.append(worker)
    return worker


# -- 1. the feed is the queue of record --------------------------------------------------------


def test_a_feed_event_is_committed_only_after_its_work_is_done(
    make_sandbox: Make, redis_client: redis.Redis, key_prefix: str, workers: list[Worker]
) -> None:
    # given orders in ready-for-handling, on a feed that also carries states needing no work
    box = ready_sandbox(make_sandbox, orders=4, seed=21, feed_statuses=[READY, *NO_WORK_STATUSES])
    worker = make_worker(workers, box, redis_client, key_prefix)
    order_ids = sorted(box.order_ids())

    # when the poller drains the feed
    first = worker.poll()

    # then the work is dispatched, and its events stay in flight, uncommitted
    assert sorted(order for _, order in worker.dispatcher.sent) == order_ids
    assert {work for work, _ in worker.dispatcher.sent} == {"accept"}
    queued = queued_events(box)
    assert sorted(e["orderId"] for e in queued) == order_ids
    assert {e["state"] for e in queued} == {READY}
    # and the events that need no work were committed on this first poll
    events = box.report()["events"]
    assert first.no_work == 2 * len(order_ids)  # payment-approved and window-to-cancel
    assert events["committed"] == first.no_work
    assert events["in_flight"] == len(order_ids) and events["waiting"] == 0

    # when the work runs (still uncommitted: the commit waits for the next poll)
    worker.run_dispatched()
    assert [e["state"] for e in queued_events(box)].count(READY) == len(order_ids)
    # and the poller polls again
    worker.poll()

    # then every event is committed, with the handling events the work itself caused
    events = box.report()["events"]
    assert events["in_flight"] == 0 and events["waiting"] == 0
    assert queued_events(box) == []
    assert worker.book.in_flight() == 0


# -- 2. duplicates ----------------------------------------------------------------------------


def test_a_duplicated_event_causes_no_second_effect(
    make_sandbox: Make, redis_client: redis.Redis, key_prefix: str, workers: list[Worker]
) -> None:
    # given every feed event delivered twice
    box = ready_sandbox(make_sandbox, orders=4, seed=22, duplicate_share=1.0)
    worker = make_worker(workers, box, redis_client, key_prefix)
    order_ids = box.order_ids()

    # when the poller drains the feed and every dispatched work runs
    report = worker.poll()
    assert report.dispatched == len(order_ids)
    assert report.collapsed == len(order_ids)  # each copy rode along with its twin's run
    worker.run_dispatched()
    # and the same work runs again for every order, as a redelivered duplicate's would
    again = [worker.run_for_feed("accept", order_id) for order_id in order_ids]

    # then each order was imported and started once, and the second runs found it done
    assert [outcome.effects for outcome in again] == [[]] * len(order_ids)
    done = effects(box)
    assert done.get("erp.import") == len(order_ids)
    assert done.get("vtex.start_handling") == len(order_ids)
    assert box.report()["violations"] == []


def test_a_duplicate_redelivered_by_the_feed_is_committed_without_a_second_effect(
    make_sandbox: Make, redis_client: redis.Redis, key_prefix: str, workers: list[Worker]
) -> None:
    # given every event delivered twice, drained and worked once
    box = ready_sandbox(make_sandbox, orders=3, seed=24, duplicate_share=1.0)
    worker = make_worker(workers, box, redis_client, key_prefix)
    worker.poll()
    worker.run_dispatched()
    worker.poll()
    worker.run_dispatched()

    # when the visibility timeout passes, so whatever was not committed is delivered again (the
    # feed book keeps one handle per event id, so one copy of each twin is still in flight), and
    # the pipeline keeps polling and working a few rounds
    box.advance(0, feed_seconds=31)
    for _ in range(3):
        worker.poll()
        worker.run_dispatched()
    worker.poll()

    # then nothing is left in the feed, and no effect happened twice
    assert queued_events(box) == []
    done = effects(box)
    assert done.get("erp.import") == 3 and done.get("vtex.start_handling") == 3
    assert box.report()["violations"] == []


# -- 3. concurrent workers ---------------------------------------------------------------------


def test_two_workers_given_the_same_order_at_once_cause_one_effect(
    make_sandbox: Make, redis_client: redis.Redis, key_prefix: str, workers: list[Worker]
) -> None:
    # given two workers (each with its own HTTP sessions) sharing Redis, and ready orders
    box = ready_sandbox(make_sandbox, orders=6, seed=23)
    pair = [make_worker(workers, box, redis_client, key_prefix) for _ in range(2)]

    for order_id in box.order_ids():
        # when both run accept on the same order, started together
        results = race_accept(pair, order_id)

        # then one did the work, the other was turned away or found it done
        did = [r for r in results if isinstance(r, Outcome) and r.effects]
        assert len(did) == 1 and did[0].effects == ACCEPTED
        other = next(r for r in results if r is not did[0])
        assert other == "busy" or (isinstance(other, Outcome) and other.effects == [])
        assert effect_count(box, "erp.import", order_id) == 1
        assert effect_count(box, "vtex.start_handling", order_id) == 1

    assert box.report()["violations"] == []


def race_accept(pair: list[Worker], order_id: str) -> list[Outcome | str]:
    """Both workers run accept on the order, released together by a barrier; each result is
    the run's outcome, or "busy" when the lease was taken."""
    start = threading.Barrier(len(pair))
    results: list[Outcome | str] = []
    errors: list[BaseException] = []

    def work(worker: Worker) -> None:
        start.wait(timeout=5)
        try:
            with worker.locks.hold(order_id) as lease:
                results.append(run_work("accept", order_id, worker.ports, lease))
        except LockBusy:
            results.append("busy")
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in pair]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert errors == []
    assert len(results) == len(pair)
    return results


# -- 4. expired leases -------------------------------------------------------------------------


def test_a_worker_whose_lease_expired_cannot_record_its_effect(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # given a worker whose lease ran out, and a second worker holding the order since
    locks = OrderLocks(redis_client, key_prefix, ttl=0.3)
    ledger = Ledger(redis_client, key_prefix)
    order_id = f"{uuid.uuid4().hex[:12]}-01"
    stale = locks.acquire(order_id)
    assert stale is not None
    wait_until(lambda: locks.current_token(order_id) is None, timeout=5, what="lease expiry")
    current = locks.acquire(order_id)
    assert current is not None and current.token > stale.token

    # when the first worker records its effect, then the second
    with pytest.raises(StaleLockError):
        ledger.record(order_id, "erp.import", stale.token)
    ledger.record(order_id, "erp.import", current.token)

    # then the ledger holds the second worker's record only
    assert ledger.done(order_id) == {"erp.import"}
    entry = json.loads(redis_client.hget(f"{key_prefix}ledger:{order_id}", "erp.import") or "{}")
    assert entry["token"] == current.token


def test_work_under_an_expired_lease_reaches_neither_vtex_nor_the_erp(
    make_sandbox: Make, redis_client: redis.Redis, key_prefix: str, workers: list[Worker]
) -> None:
    # given a ready order and a worker whose lease on it expired; another worker holds it now
    box = ready_sandbox(make_sandbox, orders=1, seed=25)
    (order_id,) = box.order_ids()
    worker = make_worker(workers, box, redis_client, key_prefix, lock_ttl=0.3)
    stale = worker.locks.acquire(order_id)  # no keeper: nothing renews it, as in a paused worker
    assert stale is not None
    wait_until(lambda: worker.locks.current_token(order_id) is None, 5, "lease expiry")
    assert worker.locks.acquire(order_id) is not None

    # when the stale worker runs accept
    with pytest.raises(StaleLockError):
        run_work("accept", order_id, worker.ports, stale)

    # then no effect reached the sandbox and nothing was recorded
    assert effect_count(box, "erp.import", order_id) == 0
    assert effect_count(box, "vtex.start_handling", order_id) == 0
    assert box.order(order_id)["status"] == READY
    assert worker.ledger.done(order_id) == set()


# -- 5. 429 ------------------------------------------------------------------------------------


def test_after_a_429_no_worker_calls_vtex_before_retry_after(
    make_sandbox: Make, redis_client: redis.Redis, key_prefix: str, workers: list[Worker]
) -> None:
    # given VTEX answering get-order with 429 and Retry-After: 2, and three workers sharing
    # the account's rate budget: B waits for the budget at most 0.5 s, C up to 2.5 s
    box = ready_sandbox(make_sandbox, orders=1, seed=26)
    (order_id,) = box.order_ids()
    a = make_worker(workers, box, redis_client, key_prefix)
    b = make_worker(workers, box, redis_client, key_prefix, max_budget_wait=0.5)
    c = make_worker(workers, box, redis_client, key_prefix, max_budget_wait=2.5)
    set_faults(box, "get_order:429=100%,retry-after=2")

    with recording_order_reads(box) as reads:
        # when A is rate limited, and VTEX would answer again at once
        started = time.monotonic()
        with pytest.raises(RateLimited) as limited:
            a.vtex.get_order(order_id)
        assert limited.value.retry_after == pytest.approx(2.0)
        set_faults(box, "")
        # then B is told to come back later, without calling VTEX
        with pytest.raises(RateLimited) as told:
            b.vtex.get_order(order_id)
        assert 1.0 < told.value.retry_after <= 2.0
        assert reads.times() == []
        # and C blocks until the pause is over, and only then calls VTEX
        assert c.vtex.get_order(order_id).order_id == order_id

    assert len(reads.times()) == 1
    assert reads.times()[0] - started >= 2.0
    assert box.report()["faults"].get("429") == 1  # only A's call was answered 429


def set_faults(box: SandboxClient, spec: str) -> None:
    box.vtex("POST", "/_sandbox/faults", json={"spec": spec}).raise_for_status()


# -- 6. bad input ------------------------------------------------------------------------------


def junk_items(box: SandboxClient) -> list[dict[str, str]]:
    """Malformed items as the sandbox's fault injector makes them: a bad date, a hostile order
    id, an unknown state, an oversized field."""
    now = "2024-05-01T12:00:00.0000000Z"
    template = {
        "domain": "Fulfillment",
        "state": READY,
        "lastState": "window-to-cancel",
        "orderId": box.order_ids()[0],
        "lastChange": now,
        "currentChange": now,
    }
    return [
        {**template, "eventId": "junkdate", "currentChange": "31/12/2019 25:61"},
        {**template, "eventId": "junkorder", "orderId": "../../api/oms/pvt/orders"},
        {**template, "eventId": "junkstate", "state": "<script>alert(1)</script>"},
        {**template, "eventId": "junkbig", "lastState": "x" * 200_000},
    ]


def test_a_malformed_item_is_quarantined_and_the_rest_of_its_batch_proceeds(
    make_sandbox: Make, redis_client: redis.Redis, key_prefix: str, workers: list[Worker]
) -> None:
    # given a feed holding valid ready-for-handling events and malformed items
    box = ready_sandbox(make_sandbox, orders=4, seed=27, feed_statuses=[READY])
    junk = junk_items(box)
    for item in junk:
        enqueue_raw(box, item)
    worker = make_worker(workers, box, redis_client, key_prefix)

    # when the poller drains the feed
    report = worker.poll()

    # then the junk and the valid events came in one batch
    (batch,) = [b for b in worker.source.batches if b]
    assert {i["eventId"] for i in batch} >= {i["eventId"] for i in junk}
    # and every junk item is quarantined with its reason and its payload
    items = {json.loads(q.payload)["eventId"]: q for q in worker.quarantine.list()}
    assert set(items) == {i["eventId"] for i in junk}
    assert report.quarantined == len(junk)
    assert "currentChange" in items["junkdate"].reason
    assert "orderId" in items["junkorder"].reason
    assert "state" in items["junkstate"].reason
    assert "lastState" in items["junkbig"].reason
    kept = items["junkorder"].payload_data()
    assert kept is not None and kept["orderId"] == "../../api/oms/pvt/orders"
    assert not items["junkbig"].truncated and items["junkbig"].payload_size > 200_000
    # and committed (gone from the feed), while the valid events were dispatched
    assert {e["eventId"] for e in queued_events(box)}.isdisjoint(items)
    assert sorted(order for _, order in worker.dispatcher.sent) == sorted(box.order_ids())

    # and the junk is never delivered again
    box.advance(0, feed_seconds=31)
    worker.poll()
    assert worker.quarantine.count() == len(junk)


def test_the_feed_goes_on_while_vtex_serves_a_malformed_item_in_every_read(
    make_sandbox: Make, redis_client: redis.Redis, key_prefix: str, workers: list[Worker]
) -> None:
    # given the sandbox injecting a malformed item before every feed read
    box = ready_sandbox(make_sandbox, orders=4, seed=28, feed_statuses=[READY])
    set_faults(box, "feed_get:malformed=100%")
    worker = make_worker(workers, box, redis_client, key_prefix)

    # when the poller reads a few batches (the feed is never empty while junk keeps coming)
    report = worker.poll(max_reads=4)

    # then every junk item read is quarantined and committed, every valid event dispatched
    junk_read = [i for b in worker.source.batches for i in b if i["eventId"].startswith("junk")]
    assert junk_read and report.quarantined == len(junk_read)
    assert worker.quarantine.count() == len(junk_read)
    queued = {e["eventId"] for e in queued_events(box)}
    assert queued.isdisjoint(i["eventId"] for i in junk_read)
    assert sorted(order for _, order in worker.dispatcher.sent) == sorted(box.order_ids())


# -- 7. manual triggers ------------------------------------------------------------------------


def test_a_manual_trigger_runs_even_while_the_same_work_is_waiting(
    make_sandbox: Make, redis_client: redis.Redis, key_prefix: str, workers: list[Worker]
) -> None:
    # given a ready order whose accept work is claimed and waiting (a run is pending)
    box = ready_sandbox(make_sandbox, orders=1, seed=29)
    (order_id,) = box.order_ids()
    worker = make_worker(workers, box, redis_client, key_prefix)
    assert worker.book.claim("accept", order_id, "event-1")
    assert not worker.book.claim("accept", order_id, "event-2")  # collapsed into that run

    # when an operator triggers accept by hand
    manual = worker.run_manual("accept", order_id)

    # then it ran at once and did the work, leaving the pending run and its events alone
    assert manual.effects == ACCEPTED
    assert effect_count(box, "erp.import", order_id) == 1
    assert effect_count(box, "vtex.start_handling", order_id) == 1
    assert worker.book.waiting("accept", order_id) == 2

    # when the collapsed run comes
    collapsed = worker.run_for_feed("accept", order_id)

    # then it finds the work done, and its events become committable
    assert collapsed.effects == []
    assert effect_count(box, "erp.import", order_id) == 1
    assert effect_count(box, "vtex.start_handling", order_id) == 1
    assert worker.book.committable() == 2
    assert box.report()["violations"] == []


@pytest.fixture
def task_container(
    make_sandbox: Make, redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SandboxClient, Any]]:
    """A ready sandbox, and the tasks' adapters (``workers.bootstrap``) wired to it."""
    from workers import bootstrap
    from workers.settings import Settings

    box = ready_sandbox(make_sandbox, orders=1, seed=30)
    cfg = box.sandbox.world.config
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        vtex_base_url=box.vtex_url,
        vtex_app_key=cfg.app_key,
        vtex_app_token=SecretStr(cfg.app_token),
        erp_base_url=box.erp_url,
        erp_token=SecretStr(cfg.erp_token),
        redis_url=redis_url,
        key_prefix=key_prefix,
    )
    container = bootstrap.build(settings)
    monkeypatch.setattr(bootstrap, "_container", container)
    yield box, container
    container.vtex.close()
    container.redis.close()


def test_the_manual_task_path_runs_while_feed_work_is_pending(
    task_container: tuple[SandboxClient, Any],
) -> None:
    # given the task runner wired to the sandbox, and accept work pending for a ready order
    from tasks.runner import run_order_task

    box, container = task_container
    (order_id,) = box.order_ids()
    assert container.feedbook.claim("accept", order_id, "event-1")

    # when the task runs as a manual trigger (manual=True)
    outcome = run_order_task(FakeTask("manual-1"), "accept", order_id, True)

    # then it did the work, and the pending run and its event are still waiting
    assert outcome["effects"] == ACCEPTED
    assert container.feedbook.waiting("accept", order_id) == 1
    # and the collapsed run (manual=False) finds it done and makes its event committable
    collapsed = run_order_task(FakeTask("feed-1"), "accept", order_id, False)
    assert collapsed["effects"] == []
    assert container.feedbook.committable() == 1
    assert effect_count(box, "erp.import", order_id) == 1
    assert effect_count(box, "vtex.start_handling", order_id) == 1


def test_a_queued_run_superseded_by_a_later_finished_run_ends_without_calling_vtex_or_the_erp(
    task_container: tuple[SandboxClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a recheck queued (say by the pre-ship scan), then queued again after its pending
    # marker expired in a long queue, and the second copy ran first
    from tasks.runner import run_order_task

    box, container = task_container
    (order_id,) = box.order_ids()
    reads: list[str] = []
    for port in (container.vtex, container.erp):
        read = port.get_order
        monkeypatch.setattr(
            port, "get_order", lambda oid, read=read: reads.append(oid) or read(oid)
        )
    older, newer = container.feedbook.stamp(), container.feedbook.stamp()
    first = run_order_task(FakeTask("copy-2"), "recheck", order_id, False, 0, newer)
    assert "superseded" not in first and len(reads) == 2
    queued_later = container.feedbook.stamp()  # and a scan queues a third copy
    # when the older copy's turn comes
    outcome = run_order_task(FakeTask("copy-1"), "recheck", order_id, False, 0, older)
    # then it ends at once: a run that started after it was queued read the order later
    assert outcome == {"work": "recheck", "orderId": order_id, "superseded": True}
    assert len(reads) == 2
    # and a superseded run, which read nothing, supersedes nothing: the third copy runs
    assert "superseded" not in run_order_task(
        FakeTask("copy-5"), "recheck", order_id, False, 0, queued_later
    )
    assert len(reads) == 4
    # a copy with events waiting on it, a manual trigger or an unnumbered message runs too
    assert container.feedbook.claim("recheck", order_id, "event-7")
    assert "superseded" not in run_order_task(
        FakeTask("copy-3"), "recheck", order_id, False, 0, older
    )
    assert "superseded" not in run_order_task(FakeTask("by-hand"), "recheck", order_id, True)
    assert "superseded" not in run_order_task(FakeTask("copy-4"), "recheck", order_id, False)
    assert len(reads) == 10


def test_the_backstop_scans_add_no_work_while_the_order_queue_is_over_its_limit(
    task_container: tuple[SandboxClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given workers far behind: more order work queued than QUEUE_DEPTH_LIMIT
    from tasks import maintenance

    box, container = task_container
    (order_id,) = box.order_ids()
    box.advance(4000)  # past ready-for-handling's deadline: the sweep would start its work
    queued: list[tuple[str, str]] = []
    monkeypatch.setattr(
        maintenance.CeleryDispatcher, "enqueue", lambda self, w, o: queued.append((w, o))
    )
    depth = container.settings.queue_depth_limit + 1
    monkeypatch.setattr(maintenance, "orders_queue_depth", lambda: depth)
    # when the sweep and the pre-ship scan run, then they add nothing
    assert maintenance.sweep() == {"skipped": 1}
    assert maintenance.scan_packed() == {"skipped": 1}
    assert queued == []
    # and once the queue is back under the limit, the sweep starts the order's work again
    monkeypatch.setattr(maintenance, "orders_queue_depth", lambda: 0)
    assert maintenance.sweep()["started"] >= 1
    assert ("accept", order_id) in queued


def test_a_run_whose_worker_died_under_it_too_often_goes_to_quarantine(
    task_container: tuple[SandboxClient, Any],
) -> None:
    # given a message whose worker was killed under it twice (it bumped its count and never
    # settled), on deliveries that were retries of one another
    from tasks.runner import run_order_task

    box, container = task_container
    (order_id,) = box.order_ids()
    container.redeliveries.bump("poison-1")
    container.redeliveries.bump("poison-1")
    task = FakeTask("poison-1")
    task.request.retries = 3
    # when it is delivered again (REDELIVERY_LIMIT is 3 by default: this is the fourth)
    container.redeliveries.bump("poison-1")
    outcome = run_order_task(task, "accept", order_id, False, failures=1)
    # then the next delivery is not run but quarantined, with the reason
    assert "its worker was lost" in outcome["reason"]
    assert effect_count(box, "erp.import", order_id) == 0
    assert any(i.order_id == order_id for i in container.quarantine.list())
    assert container.redeliveries.count("poison-1") == 3


def test_runs_that_end_normally_leave_no_count_behind(
    task_container: tuple[SandboxClient, Any],
) -> None:
    from tasks.runner import run_order_task

    box, container = task_container
    (order_id,) = box.order_ids()
    run_order_task(FakeTask("normal-1"), "accept", order_id, True)
    assert container.redeliveries.count("normal-1") == 0


class Retried(Exception):
    """What RecordingTask.retry returns (the runner raises it)."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__("retry")
        self.kwargs = kwargs


class RecordingTask:
    """A bound task whose retries are recorded instead of sent."""

    def __init__(self, task_id: str) -> None:
        self.request = SimpleNamespace(id=task_id, retries=0)

    def retry(self, **kwargs: Any) -> Exception:
        return Retried(kwargs)


def test_waiting_for_another_runs_lock_spends_no_failure(
    task_container: tuple[SandboxClient, Any],
) -> None:
    # given another run holding the order's lease, after two transient failures of this run
    from tasks.runner import run_order_task

    box, container = task_container
    (order_id,) = box.order_ids()
    other = container.locks.acquire(order_id)
    assert other is not None
    # when this run finds the lock busy
    with pytest.raises(Retried) as retried:
        run_order_task(RecordingTask("waiting-1"), "accept", order_id, False, failures=2)
    other.release()
    # then it waits and tries again, its failures unchanged
    assert retried.value.kwargs["kwargs"] == {"manual": False, "failures": 2}
    assert effect_count(box, "erp.import", order_id) == 0


def test_refused_credentials_keep_the_events_uncommitted_when_the_run_gives_up(
    task_container: tuple[SandboxClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an ERP that refuses the bridge's token, and an event waiting on accept work
    from bridge.erp.rest import RestErp
    from tasks.runner import run_order_task

    box, container = task_container
    (order_id,) = box.order_ids()
    monkeypatch.setattr(container, "erp", RestErp(box.erp_url, SecretStr("rotated-token")))
    assert container.feedbook.claim("accept", order_id, "event-9")
    # when the run fails on its last allowed attempt
    failures = container.settings.max_retries
    outcome = run_order_task(RecordingTask("auth-1"), "accept", order_id, False, failures)
    # then it is quarantined, but its event is not committable: it comes back once fixed
    assert "ERP_TOKEN" in outcome["reason"]
    assert container.feedbook.committable() == 0
    assert effect_count(box, "vtex.start_handling", order_id) == 0


class FakeTask:
    """What the runner reads of a bound Celery task: its request, and retry (never expected)."""

    def __init__(self, task_id: str) -> None:
        self.request = SimpleNamespace(id=task_id, retries=0)

    def retry(self, **kwargs: Any) -> Exception:
        raise AssertionError(f"unexpected retry: {kwargs}")


# -- through real Celery -----------------------------------------------------------------------


def bridge_env(box: SandboxClient, redis_url: str, broker_url: str, prefix: str) -> dict[str, str]:
    """The environment a worker and the command line need to reach the sandbox."""
    cfg = box.sandbox.world.config
    return {
        **os.environ,
        "VTEX_BASE_URL": box.vtex_url,
        "VTEX_APP_KEY": cfg.app_key,
        "VTEX_APP_TOKEN": cfg.app_token,
        "ERP_BASE_URL": box.erp_url,
        "ERP_TOKEN": cfg.erp_token,
        "REDIS_URL": redis_url,
        "BROKER_URL": broker_url,
        "KEY_PREFIX": prefix,
        "PYTHONPATH": str(ROOT),
    }


@contextmanager
def celery_worker(env: dict[str, str], log_path: Path) -> Iterator[None]:
    """A Celery worker process for the test; killed at the end whatever happens, and its log
    added to any failure."""
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "orders,feed",
             "-c", "2", "--pool", "prefork", "--without-mingle", "--without-gossip",
             "-n", f"pipeline-{uuid.uuid4().hex[:8]}@%h", "--loglevel", "WARNING"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield
        except AssertionError as exc:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{exc}\n--- worker log ---\n{tail}") from exc
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def test_a_celery_worker_runs_called_and_triggered_work(
    make_sandbox: Make, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    # given a Celery worker process on a broker of its own (no other worker takes its messages)
    box = ready_sandbox(make_sandbox, orders=2, seed=31)
    called, triggered = box.order_ids()
    with EmbeddedRedis() as broker:
        env = bridge_env(box, redis_url, broker.url, key_prefix)
        with celery_worker(env, tmp_path / "worker.log"):
            # when an operator calls the task with celery's own command
            call = subprocess.run(
                [sys.executable, "-m", "celery", "-A", "workers.app", "call",
                 "bridge.accept_order", "--args", json.dumps([called])],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert call.returncode == 0, call.stderr

            # then the order is handled
            wait_until(
                lambda: box.order(called)["status"] == "handling", 30, "the called order handled"
            )

            # when an operator triggers accept for another order and waits for the outcome
            trigger = subprocess.run(
                [sys.executable, "-m", "workers.cli", "trigger", "accept", triggered,
                 "--wait", "--timeout", "30"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=45,
            )  # fmt: skip

            # then it prints what the task decided and did
            assert trigger.returncode == 0, trigger.stderr
            outcome = json.loads(trigger.stdout[trigger.stdout.index("{") :])
            assert outcome["orderId"] == triggered
            assert outcome["effects"] == ACCEPTED
            assert box.order(triggered)["status"] == "handling"
    assert effect_count(box, "erp.import", called) == 1
    assert effect_count(box, "vtex.start_handling", called) == 1
    assert box.report()["violations"] == []


def test_trigger_wait_without_a_worker_says_no_result_came(
    make_sandbox: Make, key_prefix: str
) -> None:
    # given a broker nobody consumes from
    box = ready_sandbox(make_sandbox, orders=1, seed=32)
    (order_id,) = box.order_ids()
    with EmbeddedRedis() as broker:
        env = bridge_env(box, broker.url, broker.url, key_prefix)
        # when an operator triggers work and waits briefly for its outcome
        trigger = subprocess.run(
            [sys.executable, "-m", "workers.cli", "trigger", "accept", order_id,
             "--wait", "--timeout", "0.5"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    # then it says no result came, without a traceback
    assert trigger.returncode == 1
    assert "is a worker running?" in trigger.stderr
    assert "Traceback" not in trigger.stderr
