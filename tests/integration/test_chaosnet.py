"""The chaos proxy between a client and a real Redis: latency, partitions, resets, a closed port."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bench.chaosnet import THREAD_PREFIX, ChaosProxy
from tests.conftest import redis_host_port
from tests.sandbox_client import wait_until


@pytest.fixture
def proxy(redis_url: str) -> Iterator[ChaosProxy]:
    with ChaosProxy(redis_host_port(redis_url)) as running:
        yield running


def client(proxy: ChaosProxy, redis_url: str, **kw: Any) -> redis.Redis:
    """A client through the proxy that fails at once: redis-py would otherwise retry 3 times."""
    kw.setdefault("socket_timeout", 2.0)
    kw.setdefault("socket_connect_timeout", 1.0)
    return redis.Redis.from_url(proxy.url_for(redis_url), retry=Retry(NoBackoff(), 0), **kw)


def resp(*args: str) -> bytes:
    """One command in Redis's wire protocol."""
    parts = [f"*{len(args)}\r\n"] + [f"${len(a)}\r\n{a}\r\n" for a in args]
    return "".join(parts).encode()


def read_exactly(sock: socket.socket, size: int, timeout: float = 3.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def proxy_threads(proxy: ChaosProxy) -> list[str]:
    prefix = f"{THREAD_PREFIX}-{proxy.port}-"
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def test_ping_goes_through_the_proxy_and_is_counted(proxy: ChaosProxy, redis_url: str) -> None:
    # given a client that talks to Redis through the proxy
    r = client(proxy, redis_url)
    # when it pings
    assert r.ping()
    # then one connection was accepted and bytes went both ways
    stats = proxy.stats()
    assert (stats.accepted, stats.open, stats.resets) == (1, 1, 0)
    assert stats.bytes_to_upstream >= len(resp("PING"))
    assert stats.bytes_to_client >= len(b"+PONG\r\n")
    r.close()
    wait_until(lambda: proxy.stats().open == 0, timeout=3, what="the closed client's connection")


def test_url_for_swaps_host_and_port_and_keeps_credentials_and_db(proxy: ChaosProxy) -> None:
    url = proxy.url_for("redis://user:s3cret@redis.internal:6380/4?health_check_interval=2")
    assert url == f"redis://user:s3cret@127.0.0.1:{proxy.port}/4?health_check_interval=2"


def test_latency_delays_each_direction(proxy: ChaosProxy, redis_url: str) -> None:
    # given an established connection
    r = client(proxy, redis_url)
    assert r.ping()
    # when every chunk is delayed by 0.2 s
    proxy.latency(0.2)
    started = time.monotonic()
    assert r.ping()
    slow = time.monotonic() - started
    # then a round trip takes two delays, one each way; pass-through makes it fast again
    proxy.pass_through()
    started = time.monotonic()
    assert r.ping()
    fast = time.monotonic() - started
    assert slow >= 0.4
    assert fast < 0.2
    r.close()


def test_latency_with_jitter_keeps_the_order_of_chunks(proxy: ChaosProxy) -> None:
    # given jitter as large as the latency itself, so later chunks often draw shorter delays
    proxy.latency(0.03, jitter=0.03)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=3) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # when commands go out one send at a time
        expected = b""
        for i in range(40):
            sock.sendall(resp("ECHO", f"m{i:02}"))
            expected += f"$3\r\nm{i:02}\r\n".encode()
        # then the replies come back whole and in order
        assert read_exactly(sock, len(expected)) == expected


def test_blackhole_times_clients_out_and_a_new_connection_works_after(
    proxy: ChaosProxy, redis_url: str
) -> None:
    # given an established client with a short socket timeout
    r = client(proxy, redis_url, socket_timeout=0.5)
    assert r.ping()
    # when the network goes into a black hole
    proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        r.ping()
    # then the command waited out the timeout; a new connection is accepted but hangs too
    assert time.monotonic() - started >= 0.5
    accepted = proxy.stats().accepted
    with pytest.raises(redis.TimeoutError):
        client(proxy, redis_url, socket_timeout=0.3).ping()
    assert proxy.stats().accepted == accepted + 1
    # and once it lifts, a new connection works
    proxy.pass_through()
    fresh = client(proxy, redis_url)
    assert fresh.ping()
    r.close()
    fresh.close()


def test_blackhole_holds_bytes_and_delivers_them_when_it_lifts(proxy: ChaosProxy) -> None:
    # given a connection made during a partition, with a command sent into it
    proxy.blackhole()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=3) as sock:
        sock.sendall(resp("PING"))
        # then nothing answers while the partition lasts
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(16)
        assert proxy.stats().bytes_to_upstream == 0
        # when the partition heals, the held command is delivered and answered, like TCP would
        proxy.pass_through()
        assert read_exactly(sock, 7) == b"+PONG\r\n"


def test_reset_all_breaks_an_established_connection_and_a_retry_reconnects(
    proxy: ChaosProxy, redis_url: str
) -> None:
    # given a client holding one established connection (a pool would test a connection it
    # checks out and quietly replace it), and a bare socket beside it
    r = client(proxy, redis_url, single_connection_client=True)
    assert r.ping()
    bare = socket.create_connection(("127.0.0.1", proxy.port), timeout=3)
    wait_until(lambda: proxy.stats().open == 2, timeout=3, what="two open connections")
    # when every connection is reset
    proxy.reset_all()
    # then the client's next command fails, and a retry on a new connection works
    with pytest.raises(redis.ConnectionError):
        r.ping()
    assert r.ping()
    stats = proxy.stats()
    assert (stats.resets, stats.accepted, stats.open) == (2, 3, 1)
    # and the close was abrupt: an RST, not an orderly end of stream
    with pytest.raises(ConnectionResetError):
        bare.recv(16)
    bare.close()
    r.close()


def test_reset_all_breaks_a_blocking_command_in_flight(
    proxy: ChaosProxy, redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    # given a worker blocked in BLPOP through the proxy, as a Celery worker waits on its queue
    r = client(proxy, redis_url, socket_timeout=10)
    outcome: list[BaseException | object] = []

    def blpop() -> None:
        try:
            outcome.append(r.blpop([key_prefix + "queue"], timeout=8))
        except redis.RedisError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=blpop)
    worker.start()
    wait_until(
        lambda: any(c.get("cmd") == "blpop" for c in redis_client.client_list()),
        timeout=3,
        what="the BLPOP to reach Redis",
    )
    # when the connections are reset
    started = time.monotonic()
    proxy.reset_all()
    worker.join(timeout=5)
    # then the blocked command fails at once instead of waiting out its timeout
    assert not worker.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], redis.ConnectionError)
    assert time.monotonic() - started < 2
    r.close()


def test_refuse_closes_the_port_until_pass_through(proxy: ChaosProxy, redis_url: str) -> None:
    # given an established connection
    established = client(proxy, redis_url, single_connection_client=True)
    assert established.ping()
    # when the proxy refuses
    proxy.refuse()
    # then new connects are refused, while the established connection carries on
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
    with pytest.raises(redis.ConnectionError):
        client(proxy, redis_url).ping()
    assert established.ping()
    # and pass-through listens again on the same port
    proxy.pass_through()
    fresh = client(proxy, redis_url)
    assert fresh.ping()
    established.close()
    fresh.close()


def test_peers_closing_at_any_time_free_their_connections(proxy: ChaosProxy) -> None:
    # given one client that says QUIT (Redis closes), and one that vanishes with RST while a
    # delayed reply is still on its way to it
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=3) as quitter:
        quitter.sendall(resp("QUIT"))
        assert read_exactly(quitter, 5) == b"+OK\r\n"
        assert read_exactly(quitter, 1) == b""  # the close came through
    proxy.latency(0.2)
    rude = socket.create_connection(("127.0.0.1", proxy.port), timeout=3)
    rude.sendall(resp("PING"))
    wait_until(lambda: proxy.stats().bytes_to_upstream > 14, timeout=3, what="the PING upstream")
    rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rude.close()
    # then both connections and their threads go away, and the proxy still serves
    wait_until(lambda: proxy.stats().open == 0, timeout=3, what="both connections to close")
    wait_until(lambda: proxy_threads(proxy) == [f"{THREAD_PREFIX}-{proxy.port}-accept"], 3)
    proxy.pass_through()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=3) as sock:
        sock.sendall(resp("PING"))
        assert read_exactly(sock, 7) == b"+PONG\r\n"


def test_an_upstream_that_is_down_gets_the_client_closed_and_counted() -> None:
    # given a proxy in front of a port where nothing listens
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]
    with ChaosProxy(("127.0.0.1", dead_port)) as proxy:
        # when a client connects and talks, then the proxy accepts it and closes it abruptly:
        # the reset may even beat connect() home
        with (
            pytest.raises(ConnectionError),
            socket.create_connection(("127.0.0.1", proxy.port), timeout=3) as sock,
        ):
            sock.sendall(resp("PING"))
            sock.recv(16)
        stats = proxy.stats()
        assert (stats.accepted, stats.upstream_failures, stats.open) == (1, 1, 0)


def test_stop_leaves_no_proxy_threads_alive(redis_url: str) -> None:
    # given a proxy with connections in every state: idle, delayed, held in a black hole
    proxy = ChaosProxy(redis_host_port(redis_url)).start()
    idle = client(proxy, redis_url, single_connection_client=True)
    assert idle.ping()
    proxy.latency(0.5)
    delayed = socket.create_connection(("127.0.0.1", proxy.port), timeout=3)
    delayed.sendall(resp("PING"))
    proxy.blackhole()
    held = socket.create_connection(("127.0.0.1", proxy.port), timeout=3)
    held.sendall(resp("PING"))
    wait_until(lambda: proxy.stats().open == 3, timeout=3, what="three open connections")
    assert len(proxy_threads(proxy)) == 1 + 2 * 3
    # when it stops
    started = time.monotonic()
    proxy.stop()
    # then every one of its threads is gone, promptly, and its port is closed
    assert proxy_threads(proxy) == []
    assert time.monotonic() - started < 2
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
    for sock in (delayed, held):
        sock.close()
    idle.close()
