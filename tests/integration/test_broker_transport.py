"""The workers' Redis transport survives Redis going away under a pending BRPOP.

Regression (chaos suite, ``redis-restart``): Celery collects then closes a broken connection;
with kombu's own channel the second close failed with an AttributeError and the worker exited.
"""

from __future__ import annotations

from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from workers.app import make_app
from workers.broker import TRANSPORT, transport_for
from workers.redis_server import EmbeddedRedis


def _poll_then_lose_redis(transport: str | None) -> Any:
    """A channel with a BRPOP on the wire (as in a worker's event loop), then Redis killed,
    then the broken connection cleaned up as Celery's consumer does: collect, then close."""
    broker = EmbeddedRedis().start()
    try:
        conn = Connection(broker.url, transport=transport)
        channel = conn.default_channel
        queue = Queue("orders", Exchange("orders"), routing_key="orders")
        conn.Producer(channel).publish({"n": 1}, routing_key="orders", declare=[queue])
        received: list[Any] = []
        consumer = conn.Consumer(
            queue, channel=channel, callbacks=[lambda _, m: received.append(m)]
        )
        consumer.consume()
        conn.drain_events(timeout=5)
        assert received and not received[0].acknowledged, "one message held, not acknowledged"
        conn.transport.cycle._register_BRPOP(channel)
        assert channel._in_poll, "the BRPOP should be pending"
        # A second channel with an auto-delete fanout queue, like a worker's remote control: its
        # close needs the server, fails first and stops the transport closing the others.
        control = conn.channel()
        broadcast = Queue("control", Exchange("control", type="fanout"), auto_delete=True)
        conn.Consumer(broadcast, channel=control, callbacks=[lambda *_: None]).consume()
        broker.kill()
        conn.collect(socket_timeout=1)
        conn.close()
        return channel
    finally:
        broker.stop()


def test_kombu_own_channel_fails_the_second_close() -> None:
    # What the repair is for: if this starts passing, kombu fixed it and the repair can go.
    with pytest.raises(AttributeError, match="hostname"):
        _poll_then_lose_redis(None)


def test_our_channel_closes_once_and_for_all() -> None:
    channel = _poll_then_lose_redis(TRANSPORT)
    assert channel.closed
    assert not channel._in_poll


def test_the_app_uses_it_for_redis_brokers_only() -> None:
    assert transport_for("redis://127.0.0.1:6379/0") == TRANSPORT
    assert transport_for("amqp://guest:guest@127.0.0.1:5672//") is None
    app = make_app()
    if app.conf.broker_url.startswith("redis://"):
        assert app.conf.broker_transport == TRANSPORT
