"""A loopback TCP proxy that breaks the network between Celery workers and Redis, on purpose.

Point a client at :meth:`ChaosProxy.url_for` instead of Redis, then switch the proxy's mode while
the client runs. Modes replace one another; :meth:`ChaosProxy.reset_all` is a one-off action.

- ``pass_through()``: bytes flow both ways unchanged (the default).
- ``latency(seconds, jitter)``: every chunk, both ways, arrives ``seconds ± jitter`` late, in order.
- ``blackhole()``: a partition. Connections, old and new, are accepted and read, but nothing is
  forwarded and nothing answered. The bytes are held, not dropped, and delivered when the mode
  changes, as TCP retransmission would after a partition heals; a client that gave up meanwhile
  just gets its connection closed then. Call ``reset_all()`` too for a partition that kills
  connections.
- ``refuse()``: the port stops listening, so connects are refused; established connections carry
  on. Any other mode listens again on the same port. ``refuse()`` then ``reset_all()`` is a Redis
  that went down.
- ``reset_all()``: every open connection is closed abruptly (RST on both sides); new ones are
  accepted as usual.

One accept thread, two pump threads per connection (one per direction), standard library only.
Only the thread that owns a socket closes it, so no thread ever waits on a closed descriptor.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import select
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

THREAD_PREFIX = "chaosproxy"
_POLL = 0.05  # how long a pump waits before it looks at the mode again
_CHUNK = 65_536
_HOLD_LIMIT = 4 << 20  # bytes a pump holds per direction before it stops reading (backpressure)
_CONNECT_TIMEOUT = 2.0
_JOIN_TIMEOUT = 5.0
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN


@dataclass(frozen=True)
class ProxyStats:
    """Counts since start(); bytes are those forwarded, not those merely read."""

    accepted: int
    open: int
    bytes_to_upstream: int
    bytes_to_client: int
    resets: int  # connections closed by reset_all()
    upstream_failures: int  # accepted connections whose upstream connect failed


@dataclass(frozen=True)
class _Mode:
    """Immutable, replaced whole, so pumps read it without a lock."""

    name: str
    delay: float = 0.0
    jitter: float = 0.0

    def chunk_delay(self) -> float:
        return max(0.0, self.delay + random.uniform(-self.jitter, self.jitter))


def _wait_readable(sock: socket.socket, timeout: float) -> bool:
    poller = select.poll()  # not select.select: descriptors above 1024 are fine
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000) + 1)))


class _Link:
    """One proxied connection: the client's socket, the upstream's, and a pump each way."""

    def __init__(self, proxy: ChaosProxy, client: socket.socket, upstream: socket.socket) -> None:
        self._proxy = proxy
        self._client = client
        self._upstream = upstream
        self._lock = threading.Lock()
        self._aborted = threading.Event()
        self._pumps_left = 2
        name = f"{THREAD_PREFIX}-{proxy.port}-{next(proxy._numbers)}"
        self.threads = [
            threading.Thread(
                target=self._pump, args=(client, upstream, True), name=name + "-up", daemon=True
            ),
            threading.Thread(
                target=self._pump, args=(upstream, client, False), name=name + "-down", daemon=True
            ),
        ]

    def start(self) -> None:
        for sock in (self._client, self._upstream):
            sock.settimeout(_POLL)  # bounds a blocked send, so an abort is noticed
            with contextlib.suppress(OSError):  # no 40 ms Nagle waits
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for thread in self.threads:
            thread.start()

    def abort(self) -> None:
        """Make both pumps stop; the last one out closes both sockets with RST."""
        with self._lock:
            if self._aborted.is_set():
                return
            self._aborted.set()
        for sock in (self._client, self._upstream):
            with contextlib.suppress(OSError):  # wakes a pump waiting to read; sends nothing
                sock.shutdown(socket.SHUT_RD)

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)

    def _pump(self, src: socket.socket, dst: socket.socket, to_upstream: bool) -> None:
        pending: deque[tuple[float, bytes]] = deque()  # (due, chunk); b"" is the end of stream
        held = 0
        reading = True
        try:
            while not self._aborted.is_set():
                mode = self._proxy._mode
                while pending and mode.name != "blackhole":
                    due, chunk = pending[0]
                    if mode.delay and due > time.monotonic():
                        break
                    pending.popleft()
                    if not chunk:
                        dst.shutdown(socket.SHUT_WR)  # pass the half-close on
                        return
                    if not self._send(dst, chunk):
                        return
                    held -= len(chunk)
                    self._proxy._count(to_upstream, len(chunk))
                wait = _POLL
                if pending and mode.name != "blackhole":
                    wait = min(wait, max(0.0, pending[0][0] - time.monotonic()))
                if not reading or held >= _HOLD_LIMIT:
                    self._aborted.wait(wait)
                    continue
                if not _wait_readable(src, wait) or self._aborted.is_set():
                    continue
                try:
                    chunk = src.recv(_CHUNK)
                except TimeoutError:
                    continue
                reading = bool(chunk)
                # The mode now, not the one before the wait. First in, first out: a chunk whose
                # jitter drew less than the one before it waits behind it.
                due = time.monotonic() + self._proxy._mode.chunk_delay()
                pending.append((due, chunk))
                held += len(chunk)
        except OSError as exc:  # a peer went away abruptly: so does the other side
            log.debug("chaos proxy %s: %s; aborting the connection", self._proxy.port, exc)
            self.abort()
        finally:
            self._pump_done()

    def _send(self, dst: socket.socket, chunk: bytes) -> bool:
        view = memoryview(chunk)
        while view:
            if self._aborted.is_set():
                return False
            try:
                view = view[dst.send(view) :]
            except TimeoutError:
                continue
        return True

    def _pump_done(self) -> None:
        with self._lock:
            self._pumps_left -= 1
            if self._pumps_left:
                return
            abrupt = self._aborted.is_set()
        for sock in (self._client, self._upstream):
            if abrupt:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
            sock.close()
        self._proxy._forget(self)


class ChaosProxy:
    """A TCP proxy in front of ``upstream`` whose failure mode changes at run time.

    Mode methods are thread-safe and take effect on return (within ~50 ms for bytes already
    read). ``refuse()`` and the mode that ends it return once the port is closed or listening.
    """

    def __init__(
        self, upstream: tuple[str, int], *, listen_host: str = "127.0.0.1", listen_port: int = 0
    ) -> None:
        self._upstream_addr = upstream
        self._host = listen_host
        self._port = listen_port
        self._mode = _Mode("pass_through")
        self._cond = threading.Condition()
        self._links: set[_Link] = set()
        self._numbers = itertools.count(1)
        self._counts = dict.fromkeys(
            ("accepted", "to_upstream", "to_client", "resets", "upstream_failures"), 0
        )
        self._listener: socket.socket | None = None
        self._listening = False
        self._bind_error: OSError | None = None
        self._requested = self._synced = 0  # mode changes asked for / seen by the accept thread
        self._stopping = False
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the proxy has no port until start()")
        return self._port

    def url_for(self, redis_url: str) -> str:
        """``redis_url`` with its host and port replaced by the proxy's (credentials kept)."""
        parts = urlsplit(redis_url)
        userinfo, at, _ = parts.netloc.rpartition("@")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}:{self.port}"))

    def start(self) -> ChaosProxy:
        if self._acceptor is not None:
            raise RuntimeError("a ChaosProxy starts once")
        self._listener = self._bind()
        self._port = int(self._listener.getsockname()[1])
        self._listening = True
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"{THREAD_PREFIX}-{self._port}-accept", daemon=True
        )
        self._acceptor.start()
        log.debug("chaos proxy on %s:%s -> %s", self._host, self._port, self._upstream_addr)
        return self

    def stop(self) -> None:
        """Close the port and every connection; join every thread (RuntimeError if one hangs)."""
        with self._cond:
            if self._acceptor is None or self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()  # a mode change waiting on the accept thread gives up
        self._wake()
        self._acceptor.join(_JOIN_TIMEOUT)  # first, so no connection is accepted after this
        links = self._abort_links()
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        threads = [self._acceptor, *(thread for link in links for thread in link.threads)]
        alive = [thread.name for thread in threads if thread.is_alive()]
        if alive:
            raise RuntimeError(f"chaos proxy threads did not stop: {alive}")

    def __enter__(self) -> ChaosProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def pass_through(self) -> None:
        self._set_mode(_Mode("pass_through"))

    def latency(self, seconds: float, jitter: float = 0.0) -> None:
        if seconds < 0 or jitter < 0:
            raise ValueError("latency and jitter must not be negative")
        self._set_mode(_Mode("latency", seconds, jitter))

    def blackhole(self) -> None:
        self._set_mode(_Mode("blackhole"))

    def refuse(self) -> None:
        self._set_mode(_Mode("refuse"))

    def reset_all(self) -> None:
        """Close every open connection with RST; return once they are closed."""
        links = self._abort_links()
        with self._cond:
            self._counts["resets"] += len(links)
        log.debug("chaos proxy %s: reset %d connections", self._port, len(links))

    def stats(self) -> ProxyStats:
        with self._cond:
            c = self._counts
            return ProxyStats(
                accepted=c["accepted"],
                open=len(self._links),
                bytes_to_upstream=c["to_upstream"],
                bytes_to_client=c["to_client"],
                resets=c["resets"],
                upstream_failures=c["upstream_failures"],
            )

    def _set_mode(self, mode: _Mode) -> None:
        with self._cond:
            self._mode = mode
            self._requested += 1
            ticket = self._requested
            running = self._acceptor is not None and not self._stopping
        log.debug("chaos proxy %s: %s", self._port, mode)
        if not running:
            return
        self._wake()  # the accept thread owns the listener: it closes or rebinds it
        with self._cond:
            done = self._cond.wait_for(
                lambda: self._synced >= ticket or self._stopping, _JOIN_TIMEOUT
            )
            if self._stopping:
                return
            if not done:
                raise RuntimeError("the chaos proxy's accept thread did not answer")
            if self._mode.name != "refuse" and not self._listening:
                raise RuntimeError(
                    f"could not listen again on port {self._port}: {self._bind_error}"
                )

    def _accept_loop(self) -> None:
        assert self._wake_r is not None
        while True:
            with self._cond:
                if self._stopping:
                    break
                ticket, want = self._requested, self._mode.name != "refuse"
            self._sync_listener(want)
            with self._cond:
                self._synced = ticket
                self._cond.notify_all()
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            if self._listener is not None:
                poller.register(self._listener, select.POLLIN)
            ready = {fd for fd, _ in poller.poll(100 if want and not self._listening else 1000)}
            if self._wake_r.fileno() in ready:
                self._wake_r.recv(4096)
            if self._listener is not None and self._listener.fileno() in ready:
                self._accept_one(self._listener)
        if self._listener is not None:
            self._listener.close()

    def _sync_listener(self, want: bool) -> None:
        if want and self._listener is None:
            try:
                self._listener = self._bind()
                self._bind_error = None
            except OSError as exc:
                self._bind_error = exc
        elif not want and self._listener is not None:
            self._listener.close()  # connects now meet a closed port: refused
            self._listener = None
        with self._cond:
            self._listening = self._listener is not None

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Rebinding the same port after refuse() must not trip over TIME_WAIT leftovers.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            sock.listen(128)
            sock.setblocking(False)  # poll said ready, but the client may be gone by accept()
        except OSError:
            sock.close()
            raise
        return sock

    def _accept_one(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # the client gave up before we got to it
        with self._cond:
            self._counts["accepted"] += 1
        try:
            upstream = socket.create_connection(self._upstream_addr, timeout=_CONNECT_TIMEOUT)
        except OSError as exc:
            log.debug("chaos proxy %s: upstream connect failed: %s", self._port, exc)
            with self._cond:
                self._counts["upstream_failures"] += 1
            with contextlib.suppress(OSError):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
            client.close()
            return
        link = _Link(self, client, upstream)
        with self._cond:  # published with its threads running, so reset_all() can join them
            self._links.add(link)
            link.start()

    def _abort_links(self) -> list[_Link]:
        with self._cond:
            links = list(self._links)
        for link in links:
            link.abort()
        for link in links:
            link.join(_JOIN_TIMEOUT)
        return links

    def _forget(self, link: _Link) -> None:
        with self._cond:
            self._links.discard(link)

    def _count(self, to_upstream: bool, n: int) -> None:
        with self._cond:
            self._counts["to_upstream" if to_upstream else "to_client"] += n

    def _wake(self) -> None:
        # A full socket pair means the accept thread has bytes to read already.
        with contextlib.suppress(OSError):
            if self._wake_w is not None:
                self._wake_w.send(b"\0")
