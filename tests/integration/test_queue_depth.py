"""Backpressure reads the order queue's depth, on a broker where the queue may not exist yet."""

from __future__ import annotations

from kombu import Connection, Exchange, Queue

from tasks.feed import orders_queue_depth
from workers.app import ORDERS_QUEUE
from workers.redis_server import EmbeddedRedis


def test_an_order_queue_that_does_not_exist_yet_is_empty_not_an_error() -> None:
    # Regression: the Redis transport answers a passive declare of an empty queue with 404,
    # which stopped every feed poll until some order work was queued.
    with EmbeddedRedis() as broker:
        assert orders_queue_depth(broker.url) == 0


def test_the_depth_counts_the_messages_waiting_for_order_work() -> None:
    with EmbeddedRedis() as broker, Connection(broker.url) as conn:
        queue = Queue(ORDERS_QUEUE, Exchange(ORDERS_QUEUE), routing_key=ORDERS_QUEUE)
        producer = conn.Producer(serializer="json")
        for n in range(3):
            producer.publish(
                {"n": n}, exchange=queue.exchange, routing_key=ORDERS_QUEUE, declare=[queue]
            )
        assert orders_queue_depth(broker.url) == 3
