"""Builds the adapters once per process: the one place real clients are wired to the ports.

Celery calls :func:`container` from ``worker_process_init`` (after the fork); beat and the command
line call it lazily. Nothing here runs at import time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import redis

from bridge.domain.ports import ErpPort
from bridge.domain.services import Ports
from bridge.erp.loader import ErpConfig, load_erp
from bridge.state.feedbook import FeedBook
from bridge.state.history import History
from bridge.state.ledger import Ledger
from bridge.state.locks import OrderLocks
from bridge.state.quarantine import Quarantine
from bridge.state.ratebudget import RedisRateBudget
from bridge.state.redelivery import RedeliveryCounter
from bridge.vtex.client import VtexClient
from workers.settings import Settings, get_settings


@dataclass
class Container:
    settings: Settings = field(repr=False)
    redis: redis.Redis
    vtex: VtexClient
    erp: ErpPort
    locks: OrderLocks
    ledger: Ledger
    budget: RedisRateBudget
    redeliveries: RedeliveryCounter
    feedbook: FeedBook
    quarantine: Quarantine
    history: History

    @property
    def ports(self) -> Ports:
        return Ports(
            vtex=self.vtex,
            erp=self.erp,
            ledger=self.ledger,
            history=self.history,
            request_statuses=frozenset(self.settings.cancellation_request_statuses),
        )


_container: Container | None = None
_lock = threading.Lock()


def build(settings: Settings) -> Container:
    client = redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )
    prefix = settings.key_prefix
    budget = RedisRateBudget(
        client,
        prefix,
        rate=settings.vtex_rate_per_minute / 60.0,
        burst=max(1.0, settings.vtex_rate_per_minute / 60.0),
    )
    vtex = VtexClient(
        settings.vtex_url,
        settings.vtex_app_key,
        settings.vtex_app_token,
        timeout=settings.http_timeout,
        budget=budget,
    )
    erp = load_erp(
        ErpConfig(
            base_url=settings.erp_base_url,
            token=settings.erp_token,
            timeout=settings.http_timeout,
            adapter=settings.erp_adapter,
        )
    )
    return Container(
        settings=settings,
        redis=client,
        vtex=vtex,
        erp=erp,
        locks=OrderLocks(client, prefix, ttl=settings.lock_ttl),
        ledger=Ledger(client, prefix),
        budget=budget,
        redeliveries=RedeliveryCounter(client, prefix),
        feedbook=FeedBook(client, prefix, pending_ttl=settings.pending_ttl),
        quarantine=Quarantine(client, prefix),
        history=History(client, prefix),
    )


def container() -> Container:
    """This process's adapters, built on first use."""
    global _container
    with _lock:
        if _container is None:
            _container = build(get_settings())
        return _container


def reset() -> None:
    """Forget the adapters (a forked child must not share its parent's connections)."""
    global _container
    with _lock:
        _container = None
