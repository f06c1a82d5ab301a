"""Draining the feed: validate each item, note its latest handle, hand it to the work its state
calls for (collapsing work already waiting for the order), and commit what is done.

The feed is the queue of record (DESIGN.md, Semantics 1): an event is committed only once its work
is done, decided to need nothing, or the item is quarantined with its payload kept. Bad input never
stops the line (Semantics 7): an invalid item is quarantined and committed, the batch goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from bridge.domain.decisions import DEFAULT_REQUEST_STATUSES, work_for_state
from bridge.domain.errors import TransientError
from bridge.domain.models import FeedEvent

log = logging.getLogger(__name__)

MAXLOT = 10  # VTEX's maximum; a batch of 10 suggests more are waiting


class FeedSource(Protocol):
    def get_feed(self, maxlot: int = MAXLOT) -> list[dict[str, Any]]: ...

    def commit(self, handles: list[str]) -> None: ...


class FeedBookPort(Protocol):
    def note_delivery(self, event_id: str, handle: str, order_id: str, state: str) -> None: ...

    def claim(self, work: str, order_id: str, event_id: str | None) -> bool: ...

    def commit_later(self, event_ids: Iterable[str]) -> None: ...

    def take_commit_batch(self, limit: int = 100) -> list[tuple[str, str]]: ...

    def committed(self, event_ids: Iterable[str]) -> None: ...

    def commit_failed(self, event_ids: Iterable[str]) -> None: ...


class QuarantinePort(Protocol):
    def put(
        self,
        kind: str,
        payload: Mapping[str, Any] | str,
        reason: str,
        *,
        order_id: str | None = None,
        source: str = "",
    ) -> str: ...


class Dispatcher(Protocol):
    def enqueue(self, work: str, order_id: str) -> None: ...


@dataclass(frozen=True)
class PlannedItem:
    """One feed item, judged: a valid event and the work it needs, or the reason it is bad."""

    event: FeedEvent | None
    work: str | None
    problem: str | None = None


def describe_errors(error: ValidationError) -> str:
    """Validation errors without the offending input (it may be huge or hostile)."""
    parts = []
    for err in error.errors(include_input=False, include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def plan_item(raw: object, request_statuses: Set[str] = DEFAULT_REQUEST_STATUSES) -> PlannedItem:
    if not isinstance(raw, dict):
        return PlannedItem(None, None, f"feed item is a {type(raw).__name__}, not an object")
    try:
        event = FeedEvent.model_validate(raw)
    except ValidationError as exc:
        return PlannedItem(None, None, describe_errors(exc))
    return PlannedItem(event, work_for_state(event.state, request_statuses))


@dataclass
class PollReport:
    reads: int = 0
    items: int = 0
    dispatched: int = 0
    collapsed: int = 0
    no_work: int = 0
    quarantined: int = 0
    committed: int = 0
    stopped: str = ""
    work: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FeedPoller:
    source: FeedSource
    book: FeedBookPort
    quarantine: QuarantinePort
    dispatcher: Dispatcher
    request_statuses: Set[str] = DEFAULT_REQUEST_STATUSES

    def poll(
        self,
        *,
        out_of_time: Callable[[], bool],
        overloaded: Callable[[], bool],
        max_reads: int = 1000,
    ) -> PollReport:
        """Read batches until the feed is empty, time runs out, or workers fall behind."""
        report = PollReport()
        try:
            report.committed += self.flush_commits()
        except TransientError as exc:
            # A 429 pause or an outage: the events stay committable for the next poll.
            report.stopped = f"commit unavailable: {type(exc).__name__}"
            return report
        while True:
            if report.reads >= max_reads or out_of_time():
                report.stopped = "time budget"
                break
            if overloaded():
                report.stopped = "backpressure"
                break
            try:
                items = self.source.get_feed(MAXLOT)
            except TransientError as exc:
                # A 429 pause or an outage: stop this poll quietly; the next beat tries again.
                report.stopped = f"feed unavailable: {type(exc).__name__}"
                break
            report.reads += 1
            if not items:
                report.stopped = "feed empty"
                break
            self._take(items, report)
            report.committed += self.flush_commits()
        return report

    def _take(self, items: list[dict[str, Any]], report: PollReport) -> None:
        junk_handles: list[str] = []
        for raw in items:
            report.items += 1
            planned = plan_item(raw, self.request_statuses)
            event = planned.event
            if event is None:
                self.quarantine.put("feed-item", raw, planned.problem or "invalid", source="feed")
                report.quarantined += 1
                handle = raw.get("handle") if isinstance(raw, dict) else None
                if isinstance(handle, str) and 0 < len(handle) <= 8192:
                    junk_handles.append(handle)
                log.warning("quarantined a malformed feed item: %s", planned.problem)
                continue
            self.book.note_delivery(event.event_id, event.handle, event.order_id, event.state)
            if planned.work is None:
                self.book.commit_later([event.event_id])
                report.no_work += 1
                continue
            report.work[planned.work] = report.work.get(planned.work, 0) + 1
            if self.book.claim(planned.work, event.order_id, event.event_id):
                self.dispatcher.enqueue(planned.work, event.order_id)
                report.dispatched += 1
            else:
                report.collapsed += 1
        if junk_handles:
            # Quarantined with its payload kept: now the item may leave the feed.
            self.source.commit(junk_handles)
            report.committed += len(junk_handles)

    def flush_commits(self, batch: int = 100) -> int:
        """Commit every event whose work is done, with its latest handle; keep them on failure."""
        total = 0
        while True:
            pairs = self.book.take_commit_batch(batch)
            if not pairs:
                return total
            event_ids = list(dict.fromkeys(event_id for event_id, _ in pairs))
            try:
                self.source.commit([handle for _, handle in pairs])
            except Exception:
                self.book.commit_failed(event_ids)
                raise
            self.book.committed(event_ids)
            total += len(pairs)
