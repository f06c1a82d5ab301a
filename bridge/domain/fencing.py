"""The fencing token of the run acting on an order, carried to the adapters that can enforce it.

A lease can expire under a paused worker; a stale holder's writes must then be refused (DESIGN.md,
Semantics 2). The service sets the token while it acts; the ERP adapter sends it with every
write, and an ERP that follows the contract refuses a token lower than the highest it has seen
for that order. A context variable keeps the ports' signatures free of it: one run, one order,
one token at a time per thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[tuple[str, int] | None] = ContextVar("fence", default=None)


@contextmanager
def fenced(order_id: str, token: int) -> Iterator[None]:
    """Writes for ``order_id`` inside this block carry ``token``."""
    reset = _current.set((order_id, token))
    try:
        yield
    finally:
        _current.reset(reset)


def token_for(order_id: str) -> int | None:
    """The token of the run acting on ``order_id`` now, if any."""
    current = _current.get()
    if current is None or current[0] != order_id:
        return None
    return current[1]
