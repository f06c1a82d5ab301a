"""The pipeline wired in-process for integration tests: the real VTEX client and REST ERP against
the sandbox, the real Redis state, the real feed poller and order work service.

Only the dispatcher (a port: "start this work") is a fake, recording what the poller asked for,
so a test decides when and how the work runs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
from pydantic import SecretStr

from bridge.domain.feed import FeedPoller, PollReport
from bridge.domain.services import Outcome, Ports, run_work
from bridge.erp.rest import RestErp
from bridge.state.feedbook import FeedBook
from bridge.state.history import History
from bridge.state.ledger import Ledger
from bridge.state.locks import OrderLocks
from bridge.state.quarantine import Quarantine
from bridge.state.ratebudget import RedisRateBudget
from bridge.vtex.client import VtexClient
from sandbox.scenario import ScenarioConfig
from tests.sandbox_client import SandboxClient

Make = Callable[..., SandboxClient]

# Statuses an order passes through on its way to ready-for-handling that call for no work.
NO_WORK_STATUSES = ["payment-approved", "window-to-cancel", "handling"]
READY = "ready-for-handling"


def scenario(orders: int, seed: int) -> ScenarioConfig:
    """Orders that all reach ready-for-handling: no shopper cancels."""
    return ScenarioConfig(
        orders=orders, seed=seed, cancel_in_window_share=0.0, cancel_after_window_share=0.0
    )


def ready_sandbox(make_sandbox: Make, *, orders: int, seed: int, **config: Any) -> SandboxClient:
    """A sandbox (frozen clock) whose orders all wait in ready-for-handling; ``feed_statuses``
    picks the feed's filter, other keywords go to the sandbox."""
    statuses = config.pop("feed_statuses", None)
    box = make_sandbox(scenario=scenario(orders, seed), **config)
    assert box.configure_feed(statuses).status_code == 200
    box.advance(4000)
    assert all(box.order(oid)["status"] == READY for oid in box.order_ids())
    return box


def never() -> bool:
    return False


@dataclass
class RecordingDispatcher:
    """The Dispatcher port: records (work, order id) instead of enqueueing a task."""

    sent: list[tuple[str, str]] = field(default_factory=list)

    def enqueue(self, work: str, order_id: str) -> None:
        self.sent.append((work, order_id))


@dataclass
class RecordingSource:
    """Wraps the real VTEX client as the poller's FeedSource, keeping every batch it read."""

    vtex: VtexClient
    batches: list[list[dict[str, Any]]] = field(default_factory=list)

    def get_feed(self, maxlot: int = 10) -> list[dict[str, Any]]:
        items = self.vtex.get_feed(maxlot)
        self.batches.append(items)
        return items

    def commit(self, handles: list[str]) -> None:
        self.vtex.commit(handles)


@dataclass
class Worker:
    """One worker's adapters: its own HTTP sessions, the state shared through Redis."""

    box: SandboxClient
    redis: redis.Redis
    prefix: str
    lock_ttl: float = 30.0
    max_budget_wait: float = 2.0

    def __post_init__(self) -> None:
        cfg = self.box.sandbox.world.config
        self.budget = RedisRateBudget(self.redis, self.prefix)
        self.vtex = VtexClient(
            self.box.vtex_url,
            cfg.app_key,
            SecretStr(cfg.app_token),
            budget=self.budget,
            max_budget_wait=self.max_budget_wait,
        )
        self.erp = RestErp(self.box.erp_url, SecretStr(cfg.erp_token))
        self.ledger = Ledger(self.redis, self.prefix)
        self.history = History(self.redis, self.prefix)
        self.book = FeedBook(self.redis, self.prefix)
        self.quarantine = Quarantine(self.redis, self.prefix)
        self.locks = OrderLocks(self.redis, self.prefix, ttl=self.lock_ttl)
        self.dispatcher = RecordingDispatcher()
        self.source = RecordingSource(self.vtex)
        self.poller = FeedPoller(self.source, self.book, self.quarantine, self.dispatcher)

    @property
    def ports(self) -> Ports:
        return Ports(vtex=self.vtex, erp=self.erp, ledger=self.ledger, history=self.history)

    def poll(self, max_reads: int = 1000) -> PollReport:
        return self.poller.poll(out_of_time=never, overloaded=never, max_reads=max_reads)

    def run_manual(self, work: str, order_id: str) -> Outcome:
        """What a manual trigger does: hold the lease and run, without the feed book."""
        with self.locks.hold(order_id) as lease:
            return run_work(work, order_id, self.ports, lease)

    def run_for_feed(self, work: str, order_id: str, run_id: str | None = None) -> Outcome:
        """What a task started by the poller does: take the waiting events, run, finish."""
        run_id = run_id or uuid.uuid4().hex
        self.book.start(work, order_id, run_id)
        outcome = self.run_manual(work, order_id)
        self.book.finish(run_id)
        return outcome

    def run_dispatched(self) -> list[Outcome]:
        """Run every piece of work the poller dispatched so far, in order."""
        sent, self.dispatcher.sent = self.dispatcher.sent, []
        return [self.run_for_feed(work, order_id) for work, order_id in sent]

    def close(self) -> None:
        self.vtex.close()
        self.erp.close()


def effects(box: SandboxClient) -> dict[str, int]:
    data: dict[str, int] = box.report()["effects"]
    return data


def effect_count(box: SandboxClient, kind: str, order_id: str) -> int:
    """How many times the sandbox applied ``kind`` (e.g. ``erp.import``) to the order."""
    return sum(1 for e in box.sandbox.world.effects_of(order_id) if e["kind"] == kind)


def queued_events(box: SandboxClient) -> list[dict[str, str]]:
    """Bodies of every feed message still in the sandbox's queue (waiting or in flight)."""
    world = box.sandbox.world
    with world.lock:
        return world.queue.pending_events()


def enqueue_raw(box: SandboxClient, item: dict[str, str]) -> None:
    """Put an item straight into the feed's queue, as a broken producer would."""
    world = box.sandbox.world
    with world.lock:
        world.queue.enqueue(item)


@dataclass
class OrderReads:
    """Records when the sandbox served Get order (successful reads), by order id."""

    at: list[tuple[float, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def times(self) -> list[float]:
        with self._lock:
            return [t for t, _ in self.at]


@contextmanager
def recording_order_reads(box: SandboxClient) -> Iterator[OrderReads]:
    """Count the Get order calls the sandbox served (its own counters only count faults)."""
    world = box.sandbox.world
    reads = OrderReads()
    original = world.read_order

    def read_order(order_id: str) -> dict[str, Any]:
        with reads._lock:
            reads.at.append((time.monotonic(), order_id))
        return original(order_id)

    world.read_order = read_order  # type: ignore[method-assign]
    try:
        yield reads
    finally:
        del world.read_order  # back to the class's method
