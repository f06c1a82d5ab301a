"""The Redis the tests (and `make run`) use: REDIS_URL, a local server, or an embedded one."""

from __future__ import annotations

import redis

from workers.redis_server import EmbeddedRedis, answers


def test_embedded_redis_serves_on_a_free_port_and_cleans_up_after_itself() -> None:
    server = EmbeddedRedis().start()
    try:
        client = redis.Redis(port=server.port)
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
        assert answers("127.0.0.1", server.port)
        client.close()
    finally:
        server.stop()
    assert not answers("127.0.0.1", server.port)
    assert not server.dir.exists()


def test_embedded_redis_with_persistence_keeps_data_across_a_restart() -> None:
    server = EmbeddedRedis(persistence=True).start()
    try:
        client = redis.Redis(port=server.port)
        client.set("order", "kept")
        client.close()
        server.stop(keep_data=True)
        assert not answers("127.0.0.1", server.port)
        server.start()
        assert redis.Redis(port=server.port).get("order") == b"kept"
    finally:
        server.stop()


def test_each_test_gets_its_own_key_prefix(redis_client: redis.Redis, key_prefix: str) -> None:
    redis_client.set(key_prefix + "a", "1")
    assert key_prefix.startswith("test:")
    assert redis_client.get(key_prefix + "a") == "1"
