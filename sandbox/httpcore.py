"""A tiny router and threaded HTTP/1.1 server for the sandbox.

The fake VTEX OMS and the reference ERP are real HTTP servers on loopback. They sit under tests
and benchmarks, so the server is kept lean: one thread per connection, keep-alive, ``TCP_NODELAY``
on every accepted socket, and every response (status line, headers and body) leaves in a single
``sendall``. Only the standard library is used.

Handlers are plain callables ``Request -> Response``. They answer errors by raising
:class:`HttpError`, and may raise :class:`DropConnection` to close the socket without any answer
(which is how the fault injection simulates a lost response).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

__all__ = [
    "AppServer",
    "DropConnection",
    "Headers",
    "HttpError",
    "PortInUse",
    "Request",
    "Response",
    "Router",
    "error_body",
    "make_app",
]

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def error_body(code: str, message: str) -> dict[str, Any]:
    """The VTEX-style error envelope: ``{"error": {"code", "message", "exception"}}``."""
    return {"error": {"code": code, "message": message, "exception": None}}


class HttpError(Exception):
    """Raised by a handler (or a ``before`` hook) to answer with an error status.

    ``body`` is sent as JSON, except ``bytes`` which are sent as they are.
    """

    def __init__(self, status: int, body: object, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.body!r}"

    def to_response(self) -> Response:
        """The response this error stands for."""
        if isinstance(self.body, bytes):
            return Response(self.status, self.body, dict(self.headers))
        return Response.json(self.body, self.status, self.headers)


class DropConnection(Exception):
    """Raised by a handler: shut the socket down and close it without writing an answer."""


class PortInUse(Exception):
    """The server could not bind because another socket is listening on the port."""

    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} is already in use")
        self.port = port


class Headers(Mapping[str, str]):
    """Read-only request headers with case-insensitive lookup.

    A header sent several times is folded into one value joined with ``", "``.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> None:
        folded: dict[str, str] = {}
        pairs = items.items() if isinstance(items, Mapping) else (items or ())
        for key, value in pairs:
            low = key.lower()
            folded[low] = f"{folded[low]}, {value}" if low in folded else value
        self._items = folded

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class Request:
    """One parsed HTTP request.

    ``path`` is the raw path without the query string; ``params`` holds the URL-decoded
    ``{name}`` segments of the matched route and ``route`` the route's name. ``client`` is the
    peer address and ``conn`` the connection's socket (``None`` outside a server).
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    route: str = ""
    client: tuple[str, int] = ("", 0)
    conn: socket.socket | None = field(default=None, repr=False, compare=False)

    def json(self) -> Any:
        """The body parsed as JSON; an invalid body answers 400."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise HttpError(400, error_body("1", "invalid JSON body")) from None

    def arg(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or ``None``."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    """An HTTP response; ``Content-Length`` is always set by the server."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, obj: object, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        """A compact JSON response."""
        data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        hdrs = {"Content-Type": JSON_CONTENT_TYPE}
        if headers:
            hdrs.update(headers)
        return cls(status, data, hdrs)

    @classmethod
    def empty(cls, status: int = 204) -> Response:
        """A response without a body."""
        return cls(status)


Handler = Callable[[Request], Response]
App = Callable[[Request], Response]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class _Route:
    method: str
    name: str
    handler: Handler
    regex: re.Pattern[str] | None  # None: a static pattern, matched by the exact path
    names: tuple[str, ...]


class Router:
    """Maps ``(method, path)`` to a handler.

    Patterns are literal paths in which ``{name}`` matches one non-empty path segment (the
    captured value is URL-decoded). Routes are tried in the order they were added.
    """

    def __init__(self) -> None:
        self._static: dict[str, list[_Route]] = {}
        self._dynamic: list[_Route] = []

    def add(self, method: str, pattern: str, name: str, handler: Handler) -> None:
        """Register ``handler`` for ``method`` on ``pattern`` under the route name ``name``."""
        if not pattern.startswith("/"):
            raise ValueError(f"route pattern must start with '/': {pattern!r}")
        method = method.upper()
        names = tuple(_PARAM.findall(pattern))
        if not names:
            self._static.setdefault(pattern, []).append(_Route(method, name, handler, None, ()))
            return
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter name in route pattern {pattern!r}")
        parts: list[str] = []
        pos = 0
        for m in _PARAM.finditer(pattern):
            parts.append(re.escape(pattern[pos : m.start()]))
            parts.append("([^/]+)")
            pos = m.end()
        parts.append(re.escape(pattern[pos:]))
        regex = re.compile("".join(parts) + r"\Z")
        self._dynamic.append(_Route(method, name, handler, regex, names))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str], str]:
        """Find the handler for a request.

        Returns ``(handler, params, route name)``. Raises :class:`HttpError` 404 when no pattern
        matches the path and 405 (with an ``Allow`` header) when it matches only other methods.
        """
        method = method.upper()
        allowed: list[str] = []
        for route in self._static.get(path, ()):
            if route.method == method:
                return route.handler, {}, route.name
            allowed.append(route.method)
        for route in self._dynamic:
            assert route.regex is not None
            m = route.regex.match(path)
            if m is None:
                continue
            if route.method == method:
                params = {k: unquote(v) for k, v in zip(route.names, m.groups(), strict=True)}
                return route.handler, params, route.name
            allowed.append(route.method)
        if allowed:
            allow = ", ".join(sorted(set(allowed)))
            raise HttpError(
                405,
                error_body("405", f"method {method} not allowed on {path}; allowed: {allow}"),
                {"Allow": allow},
            )
        raise HttpError(404, error_body("404", f"no route for {method} {path}"))


def make_app(router: Router, *, before: Callable[[Request], Response | None] | None = None) -> App:
    """Build the application callable for :class:`AppServer`.

    It resolves the route (filling ``params`` and ``route``), calls ``before`` (which may answer
    by returning a response or raising :class:`HttpError`), then the handler. ``HttpError``
    becomes its JSON response, any other exception (except :class:`DropConnection`) a logged 500.
    """

    def app(request: Request) -> Response:
        try:
            handler, params, name = router.resolve(request.method, request.path)
            request.params = params
            request.route = name
            if before is not None:
                early = before(request)
                if early is not None:
                    return early
            return handler(request)
        except HttpError as exc:
            return exc.to_response()
        except DropConnection:
            raise
        except Exception as exc:
            log.exception("unhandled error in %s %s", request.method, request.path)
            return _internal_error(exc)

    return app


def _internal_error(exc: BaseException) -> Response:
    body = error_body("500", "internal server error")
    body["error"]["exception"] = f"{type(exc).__name__}: {exc}"
    return Response.json(body, 500)


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------

_REASONS: dict[int, str] = {s.value: s.phrase for s in HTTPStatus}
_NO_BODY_STATUSES = frozenset({204, 304})
_DRAIN_LIMIT = 16 * 1_048_576  # bytes discarded at most after refusing an oversized body
_DRAIN_SECONDS = 2.0
_MAX_HEADERS = 100


class _DateCache:
    """``Date`` header value, formatted at most once per second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def get(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._value = formatdate(now, usegmt=True)
            self._second = second
        return self._value


_DATES = _DateCache()


class _BodyTooLarge(Exception):
    pass


class _BadRequest(Exception):
    pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App, name: str, max_body: int) -> None:
        self.app = app
        self.name = name
        self.max_body = max_body
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup: skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._conns.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._conns.discard(conn)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Called for exceptions escaping the handler; resets and broken pipes are routine.
        log.debug("%s: error on connection from %s", self.name, client_address, exc_info=True)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # StreamRequestHandler.setup sets TCP_NODELAY
    server: _Server
    req_headers: Headers

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)
        self.server_version = self.server.name

    def finish(self) -> None:
        self.server.untrack(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:  # ConnectionResetError, BrokenPipeError, timeouts, shut down sockets
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_one_request(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            self.close_connection = True
            return
        if self._parse_head():
            self._dispatch()

    def _parse_head(self) -> bool:
        """Parse the request line and headers (a lean stand-in for ``parse_request``).

        Answers 400/414/431/505 itself and returns False when the request cannot be served.
        """
        self.close_connection = True
        self.request_version = "HTTP/1.0"
        if len(self.raw_requestline) > 65536:
            return self._reject(414, "request line too long")
        self.requestline = line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = line.split()
        if len(words) != 3:
            return self._reject(400, f"bad request line {line[:200]!r}")
        command, path, version = words
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            if version.startswith("HTTP/"):
                return self._reject(505, f"HTTP version not supported: {version[:20]}")
            return self._reject(400, f"bad request line {line[:200]!r}")
        if path.startswith("//"):  # as http.server does: never read it as a netloc
            path = "/" + path.lstrip("/")
        self.command, self.path, self.request_version = command, path, version
        items: list[tuple[str, str]] = []
        while True:
            raw = self.rfile.readline(65537)
            if len(raw) > 65536:
                return self._reject(431, "header line too long")
            if raw in (b"\r\n", b"\n"):
                break
            if not raw:
                return False  # the client went away mid-request
            if len(items) >= _MAX_HEADERS:
                return self._reject(431, f"more than {_MAX_HEADERS} headers")
            text = str(raw, "iso-8859-1")
            if text[0] in " \t" and items:  # obsolete line folding
                name, value = items[-1]
                items[-1] = (name, f"{value} {text.strip()}")
                continue
            name, sep, value = text.partition(":")
            if not sep or not name or name != name.strip():
                return self._reject(400, f"malformed header line {text[:200]!r}")
            items.append((name, value.strip()))
        headers = self.req_headers = Headers(items)
        tokens = headers.get("connection", "").lower()
        if "close" in tokens:
            self.close_connection = True
        elif version == "HTTP/1.1" or "keep-alive" in tokens:
            self.close_connection = False
        if version == "HTTP/1.1" and headers.get("expect", "").lower() == "100-continue":
            length = headers.get("content-length", "").strip()
            # Never invite the client to send a body that will be refused anyway.
            if not (length.isdigit() and int(length) > self.server.max_body):
                self.connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _reject(self, status: int, message: str) -> bool:
        self.close_connection = True
        self._send(Response.json(error_body(str(status), message), status))
        return False

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except _BodyTooLarge:
            self._refuse_body()
            return
        except _BadRequest as exc:
            self.close_connection = True
            self._send(Response.json(error_body("400", str(exc)), 400))
            return
        path, _, qs = self.path.partition("?")
        request = Request(
            method=self.command,
            path=path,
            query=parse_qs(qs, keep_blank_values=True) if qs else {},
            headers=self.req_headers,
            body=body,
            client=self.client_address,
            conn=self.connection,
        )
        try:
            response = self.server.app(request)
        except DropConnection:
            self._drop()
            return
        except HttpError as exc:
            response = exc.to_response()
        except Exception as exc:
            log.exception("%s: unhandled error in %s %s", self.server.name, self.command, path)
            response = _internal_error(exc)
        self._send(response)

    def _read_body(self) -> bytes:
        max_body = self.server.max_body
        te = self.req_headers.get("transfer-encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise _BadRequest(f"unsupported Transfer-Encoding: {te}")
            return self._read_chunked(max_body)
        length_text = self.req_headers.get("content-length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise _BadRequest(f"invalid Content-Length: {length_text!r}") from None
        if length < 0:
            raise _BadRequest(f"invalid Content-Length: {length_text!r}")
        if length > max_body:
            raise _BodyTooLarge
        if length == 0:
            return b""
        data = self.rfile.read(length)
        if len(data) < length:
            raise ConnectionResetError("connection closed while reading the body")
        return data

    def _read_chunked(self, max_body: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1026)
            if not line:
                raise ConnectionResetError("connection closed while reading the body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest("invalid chunk size") from None
            if size == 0:
                break
            total += size
            if total > max_body:
                raise _BodyTooLarge
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise ConnectionResetError("connection closed while reading the body")
            chunks.append(chunk)
            self.rfile.readline(3)  # CRLF after the chunk data
        while True:  # trailers, up to the empty line
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
        return b"".join(chunks)

    def _refuse_body(self) -> None:
        """Answer 413 and close, discarding (never buffering) what the client still sends."""
        self.close_connection = True
        message = f"request body exceeds {self.server.max_body} bytes"
        self._send(Response.json(error_body("413", message), 413))
        conn = self.connection
        try:
            conn.shutdown(socket.SHUT_WR)
            # Closing with unread data would make the kernel send a RST, which can destroy the
            # 413 before the client reads it: drain for a while first ("lingering close").
            deadline = time.monotonic() + _DRAIN_SECONDS
            drained = 0
            while drained < _DRAIN_LIMIT:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                conn.settimeout(left)
                chunk = conn.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    def _drop(self) -> None:
        self.close_connection = True
        conn = self.connection
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()

    def _send(self, response: Response) -> None:
        status = response.status
        reason = _REASONS.get(status, "")
        lines = [f"HTTP/1.1 {status} {reason}", f"Server: {self.server.name}"]
        lines.append(f"Date: {_DATES.get()}")
        closing = self.close_connection
        for key, value in response.headers.items():
            low = key.lower()
            if low == "content-length":
                continue
            if low == "connection":
                if value.strip().lower() == "close":
                    closing = True
                continue
            lines.append(f"{key}: {value}")
        body = response.body
        if status in _NO_BODY_STATUSES or 100 <= status < 200:
            body = b""
            if status == 304:
                lines.append("Content-Length: 0")
        else:
            lines.append(f"Content-Length: {len(body)}")
        if closing:
            lines.append("Connection: close")
            self.close_connection = True
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        lines.append("\r\n")
        head = "\r\n".join(lines).encode("latin-1")
        self.connection.sendall(head + body if body else head)


class AppServer:
    """A threaded HTTP/1.1 server for ``app`` on ``host:port`` (port 0: any free port).

    The socket is bound in the constructor (:class:`PortInUse` when another socket listens on
    the port); :meth:`start` serves in a daemon thread, :meth:`stop` shuts down, closes open
    keep-alive connections and joins the thread. Usable as a context manager.
    """

    def __init__(
        self,
        app: App,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "sandbox",
        max_body: int = 1_048_576,
    ) -> None:
        self.name = name
        self.host = host
        try:
            self._server = _Server((host, port), app, name, max_body)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(port) from exc
            raise
        self.port: int = self._server.server_port
        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.url: str = f"http://{url_host}:{self.port}"
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        """Serve in a daemon thread (no-op when already started)."""
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"{self.name} server on port {self.port} was stopped")
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{self.name}-http-{self.port}",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the listening socket and open connections; idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            thread = self._thread
        if thread is not None:
            self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        if thread is not None:
            thread.join()

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and not self._stopped

    def __enter__(self) -> AppServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"AppServer(name={self.name!r}, url={self.url!r})"
