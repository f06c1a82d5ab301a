"""The Redis broker transport the workers use: kombu's, with one repair for a lost connection.

When Redis goes away while a worker waits on a BRPOP, Celery cleans up the broken connection in
two steps: it collects the connection (closing its channels, where one channel's failure stops
the rest being closed, then detaching the transport from its settings), then closes it. kombu's
Redis channel starts closing by reading the pending BRPOP reply; on a dead connection that read
raises the connection error *before* the channel marks itself closed. The first step swallows the
error and detaches the transport, so the second step closes the same channel again, now without
settings, and fails with ``AttributeError: 'NoneType' object has no attribute 'hostname'``,
which Celery treats as unrecoverable: the worker exits instead of reconnecting (seen in the chaos
suite's ``redis-restart``).

This channel drops a pending BRPOP whose connection died and goes on closing, so the first step
closes it for good and the worker reconnects as it should. Messages it had not acknowledged stay
in Redis's unacked index and come back after the visibility timeout, as with any lost worker.
"""

from __future__ import annotations

import contextlib
from queue import Empty

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def close(self) -> None:
        if self._in_poll:
            # A dead connection loses the BRPOP's reply with it (``_brpop_read`` drops the poll
            # either way), which is no reason to leave the channel open.
            with contextlib.suppress(Empty, *self.connection_errors):
                self._brpop_read()  # type: ignore[no-untyped-call]
        super().close()  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    Channel = Channel


# Celery's ``broker_transport`` for a ``redis://`` broker URL.
TRANSPORT = "workers.broker:Transport"


def transport_for(broker_url: str) -> str | None:
    """The transport class for ``broker_url``: ours for plain Redis, else kombu's own choice."""
    return TRANSPORT if broker_url.startswith("redis://") else None
