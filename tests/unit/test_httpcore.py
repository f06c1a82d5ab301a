"""The sandbox HTTP core: a real AppServer on a loopback port, driven with requests."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from sandbox.httpcore import (
    AppServer,
    DropConnection,
    Headers,
    HttpError,
    PortInUse,
    Request,
    Response,
    Router,
    make_app,
)

MAX_BODY = 1024


def _build_router() -> Router:
    router = Router()

    def cancel(req: Request) -> Response:
        return Response.json({"orderId": req.params["orderId"], "route": req.route})

    def item(req: Request) -> Response:
        return Response.json(dict(req.params))

    def echo(req: Request) -> Response:
        return Response.json(
            {
                "method": req.method,
                "path": req.path,
                "query": req.query,
                "an": req.arg("an"),
                "missing": req.arg("missing"),
                "contentType": req.headers.get("CONTENT-TYPE"),
                "json": req.json() if req.body else None,
                "size": len(req.body),
            }
        )

    def throttled(req: Request) -> Response:
        raise HttpError(429, {"error": "slow down"}, {"Retry-After": "2"})

    def boom(req: Request) -> Response:
        raise RuntimeError("kaboom")

    def drop(req: Request) -> Response:
        raise DropConnection

    def peer(req: Request) -> Response:
        assert req.conn is not None
        nodelay = req.conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        return Response.json({"port": req.client[1], "nodelay": bool(nodelay)})

    def closing(req: Request) -> Response:
        return Response.json({"bye": True}, headers={"Connection": "close"})

    router.add("POST", "/api/oms/pvt/orders/{orderId}/cancel", "cancel", cancel)
    router.add("GET", "/api/oms/pvt/orders/{orderId}/cancel", "cancel_get", cancel)
    router.add("GET", "/items/{a}/sub/{b}", "item", item)
    router.add("GET", "/echo", "echo", echo)
    router.add("POST", "/echo", "echo", echo)
    router.add("GET", "/throttled", "throttled", throttled)
    router.add("GET", "/boom", "boom", boom)
    router.add("GET", "/drop", "drop", drop)
    router.add("GET", "/peer", "peer", peer)
    router.add("GET", "/closing", "closing", closing)
    router.add("GET", "/empty", "empty", lambda req: Response.empty())
    router.add("GET", "/raw", "raw", lambda req: Response(200, b"plain"))
    router.add("GET", "/private", "private", lambda req: Response.json({"secret": 42}))
    return router


def _auth(req: Request) -> Response | None:
    if req.route != "private":
        return None
    token = req.headers.get("x-vtex-api-apptoken")
    if token is None:
        return Response.json({"error": "unauthorized"}, 401)
    if token != "good":
        raise HttpError(403, {"error": "forbidden"})
    return None


@pytest.fixture(scope="module")
def server() -> Iterator[AppServer]:
    with AppServer(make_app(_build_router(), before=_auth), name="unit", max_body=MAX_BODY) as srv:
        yield srv


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False
        yield s


def test_url_and_port(server: AppServer) -> None:
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_routing_with_params(server: AppServer, session: requests.Session) -> None:
    r = session.post(f"{server.url}/api/oms/pvt/orders/v123-01/cancel")
    assert r.status_code == 200
    assert r.json() == {"orderId": "v123-01", "route": "cancel"}
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["Content-Length"] == str(len(r.content))
    assert r.content == b'{"orderId":"v123-01","route":"cancel"}'  # compact separators
    r = session.get(f"{server.url}/api/oms/pvt/orders/v9/cancel")
    assert r.json() == {"orderId": "v9", "route": "cancel_get"}
    r = session.get(f"{server.url}/items/a%20b/sub/c%2Fd")
    assert r.json() == {"a": "a b", "b": "c/d"}


def test_request_fields(server: AppServer, session: requests.Session) -> None:
    r = session.post(
        f"{server.url}/echo?an=1&an=2&blank=&x=%C3%A9",
        json={"k": "v"},
    )
    assert r.status_code == 200
    assert r.json() == {
        "method": "POST",
        "path": "/echo",
        "query": {"an": ["1", "2"], "blank": [""], "x": ["é"]},
        "an": "1",
        "missing": None,
        "contentType": "application/json",
        "json": {"k": "v"},
        "size": 10,
    }


def test_chunked_request_body(server: AppServer, session: requests.Session) -> None:
    r = session.post(f"{server.url}/echo", data=iter([b'{"a":', b" [1, 2]}"]))
    assert r.status_code == 200
    assert r.json()["json"] == {"a": [1, 2]}


def test_invalid_json_body(server: AppServer, session: requests.Session) -> None:
    r = session.post(f"{server.url}/echo", data=b"{not json")
    assert r.status_code == 400
    assert r.json() == {"error": {"code": "1", "message": "invalid JSON body", "exception": None}}


def test_404_and_405(server: AppServer, session: requests.Session) -> None:
    r = session.get(f"{server.url}/nowhere")
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "no route for GET /nowhere"
    assert r.headers["Content-Type"].startswith("application/json")
    r = session.delete(f"{server.url}/api/oms/pvt/orders/v1/cancel")
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, POST"
    assert "DELETE" in r.json()["error"]["message"]
    # the connection stays usable after errors
    assert session.get(f"{server.url}/echo").status_code == 200


def test_router_resolve_directly() -> None:
    router = _build_router()
    handler, params, name = router.resolve("post", "/api/oms/pvt/orders/x/cancel")
    assert (params, name) == ({"orderId": "x"}, "cancel")
    assert callable(handler)
    with pytest.raises(HttpError) as info:
        router.resolve("GET", "/items/a/sub/")  # {x} needs a non-empty segment
    assert info.value.status == 404
    with pytest.raises(HttpError) as info:
        router.resolve("PUT", "/echo")
    assert info.value.status == 405
    assert info.value.headers == {"Allow": "GET, POST"}


def test_http_error_status_and_headers(server: AppServer, session: requests.Session) -> None:
    r = session.get(f"{server.url}/throttled")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "2"
    assert r.json() == {"error": "slow down"}


def test_before_hook(server: AppServer, session: requests.Session) -> None:
    assert session.get(f"{server.url}/private").status_code == 401
    r = session.get(f"{server.url}/private", headers={"X-VTEX-API-AppToken": "bad"})
    assert r.status_code == 403
    r = session.get(f"{server.url}/private", headers={"X-VTEX-API-AppToken": "good"})
    assert r.json() == {"secret": 42}


def test_unexpected_exception_is_500_and_logged(
    server: AppServer, session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="sandbox.httpcore"):
        r = session.get(f"{server.url}/boom")
    assert r.status_code == 500
    body = r.json()
    assert body["error"]["code"] == "500"
    assert "kaboom" in body["error"]["exception"]
    assert any(rec.exc_info and "kaboom" in str(rec.exc_info[1]) for rec in caplog.records)
    assert session.get(f"{server.url}/echo").status_code == 200


def test_empty_and_raw_responses(server: AppServer, session: requests.Session) -> None:
    r = session.get(f"{server.url}/empty")
    assert r.status_code == 204
    assert r.content == b""
    r = session.get(f"{server.url}/raw")
    assert r.content == b"plain"
    assert r.headers["Content-Length"] == "5"
    assert session.get(f"{server.url}/echo").status_code == 200


def test_body_over_max_body_is_413(server: AppServer, session: requests.Session) -> None:
    r = session.post(f"{server.url}/echo", data=b"x" * (MAX_BODY + 1))
    assert r.status_code == 413
    assert r.headers["Connection"] == "close"
    assert r.json()["error"]["code"] == "413"
    r = session.post(f"{server.url}/echo", data=iter([b"y" * 800, b"y" * 800]))
    assert r.status_code == 413
    r = session.post(f"{server.url}/echo", data=b"1" * MAX_BODY)  # exactly the limit is fine
    assert r.status_code == 200
    assert r.json()["size"] == MAX_BODY


def test_large_body_is_refused_without_reading_it_all(server: AppServer) -> None:
    payload = b"z" * (4 * 1_048_576)
    r = requests.post(f"{server.url}/echo", data=payload, timeout=10)
    assert r.status_code == 413


def test_keep_alive_reuses_one_connection(server: AppServer, session: requests.Session) -> None:
    ports = {session.get(f"{server.url}/peer").json()["port"] for _ in range(50)}
    assert len(ports) == 1


def test_tcp_nodelay_and_sequential_speed(server: AppServer, session: requests.Session) -> None:
    assert session.get(f"{server.url}/peer").json()["nodelay"] is True
    n = 200
    started = time.perf_counter()
    for _ in range(n):
        session.get(f"{server.url}/peer")
    elapsed = time.perf_counter() - started
    print(f"\n{n} sequential keep-alive requests in {elapsed:.3f}s ({n / elapsed:.0f}/s)")


def test_connection_close_is_honoured(server: AppServer, session: requests.Session) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = _read_to_eof(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    r = session.get(f"{server.url}/closing")
    assert r.headers["Connection"] == "close"
    assert session.get(f"{server.url}/echo").status_code == 200


def test_raw_keep_alive_and_http10(server: AppServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /raw HTTP/1.1\r\nHost: x\r\n\r\nGET /raw HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"plain") < 2:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /raw HTTP/1.0\r\n\r\n")
        data = _read_to_eof(sock)
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"\r\n\r\nplain")


def test_malformed_request_line(server: AppServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        data = _read_to_eof(sock)
    assert data.startswith(b"HTTP/1.1 400 ")


def test_drop_connection(server: AppServer) -> None:
    with requests.Session() as s:
        with pytest.raises(requests.ConnectionError):
            s.get(f"{server.url}/drop")
        assert s.get(f"{server.url}/echo").status_code == 200


def test_port_in_use() -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUse) as info:
            AppServer(make_app(Router()), port=port)
        assert str(info.value) == f"port {port} is already in use"
    finally:
        holder.close()


def test_restart_on_same_port_and_stop_closes_connections() -> None:
    router = Router()
    router.add("GET", "/n", "n", lambda req: Response.json({"n": 1}))
    first = AppServer(make_app(router))
    port = first.port
    with requests.Session() as s:
        with first:
            assert s.get(f"{first.url}/n").json() == {"n": 1}
        first.stop()  # idempotent
        with pytest.raises(requests.ConnectionError):
            s.get(f"{first.url}/n")
    router.add("GET", "/m", "m", lambda req: Response.json({"m": 2}))
    with AppServer(make_app(router), port=port) as second, requests.Session() as s:
        assert second.port == port
        assert s.get(f"{second.url}/m").json() == {"m": 2}


def test_stop_without_start() -> None:
    srv = AppServer(make_app(Router()))
    srv.stop()
    srv.stop()


def _read_to_eof(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_a_deeply_nested_json_body_is_a_bad_request_not_a_crash() -> None:
    request = Request("POST", "/x", {}, Headers(), b"[" * 200_000)
    with pytest.raises(HttpError) as bad:
        request.json()
    assert bad.value.status == 400
