"""Beat tasks besides the feed: the sweeper and the scan of packed shipments."""

from __future__ import annotations

import logging

from tasks.feed import orders_queue_depth
from tasks.orders import CeleryDispatcher
from workers import bootstrap
from workers.app import app

log = logging.getLogger(__name__)

MAX_SWEEP_PAGES = 30  # VTEX's list is capped at 30 pages


@app.task(name="bridge.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    """Orders stuck in ready-for-handling or awaiting a cancellation answer, whatever happened to
    their events: start their work (collapsed with work already waiting)."""
    c = bootstrap.container()
    if orders_queue_depth() > c.settings.queue_depth_limit:
        # The workers are behind: what this sweep would start waits behind them anyway.
        return {"skipped": 1}
    dispatcher = CeleryDispatcher(c.feedbook.stamp)
    found = {"accept": 0, "cancel-check": 0, "started": 0}
    wanted = [
        ("accept", ["ready-for-handling"]),
        ("cancel-check", list(c.settings.cancellation_request_statuses)),
    ]
    for work, statuses in wanted:
        for page in range(1, MAX_SWEEP_PAGES + 1):
            listed = c.vtex.list_orders(statuses, page=page, per_page=100)
            for entry in listed.orders:
                found[work] += 1
                if c.feedbook.claim(work, entry.order_id, None):
                    dispatcher.enqueue(work, entry.order_id)
                    found["started"] += 1
            if page >= listed.pages:
                break
    if found["started"]:
        log.info("sweep: %s", found)
    return found


@app.task(name="bridge.preship.scan", ignore_result=True)
def scan_packed() -> dict[str, int]:
    """Ask the ERP for shipments packed and waiting; recheck each just before it ships. Like the
    feed poll and the sweep, it adds nothing while the order queue is over QUEUE_DEPTH_LIMIT."""
    c = bootstrap.container()
    if orders_queue_depth() > c.settings.queue_depth_limit:
        return {"skipped": 1}
    dispatcher = CeleryDispatcher(c.feedbook.stamp)
    started = 0
    pending = c.erp.pending_shipments()
    for order_id in pending:
        if c.feedbook.claim("recheck", order_id, None):
            dispatcher.enqueue("recheck", order_id)
            started += 1
    return {"waiting": len(pending), "started": started}
