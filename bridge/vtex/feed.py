"""The Feed v3 and hook calls of the VTEX client, their request bodies and the models read back.

:class:`FeedCalls` is the part of :class:`bridge.vtex.client.VtexClient` the feed poller and the
watchdog use. Inputs are checked before anything is sent: a status that is not a status, a
visibility timeout VTEX would refuse, a hook without its ``key`` header.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bridge.domain.models import STATE_PATTERN
from bridge.vtex.errors import VtexNotFound
from bridge.vtex.transport import VtexTransport, bad_response, first_problem, json_body

log = logging.getLogger("bridge.vtex.client")

FEED = "/api/orders/feed"
FEED_CONFIG = "/api/orders/feed/config"
HOOK_CONFIG = "/api/orders/hook/config"

MAX_VISIBILITY_TIMEOUT = 43_200  # seconds, VTEX's documented maximum
MIN_RETENTION = 345_600  # 4 days
MAX_RETENTION = 1_209_600  # 14 days
MAX_LOT = 10  # items per feed read


class FeedConfig(BaseModel):
    """The feed configuration VTEX holds for this appKey, with the queue's current figures."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    filter_type: str
    statuses: list[str] = Field(default_factory=list)
    expression: str | None = None
    visibility_timeout: int | None = None
    retention: int | None = None
    quantity: int | None = None
    oldest_message_age: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_wire(cls, data: Any) -> Any:
        # VTEX nests the settings: {"filter": {...}, "queue": {...}, "quantity", "approximate..."}
        if not isinstance(data, Mapping) or "filter" not in data:
            return data
        flt = data.get("filter")
        queue = data.get("queue") or {}
        if not isinstance(flt, Mapping) or not isinstance(queue, Mapping):
            return {"filter_type": None}  # fails validation with a clear message
        return {
            "filter_type": flt.get("type"),
            "statuses": flt.get("status") or [],
            "expression": flt.get("expression"),
            "visibility_timeout": queue.get("visibilityTimeoutInSeconds"),
            "retention": queue.get("MessageRetentionPeriodInSeconds"),
            "quantity": data.get("quantity"),
            "oldest_message_age": data.get("approximateAgeOfOldestMessageInSeconds"),
        }


class FeedCalls(VtexTransport):
    """The Feed v3 (read, commit, configuration) and the hook configuration."""

    def get_feed(self, maxlot: int = MAX_LOT) -> list[dict[str, Any]]:
        """Up to ``maxlot`` feed items, raw: the caller validates each one, so one bad item is
        quarantined alone. Items that are not even JSON objects (no handle) are dropped."""
        if not 1 <= maxlot <= MAX_LOT:
            raise ValueError(f"maxlot must be 1..{MAX_LOT}")
        response = self._call("GET", FEED, params={"maxlot": maxlot})
        items = json_body(response, list, "a list of feed items")
        kept = [item for item in items if isinstance(item, dict)]
        if len(kept) < len(items):
            log.warning("VTEX feed: dropped %d items that are not objects", len(items) - len(kept))
        return kept

    def commit(self, handles: Sequence[str]) -> None:
        """Remove items from the feed by their (most recent) handles; nothing to do for none."""
        checked = checked_handles(handles)
        if checked:
            self._call("POST", FEED, body={"handles": checked})

    def get_feed_config(self) -> FeedConfig | None:
        """The feed configuration, or None when this appKey has none."""
        try:
            response = self._call("GET", FEED_CONFIG)
        except VtexNotFound:
            return None
        try:
            return FeedConfig.model_validate(json_body(response, dict, "a feed configuration"))
        except ValidationError as exc:
            problem = first_problem(exc)
            raise bad_response(
                response, f"the feed configuration is unreadable: {problem}"
            ) from None

    def put_feed_config(
        self, statuses: Sequence[str], visibility_timeout: int, retention: int = MIN_RETENTION
    ) -> None:
        """Create or replace the feed (a new feed only sees changes made after it exists)."""
        body = feed_config_body(statuses, visibility_timeout, retention)
        self._call("POST", FEED_CONFIG, body=body)

    def delete_feed_config(self) -> None:
        """Delete the feed configuration; already gone counts as done."""
        with contextlib.suppress(VtexNotFound):
            self._call("DELETE", FEED_CONFIG)

    def get_hook_config(self) -> dict[str, Any] | None:
        """The hook configuration (its headers hold the receiver's secret: never log it)."""
        try:
            response = self._call("GET", HOOK_CONFIG)
        except VtexNotFound:
            return None
        config: dict[str, Any] = json_body(response, dict, "a hook configuration")
        return config

    def set_hook_config(
        self, url: str, statuses: Sequence[str], headers: Mapping[str, str]
    ) -> None:
        """Create or replace the hook. ``headers`` must include ``"key"`` (VTEX's spec requires
        it; put the receiver's secret there). VTEX pings ``url`` first and refuses (400) unless
        it answers 200."""
        self._call("POST", HOOK_CONFIG, body=hook_config_body(url, statuses, headers))

    def delete_hook_config(self) -> None:
        """Delete the hook configuration; already gone counts as done."""
        with contextlib.suppress(VtexNotFound):
            self._call("DELETE", HOOK_CONFIG)


def feed_config_body(
    statuses: Sequence[str], visibility_timeout: int, retention: int
) -> dict[str, Any]:
    """``POST /api/orders/feed/config``: a FromWorkflow filter on ``statuses``."""
    if not 0 < visibility_timeout <= MAX_VISIBILITY_TIMEOUT:
        raise ValueError(
            f"visibility_timeout must be 1..{MAX_VISIBILITY_TIMEOUT} seconds, "
            f"got {visibility_timeout}"
        )
    if not MIN_RETENTION <= retention <= MAX_RETENTION:
        raise ValueError(
            f"retention must be {MIN_RETENTION}..{MAX_RETENTION} seconds, got {retention}"
        )
    return {
        "filter": {"type": "FromWorkflow", "status": checked_statuses(statuses)},
        "queue": {
            "visibilityTimeoutInSeconds": int(visibility_timeout),
            "MessageRetentionPeriodInSeconds": int(retention),
        },
    }


def hook_config_body(
    url: str, statuses: Sequence[str], headers: Mapping[str, str]
) -> dict[str, Any]:
    """``POST /api/orders/hook/config``. VTEX's spec requires a header literally named ``key``."""
    if not url.startswith(("https://", "http://")) or len(url) > 2048:
        raise ValueError("the hook url must be an http(s) URL of at most 2048 characters")
    if not isinstance(headers.get("key"), str) or not headers["key"]:
        raise ValueError(
            'hook headers must include a non-empty "key" (VTEX\'s spec requires it); pass the '
            "receiver's secret there as well"
        )
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ValueError("hook headers must map header names to strings")
    return {
        "filter": {"type": "FromWorkflow", "status": checked_statuses(statuses)},
        "hook": {"url": url, "headers": dict(headers)},
    }


def checked_statuses(statuses: Sequence[str]) -> list[str]:
    """``statuses`` as a list, each a VTEX status string (VTEX silently ignores a typo)."""
    if isinstance(statuses, str) or not statuses:
        raise ValueError("statuses must be a non-empty list of VTEX status strings")
    bad = [s for s in statuses if not isinstance(s, str) or not re.fullmatch(STATE_PATTERN, s)]
    if bad:
        raise ValueError(f"not VTEX statuses: {', '.join(repr(s)[:70] for s in bad[:5])}")
    return list(statuses)


def checked_handles(handles: Sequence[str]) -> list[str]:
    """Feed handles to commit, in order and without repeats; each a non-empty string."""
    if isinstance(handles, str):
        raise ValueError("handles must be a list of feed handles, not one string")
    if not all(isinstance(h, str) and h for h in handles):
        raise ValueError("every feed handle must be a non-empty string")
    return list(dict.fromkeys(handles))
