"""Clocks for the sandbox.

The store's clock runs ``scale`` times faster than wall time, so a scenario whose orders spend
half an hour in ``window-to-cancel`` plays out in seconds. The feed queue keeps its own clock in
real seconds: visibility timeouts are the consumer's concern and are never scaled.

Both clocks can be pushed forward (``advance``), which tests use instead of waiting.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


def iso(ts: float) -> str:
    """Render epoch seconds as VTEX does: ISO-8601 UTC with seven fraction digits."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


class StoreClock:
    """Store time (epoch seconds) running ``scale`` times faster than wall time.

    A scale of 0 freezes the clock: time then moves only through :meth:`advance`.
    """

    def __init__(self, scale: float = 120.0, *, epoch: float | None = None) -> None:
        if scale < 0:
            raise ValueError("time scale must be >= 0")
        self.scale = scale
        self._epoch = time.time() if epoch is None else epoch
        self._start = time.monotonic()
        self._offset = 0.0
        self._offset_real = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._epoch + (time.monotonic() - self._start) * self.scale + self._offset

    def real(self) -> float:
        """Real seconds for the feed queue (monotonic, with the queue's own advances)."""
        return time.monotonic() + self._offset_real

    def advance(self, store_seconds: float = 0.0, *, real_seconds: float = 0.0) -> None:
        with self._lock:
            self._offset += store_seconds
            self._offset_real += real_seconds

    def to_real(self, store_seconds: float) -> float:
        """How many wall seconds ``store_seconds`` of store time take (inf when frozen)."""
        return store_seconds / self.scale if self.scale else float("inf")
