"""What every order task does around its one service call: validate, count redeliveries, take the
events it runs for, hold the order's lease, and turn errors into retries or quarantine.

Retries back off exponentially with jitter, never sooner than a ``Retry-After`` and never longer
than the broker's visibility timeout allows. A run that keeps failing, or whose worker keeps dying
(the redelivery counter), goes to quarantine with its arguments, and the feed events it carried
become committable: poison work ends instead of looping (DESIGN.md, Semantics 5).
"""

from __future__ import annotations

import logging
import random
import re
import uuid
from typing import Any

from celery import Task

from bridge.domain.errors import (
    AuthenticationError,
    PermanentError,
    StaleLockError,
    TransientError,
)
from bridge.domain.models import ORDER_ID_PATTERN
from bridge.domain.services import run_work
from bridge.state.feedbook import Started
from bridge.state.locks import LockBusy
from workers import bootstrap
from workers.app import MAX_COUNTDOWN

log = logging.getLogger(__name__)

# Celery's own retry count includes waits for another run's lock, which are no failures: it
# only guards against a loop; MAX_RETRIES bounds the failures (the ``failures`` argument).
RETRY_CEILING = 500


def backoff(retries: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, at least ``retry_after``, at most MAX_COUNTDOWN."""
    ceiling = min(float(MAX_COUNTDOWN), 2.0 ** min(retries, 10))
    delay = random.uniform(0.5, 1.0) * ceiling
    if retry_after is not None:
        delay = max(delay, retry_after + random.uniform(0.0, 0.5))
    return min(delay, float(MAX_COUNTDOWN))


def run_order_task(
    task: Task,
    work: str,
    order_id: Any,
    manual: bool,
    failures: int = 0,
    queued_seq: Any = None,
) -> dict[str, Any]:
    """Run one piece of order work. ``failures`` counts the transient failures so far (passed
    along on retry): waiting for another run's lock is no failure and does not spend them.

    ``queued_seq`` (set by the dispatcher) lets a collapsed run that waited in a long queue see
    that a run of the same work on the order started after it was queued and has finished: that
    run read the order later than this one could, so this one ends at once (no VTEX or ERP
    call) unless events wait on it. Without it, under load, a backstop scan re-asking for work
    whose pending marker expired in the queue would keep adding runs faster than they drain."""
    c = bootstrap.container()
    run_id = str(task.request.id or uuid.uuid4())
    retries = failures if isinstance(failures, int) and failures >= 0 else 0
    context = {"work": work, "order_id": order_id, "task_id": run_id, "attempt": retries + 1}
    if not isinstance(order_id, str) or re.fullmatch(ORDER_ID_PATTERN, order_id) is None:
        item = c.quarantine.put(
            f"task:{work}",
            {"orderId": repr(order_id)[:200]},
            "argument is not an order id",
            source="task",
        )
        log.warning("%s: argument is not an order id; quarantined as %s", work, item)
        return {"work": work, "quarantined": item, "reason": "argument is not an order id"}

    def again(countdown: float, failed: bool) -> Exception:
        """A retry of this run; ``failed`` when it counts as a transient failure."""
        kwargs = {"manual": manual, "failures": retries + (1 if failed else 0)}
        retry: Exception = task.retry(countdown=countdown, kwargs=kwargs, max_retries=RETRY_CEILING)
        return retry

    def give_up(reason: str, *, commit: bool = True) -> dict[str, Any]:
        item = c.quarantine.put(
            f"task:{work}",
            {"orderId": order_id, "taskId": run_id, "manual": manual},
            reason,
            order_id=order_id,
            source="task",
        )
        c.history.add(order_id, {"work": work, "quarantined": item, "reason": reason})
        if not manual and commit:
            c.feedbook.finish(run_id)
        log.error("order %s: %s quarantined (%s)", order_id, work, reason, extra=context)
        return {"work": work, "orderId": order_id, "quarantined": item, "reason": reason}

    # Counted per message, its retries included; every normal end settles its own count, so
    # what accumulates are the deliveries whose worker died under them.
    deliveries = c.redeliveries.bump(run_id)
    try:
        if deliveries > c.settings.redelivery_limit:
            if not manual:
                c.feedbook.start(work, order_id, run_id)
            return give_up(f"its worker was lost {deliveries - 1} times while running it")
        started = None if manual else c.feedbook.begin(work, order_id, run_id)
        if started is not None and _superseded(started, queued_seq):
            # Nothing taken, nothing to finish: the run set of a message without events is
            # never created (a duplicate copy of this message may be running on it).
            log.info("order %s: %s superseded by a later run", order_id, work, extra=context)
            return {"work": work, "orderId": order_id, "superseded": True}
        try:
            with c.locks.hold(order_id) as lease:
                outcome = run_work(work, order_id, c.ports, lease)
        except LockBusy as exc:
            raise again(backoff(0, exc.retry_after), failed=False) from None
        except StaleLockError:
            # Our lease expired under us and another run holds the order: run again.
            raise again(backoff(0, 1.0), failed=False) from None
        except TransientError as exc:
            if retries >= c.settings.max_retries:
                return give_up(f"still failing after {retries + 1} attempts: {exc}")
            log.info("order %s: %s will retry (%s)", order_id, work, exc, extra=context)
            raise again(backoff(retries, exc.retry_after), failed=True) from None
        except AuthenticationError as exc:
            # Credentials refused: an operator must act. Wait long, and in the end keep the
            # events uncommitted, so the work comes back once the configuration is fixed.
            log.error("order %s: %s: %s", order_id, work, exc, extra=context)
            if retries >= c.settings.max_retries:
                return give_up(str(exc), commit=False)
            raise again(float(MAX_COUNTDOWN), failed=True) from None
        except PermanentError as exc:
            return give_up(str(exc))
        except Exception as exc:
            # Not an error we know: retry it like a transient one, then quarantine, never loop.
            log.exception("order %s: %s failed unexpectedly", order_id, work, extra=context)
            if retries >= c.settings.max_retries:
                return give_up(f"unexpected {type(exc).__name__} after {retries + 1} attempts")
            raise again(backoff(retries), failed=True) from None
    finally:
        c.redeliveries.settle(run_id)
    if started is not None:
        c.feedbook.finish(run_id)
        c.feedbook.finished_reading(work, order_id, started.number)
    log.info(
        "order %s: %s done: %s", order_id, work, outcome.effects or "nothing to do", extra=context
    )
    return outcome.to_json()


def _superseded(started: Started, queued_seq: Any) -> bool:
    """A run of the same work on the order started after this message was queued and finished,
    and no events wait on this one."""
    if started.events or started.last_finished is None:
        return False
    if not isinstance(queued_seq, int) or isinstance(queued_seq, bool):
        return False
    return started.last_finished > queued_seq
