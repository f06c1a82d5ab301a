"""Shared fixtures: Redis (REDIS_URL, else local 6379, else embedded) and a running sandbox."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
import redis

from sandbox.faults import FaultPlan
from sandbox.scenario import ScenarioConfig
from sandbox.server import Sandbox
from sandbox.world import SandboxConfig
from tests.sandbox_client import SandboxClient
from workers.redis_server import EmbeddedRedis, answers


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    if answers("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are removed afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    keys = list(redis_client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        redis_client.delete(*keys)


def redis_host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., SandboxClient]]:
    """Start sandboxes on free ports; frozen clock (time_scale=0) unless asked otherwise.

    Keyword arguments: ``time_scale``, ``faults`` (a spec string), and any SandboxConfig field;
    ``orders``/``seed`` and other ScenarioConfig fields go in ``scenario=ScenarioConfig(...)``.
    """
    started: list[Sandbox] = []

    def make(*, time_scale: float = 0.0, faults: str = "", **config: Any) -> SandboxClient:
        config.setdefault("scenario", ScenarioConfig(orders=5, seed=7))
        config.setdefault("duplicate_share", 0.0)
        config.setdefault("partial_share", 0.0)
        box = Sandbox(
            SandboxConfig(**config), time_scale=time_scale, faults=FaultPlan.parse(faults)
        ).start()
        started.append(box)
        return SandboxClient(box)

    yield make
    for box in started:
        box.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., SandboxClient]) -> SandboxClient:
    return make_sandbox()
