"""A test's handle on a running sandbox: its URLs, credentials and a few shortcuts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from sandbox.server import Sandbox

FEED_STATUSES = [
    "ready-for-handling",
    "handling",
    "cancellation-requested",
    "canceled",
    "invoiced",
]


@dataclass
class SandboxClient:
    sandbox: Sandbox
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def vtex_url(self) -> str:
        return self.sandbox.vtex.url

    @property
    def erp_url(self) -> str:
        return self.sandbox.erp.url

    @property
    def vtex_headers(self) -> dict[str, str]:
        cfg = self.sandbox.world.config
        return {"X-VTEX-API-AppKey": cfg.app_key, "X-VTEX-API-AppToken": cfg.app_token}

    @property
    def erp_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sandbox.world.config.erp_token}"}

    def vtex(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {**self.vtex_headers, **kw.pop("headers", {})}
        return self.http.request(method, self.vtex_url + path, headers=headers, timeout=10, **kw)

    def erp(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {**self.erp_headers, **kw.pop("headers", {})}
        return self.http.request(method, self.erp_url + path, headers=headers, timeout=10, **kw)

    def configure_feed(
        self, statuses: list[str] | None = None, visibility: int = 30
    ) -> requests.Response:
        return self.vtex(
            "POST",
            "/api/orders/feed/config",
            json={
                "filter": {"type": "FromWorkflow", "status": statuses or FEED_STATUSES},
                "queue": {
                    "visibilityTimeoutInSeconds": visibility,
                    "MessageRetentionPeriodInSeconds": 345_600,
                },
            },
        )

    def advance(self, store_seconds: float = 0, feed_seconds: float = 0) -> None:
        """Move the store clock (and the feed queue's clock) forward, then tick."""
        r = self.vtex(
            "POST", "/_sandbox/clock", json={"advance": store_seconds, "advance_feed": feed_seconds}
        )
        r.raise_for_status()

    def report(self) -> dict[str, Any]:
        r = self.vtex("GET", "/_sandbox/report")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def order(self, order_id: str) -> dict[str, Any]:
        r = self.vtex("GET", f"/api/oms/pvt/orders/{order_id}")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def order_ids(self) -> list[str]:
        return [p.order_id for p in self.sandbox.world.scenario.orders]

    def drain_feed(self, commit: bool = True) -> list[dict[str, str]]:
        """Read the feed until a read returns nothing twice in a row; commit what was read."""
        seen: list[dict[str, str]] = []
        empty = 0
        while empty < 2:
            batch = self.vtex("GET", "/api/orders/feed?maxlot=10").json()
            if not batch:
                empty += 1
                continue
            empty = 0
            seen.extend(batch)
            if commit:
                self.vtex(
                    "POST", "/api/orders/feed", json={"handles": [i["handle"] for i in batch]}
                )
        return seen


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.01)
