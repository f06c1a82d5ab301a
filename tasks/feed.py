"""The feed poller (beat, every POLL_INTERVAL) and the feed configuration watchdog."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from kombu.exceptions import ChannelError

from bridge.domain.errors import BridgeError
from bridge.domain.feed import FeedPoller
from tasks.orders import CeleryDispatcher
from workers import bootstrap
from workers.app import ORDERS_QUEUE, app

log = logging.getLogger(__name__)


def _owner() -> str:
    """This pool process (the module is imported before the fork: compute it per call)."""
    return f"{socket.gethostname()}:{os.getpid()}"


_config_checked_at = 0.0
CONFIG_CHECK_EVERY = 60.0


def ensure_feed_config(force: bool = False) -> str:
    """Create the feed configuration from the settings when VTEX has none (404)."""
    global _config_checked_at
    now = time.monotonic()
    if not force and now - _config_checked_at < CONFIG_CHECK_EVERY:
        return "checked recently"
    c = bootstrap.container()
    if c.vtex.get_feed_config() is None:
        c.vtex.put_feed_config(c.settings.feed_statuses, c.settings.feed_visibility_timeout)
        log.warning("VTEX had no feed configuration for this appKey: created it")
        _config_checked_at = now
        return "created"
    _config_checked_at = now
    return "present"


def orders_queue_depth(broker_url: str | None = None) -> int:
    """Messages waiting in the order work queue (Redis or RabbitMQ); 0 when it does not exist
    yet (the Redis transport answers a passive declare of an empty queue with 404)."""
    try:
        with app.connection_for_read(broker_url) as conn:
            declared = conn.default_channel.queue_declare(queue=ORDERS_QUEUE, passive=True)
            return int(declared.message_count)
    except ChannelError:
        return 0
    except OSError as exc:
        log.warning("could not read the order queue's depth (%s); polling on", exc)
        return 0


@app.task(name="bridge.feed.poll", ignore_result=True)
def poll() -> dict[str, Any]:
    """Drain the feed in batches of 10 until empty, out of time, or the workers fall behind."""
    c = bootstrap.container()
    budget = c.settings.feed_time_budget
    if not c.feedbook.poller_lease(_owner(), ttl=budget + 30):
        return {"skipped": "another poller holds the lease"}
    try:
        try:
            ensure_feed_config()
        except BridgeError as exc:
            # Reading the feed may still work (or fail more clearly): do not stop at the check.
            log.warning("could not check the feed configuration: %s", exc)
        started = time.monotonic()
        limit = c.settings.queue_depth_limit
        poller = FeedPoller(
            c.vtex,
            c.feedbook,
            c.quarantine,
            CeleryDispatcher(c.feedbook.stamp),
            frozenset(c.settings.cancellation_request_statuses),
        )
        report = poller.poll(
            out_of_time=lambda: time.monotonic() - started > budget,
            overloaded=lambda: orders_queue_depth() > limit,
        )
    finally:
        c.feedbook.release_poller(_owner())
    if report.items:
        log.info("feed: %s", report.to_json())
    return report.to_json()


@app.task(name="bridge.feed.watchdog", ignore_result=True)
def watchdog() -> str:
    """VTEX deletes a feed that saw no event for a retention period: recreate it."""
    return ensure_feed_config(force=True)
