"""VTEX's hook side: the ping handshake on save, and notifications with retries.

On save VTEX POSTs ``{"hookConfig": "ping"}`` to the URL with the configured headers; anything but
200 fails the save. Each notification is POSTed with the configured headers; a failure (not 200,
an error, or slower than the timeout, 5 s at VTEX) is retried with growing delays.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from sandbox.world import HookConfig

log = logging.getLogger(__name__)


class PingFailed(Exception):
    """The receiver did not answer the ping with 200."""


def ping(url: str, headers: dict[str, str], timeout: float) -> None:
    try:
        answer = requests.post(url, json={"hookConfig": "ping"}, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise PingFailed(f"the hook URL did not answer the ping: {exc.__class__.__name__}") from exc
    if answer.status_code != 200:
        raise PingFailed(f"the hook URL answered the ping with {answer.status_code}, not 200")


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    url: str = field(compare=False)
    headers: dict[str, str] = field(compare=False)
    body: dict[str, Any] = field(compare=False)
    attempt: int = field(compare=False, default=1)


@dataclass
class HookStats:
    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0


class HookSender:
    """Delivers notifications from one background thread, retrying with growing delays."""

    def __init__(self, *, timeout: float, retry_base: float, max_attempts: int) -> None:
        self.timeout = timeout
        self.retry_base = retry_base
        self.max_attempts = max_attempts
        self.stats = HookStats()
        self._heap: list[_Delivery] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="hook-sender", daemon=True)
        self._thread.start()

    def __call__(self, hook: HookConfig, body: dict[str, Any]) -> None:
        with self._cond:
            heapq.heappush(
                self._heap,
                _Delivery(time.monotonic(), next(self._seq), hook.url, dict(hook.headers), body),
            )
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=self.timeout + 1)
        self._session.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (
                    not self._heap or self._heap[0].due > time.monotonic()
                ):
                    wait = self._heap[0].due - time.monotonic() if self._heap else None
                    self._cond.wait(timeout=wait)
                if self._stopped:
                    return
                delivery = heapq.heappop(self._heap)
            self._send(delivery)

    def _send(self, d: _Delivery) -> None:
        started = time.monotonic()
        try:
            answer = self._session.post(d.url, json=d.body, headers=d.headers, timeout=self.timeout)
            # requests' timeout bounds each read, not the call: VTEX counts the whole answer.
            ok = answer.status_code == 200 and time.monotonic() - started <= self.timeout
        except requests.RequestException:
            ok = False
        if ok:
            self.stats.delivered += 1
            return
        self.stats.failed_attempts += 1
        if d.attempt >= self.max_attempts:
            self.stats.given_up += 1
            log.warning(
                "hook notification for %s given up after %d attempts",
                d.body.get("OrderId"),
                d.attempt,
            )
            return
        delay = self.retry_base * 2 ** (d.attempt - 1)
        with self._cond:
            heapq.heappush(
                self._heap,
                _Delivery(
                    time.monotonic() + delay,
                    next(self._seq),
                    d.url,
                    d.headers,
                    d.body,
                    d.attempt + 1,
                ),
            )
            self._cond.notify()
