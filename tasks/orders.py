"""Order work as Celery tasks: thin, each a call of :func:`tasks.runner.run_order_task`.

Call any of them by hand: ``celery -A workers.app call bridge.accept_order --args '["ID"]'``
(``manual`` defaults to True: a manual run always runs, whatever work is already waiting).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task
from redis.exceptions import RedisError

from tasks.runner import run_order_task
from workers.app import app


@app.task(name="bridge.accept_order", bind=True)
def accept_order(
    self: Task,
    order_id: str,
    manual: bool = True,
    failures: int = 0,
    queued_seq: int | None = None,
) -> dict[str, Any]:
    """``ready-for-handling``: the ERP imports the order, then VTEX start-handling (once)."""
    return run_order_task(self, "accept", order_id, manual, failures, queued_seq)


@app.task(name="bridge.check_cancelation", bind=True)
def check_cancelation(
    self: Task,
    order_id: str,
    manual: bool = True,
    failures: int = 0,
    queued_seq: int | None = None,
) -> dict[str, Any]:
    """A cancellation requested or done: stop the ERP and confirm, or deny with the reason."""
    return run_order_task(self, "cancel-check", order_id, manual, failures, queued_seq)


@app.task(name="bridge.preship_recheck", bind=True)
def preship_recheck(
    self: Task,
    order_id: str,
    manual: bool = True,
    failures: int = 0,
    queued_seq: int | None = None,
) -> dict[str, Any]:
    """Just before shipping: hold a cancelled or contested order, else invoice and release."""
    return run_order_task(self, "recheck", order_id, manual, failures, queued_seq)


@app.task(name="bridge.sync_invoice", bind=True)
def sync_invoice(
    self: Task,
    order_id: str,
    manual: bool = True,
    failures: int = 0,
    queued_seq: int | None = None,
) -> dict[str, Any]:
    """Every ERP invoice on VTEX and every VTEX invoice in the ERP, once per number."""
    return run_order_task(self, "invoice", order_id, manual, failures, queued_seq)


TASK_FOR_WORK: dict[str, Any] = {
    "accept": accept_order,
    "cancel-check": check_cancelation,
    "recheck": preship_recheck,
    "invoice": sync_invoice,
}


class CeleryDispatcher:
    """The feed poller's and sweeper's way to start order work (collapsed runs: manual=False,
    numbered from the feed book's sequence when they are queued)."""

    def __init__(self, stamp: Callable[[], int]) -> None:
        self._stamp = stamp

    def enqueue(self, work: str, order_id: str) -> None:
        kwargs: dict[str, Any] = {"manual": False, "queued_seq": self._number()}
        TASK_FOR_WORK[work].apply_async(args=[order_id], kwargs=kwargs)

    def _number(self) -> int | None:
        try:
            return self._stamp()
        except (RedisError, OSError):
            return None  # unnumbered: the run is never taken as superseded, it just runs
