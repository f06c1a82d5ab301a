"""The fencing token of the run acting on an order, carried to the adapters that can enforce it.

A lease can expire under a paused worker; a stale holder's writes must then be refused (DESIGN.md,
Semantics 2). The service sets the token while it acts; the ERP adapter sends it with every
write, and an ERP that follows the contract refuses a token lower than the highest it has seen
for that order. A context variable keeps the ports' signatures free of it: one run, one order,
one token at a time per thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[tuple[str, int, Callable[[], None]] | None] = ContextVar("fence", default=None)


def _nothing() -> None:
    return None


@contextmanager
def fenced(order_id: str, token: int, ensure: Callable[[], None] = _nothing) -> Iterator[None]:
    """Writes for ``order_id`` inside this block carry ``token``; ``ensure`` (the lease's check)
    runs again at the last moment before a write that cannot carry the token (VTEX's)."""
    reset = _current.set((order_id, token, ensure))
    try:
        yield
    finally:
        _current.reset(reset)


def ensure_still_held() -> None:
    """At the last moment before a write: raise StaleLockError if the run's lease was lost
    (after a wait for the rate budget, say). Outside a fenced block it does nothing."""
    current = _current.get()
    if current is not None:
        current[2]()


def token_for(order_id: str) -> int | None:
    """The token of the run acting on ``order_id`` now, if any."""
    current = _current.get()
    if current is None or current[0] != order_id:
        return None
    return current[1]
