"""The Celery application and its configuration (DESIGN.md, "Celery, as the anchors advise").

- Late acknowledgement and ``task_reject_on_worker_lost``: a message whose worker died goes back to
  the queue; the tasks are idempotent and count redeliveries (quarantine after the limit).
- Prefetch 1, JSON only, reconnect to the broker forever (on Redis, through a transport that
  survives the broker going away: ``workers/broker.py``).
- Two queues: ``feed`` (polling, commits, sweeps) and ``orders`` (order work), so polling never
  waits behind order work when a worker consumes ``feed`` on its own (``-Q feed``).
- No countdown longer than the Redis visibility timeout; task time limits below it.

Importing this module reads only broker settings; the full settings are checked when a worker or
beat starts, which stops with one line naming the variable when something is wrong.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init, worker_process_init
from kombu import Queue  # type: ignore[attr-defined]

from workers.broker import transport_for
from workers.settings import Settings, SettingsError, get_settings

_settings: Settings | None
try:
    _settings = get_settings()
except SettingsError:
    _settings = None

# A message not acknowledged within this many seconds is delivered again by the Redis transport
# (BROKER_VISIBILITY_TIMEOUT). Task time limits stay below it (TASK_TIME_LIMIT), and a retry
# waits at most half of what is left, so a countdown and its run fit in the message's visibility.
VISIBILITY_TIMEOUT = _settings.broker_visibility_timeout if _settings else 900
TASK_TIME_LIMIT = _settings.task_time_limit if _settings else 300
TASK_SOFT_TIME_LIMIT = max(1, TASK_TIME_LIMIT * 4 // 5)
MAX_COUNTDOWN = max(1, min(600, (VISIBILITY_TIMEOUT - TASK_TIME_LIMIT) // 2))
if TASK_TIME_LIMIT >= VISIBILITY_TIMEOUT:
    logging.getLogger(__name__).warning(
        "TASK_TIME_LIMIT (%ss) is not below BROKER_VISIBILITY_TIMEOUT (%ss): a task still "
        "running is delivered again (the work stays idempotent, but runs twice)",
        TASK_TIME_LIMIT,
        VISIBILITY_TIMEOUT,
    )

FEED_QUEUE = "feed"
ORDERS_QUEUE = "orders"


def _broker_url(settings: Settings | None) -> str:
    if settings is not None:
        return settings.broker
    return os.environ.get("BROKER_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def _backend_url(settings: Settings | None) -> str:
    if settings is not None:
        return settings.redis_url
    return os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def beat_schedule(settings: Settings | None) -> dict[str, Any]:
    poll = settings.poll_interval if settings else 2.0
    sweep = settings.sweep_interval if settings else 60.0
    preship = settings.preship_interval if settings else 5.0
    return {
        # Each expires after its own interval: a tick that waited that long is not worth running.
        "poll-feed": {"task": "bridge.feed.poll", "schedule": poll, "options": {"expires": poll}},
        "sweep-ready-for-handling": {
            "task": "bridge.sweep",
            "schedule": sweep,
            "options": {"expires": sweep},
        },
        "scan-packed-shipments": {
            "task": "bridge.preship.scan",
            "schedule": preship,
            "options": {"expires": preship},
        },
        "watch-feed-config": {
            "task": "bridge.feed.watchdog",
            "schedule": 60.0,
            "options": {"expires": 60.0},
        },
    }


def make_app() -> Celery:
    settings = _settings
    app = Celery("vtexbridge", include=["tasks.orders", "tasks.feed", "tasks.maintenance"])
    broker_url = _broker_url(settings)
    app.conf.update(
        broker_url=broker_url,
        # kombu's Redis transport with a repair that keeps a worker alive when Redis goes away
        # (workers/broker.py); other brokers use kombu's own transport.
        broker_transport=transport_for(broker_url),
        result_backend=_backend_url(settings),
        result_expires=3600,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=TASK_TIME_LIMIT,
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT,
            # Reconnect quickly after a broker restart (kombu's default backs off to 30 s).
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 2,
        },
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # reconnect forever
        task_default_queue=ORDERS_QUEUE,
        task_queues=(Queue(FEED_QUEUE), Queue(ORDERS_QUEUE)),
        task_routes={
            "bridge.feed.*": {"queue": FEED_QUEUE},
            "bridge.sweep": {"queue": FEED_QUEUE},
            "bridge.preship.scan": {"queue": FEED_QUEUE},
        },
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        worker_hijack_root_logger=False,
        beat_schedule=beat_schedule(settings),
    )
    return app


app = make_app()


def _require_settings(**_: Any) -> None:
    try:
        get_settings()
    except SettingsError as exc:
        print(f"vtexbridge: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


@worker_init.connect
def _check_worker(**kwargs: Any) -> None:
    _require_settings(**kwargs)


@beat_init.connect
def _check_beat(**kwargs: Any) -> None:
    _require_settings(**kwargs)


@worker_process_init.connect
def _build_adapters(**_: Any) -> None:
    # Adapters are built once per worker process, after the fork, never at import.
    from workers import bootstrap

    bootstrap.reset()
    bootstrap.container()
