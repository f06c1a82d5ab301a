"""The VTEX client against the real sandbox over HTTP: every call, the bodies it sends (checked
against VTEX's OpenAPI file), and how each failure surfaces as a VtexError."""

from __future__ import annotations

import logging
import re
import socketserver
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from pydantic import SecretStr, ValidationError

from bridge.domain.errors import (
    AuthenticationError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from bridge.domain.models import FeedEvent, Invoice, InvoiceItem
from bridge.vtex import (
    RateLimited,
    VtexAuthError,
    VtexBadRequest,
    VtexBadResponse,
    VtexClient,
    VtexConnectionError,
    VtexNotFound,
    VtexPermanentError,
    VtexServerError,
    VtexTimeout,
)
from sandbox.scenario import ScenarioConfig
from tests.sandbox_client import SandboxClient
from tests.vtex_spec import validate_request

MakeSandbox = Callable[..., SandboxClient]
READY = "ready-for-handling"
STATUSES = [READY, "handling", "cancellation-requested", "canceled", "invoiced"]
DENY = "/api/orders/pvt/document/{orderId}/deny-cancellation-request"  # in a guide, not the spec
# VTEX's path templates, as the spec names them, to validate what was sent to each path.
TEMPLATES = [
    "/api/orders/feed",
    "/api/orders/feed/config",
    "/api/orders/hook/config",
    "/api/oms/pvt/orders/{orderId}/cancel",
    "/api/oms/pvt/orders/{orderId}/invoice",
    "/api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber}",
    DENY,
]


def template_of(path: str) -> str:
    for template in TEMPLATES:
        if re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", template), path):
            return template
    raise AssertionError(f"no VTEX template for {path}")


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    body: Any


class RecordingSession(requests.Session):
    """A real session that also keeps what the client sent (test only)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Sent] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kw: Any) -> Any:
        self.sent.append(Sent(str(method), urlsplit(str(url)).path, kw.get("json")))
        return super().request(method, url, *args, **kw)


@dataclass
class FakeBudget:
    """The RateBudget port: hands out the scripted waits (then 0.0) and records every call."""

    waits: list[float] = field(default_factory=list)
    acquired: int = 0
    pauses: list[float] = field(default_factory=list)

    def acquire(self) -> float:
        self.acquired += 1
        return self.waits.pop(0) if self.waits else 0.0

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skip the reverse DNS lookup
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])


class CannedServer:
    """Answers every request with one canned status, headers and body; records the paths."""

    def __init__(self, status: int = 200, body: bytes = b"", headers: Mapping[str, str] = {}):
        self.paths: list[str] = []
        answer = (status, body, dict(headers))
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                paths.append(self.path)
                self.send_response(answer[0])
                for name, value in {**answer[2], "Content-Length": str(len(answer[1]))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer[1])

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def canned() -> Iterator[Callable[..., CannedServer]]:
    servers: list[CannedServer] = []

    def make(*args: Any, **kw: Any) -> CannedServer:
        servers.append(CannedServer(*args, **kw))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def calm(orders: int = 3) -> ScenarioConfig:
    """No shopper cancels on their own: tests cancel when they want to."""
    return ScenarioConfig(
        orders=orders, seed=1, split_share=0.0, cancel_in_window_share=0.0,
        cancel_after_window_share=0.0,
    )  # fmt: skip


def ready(make_sandbox: MakeSandbox, faults: str = "") -> SandboxClient:
    """Given a sandbox whose orders all sit in ready-for-handling, their events in the feed."""
    box = make_sandbox(scenario=calm(), faults=faults)
    assert box.configure_feed().status_code == 200
    box.advance(4000)
    with box.sandbox.world.lock:  # read directly: the fault plan may refuse get_order
        assert {o.status for o in box.sandbox.world.orders.values()} == {READY}
    return box


def client_for(
    box: SandboxClient, *, token: str | None = None, **kw: Any
) -> tuple[VtexClient, RecordingSession]:
    session = RecordingSession()
    cfg = box.sandbox.world.config
    secret = SecretStr(cfg.app_token if token is None else token)
    return VtexClient(box.vtex_url, cfg.app_key, secret, session=session, **kw), session


def full_invoice(box: SandboxClient, order_id: str, number: str) -> Invoice:
    order = box.order(order_id)
    return Invoice(
        number=number,
        value=order["value"],
        issuance_date="2024-02-12T13:59:00-03:00",
        items=[InvoiceItem(id=i["id"], price=i["price"], quantity=i["quantity"]) for i in
               order["items"]],
        courier="Correios",
    )  # fmt: skip


def shopper_request(box: SandboxClient, order_id: str) -> str:
    """Given a shopper's cancellation request on the order; returns the request's id."""
    r = box.vtex("POST", f"/_sandbox/orders/{order_id}/shopper-cancel", json={"reason": "oops"})
    assert r.json() == {"result": "requested"}, r.text
    requests_ = box.order(order_id)["cancellationRequests"]
    request_id: str = requests_[-1]["id"]
    return request_id


# -- every call works ---------------------------------------------------------------------------


def test_get_order_returns_the_order_as_vtex_has_it(make_sandbox: MakeSandbox) -> None:
    box = ready(make_sandbox)
    client, _ = client_for(box)
    order_id = box.order_ids()[0]

    order = client.get_order(order_id)

    assert order.order_id == order_id
    assert order.status == READY
    assert order.value == box.order(order_id)["value"] > 0
    assert order.items and order.packages == []


def test_list_orders_pages_through_the_orders_in_the_asked_statuses(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready(make_sandbox)
    client, _ = client_for(box)

    first = client.list_orders([READY], page=1, per_page=2)
    second = client.list_orders([READY], page=2, per_page=2)
    none = client.list_orders(["canceled"])

    listed = [o.order_id for o in first.orders + second.orders]
    assert sorted(listed) == sorted(box.order_ids())
    assert (first.total, first.pages, first.page, second.page) == (3, 2, 1, 2)
    assert {o.status for o in first.orders} == {READY}
    assert none.orders == [] and none.total == 0


def test_start_handling_is_true_the_first_time_and_false_once_started(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready(make_sandbox)
    client, _ = client_for(box)
    order_id = box.order_ids()[0]

    assert client.start_handling(order_id) is True
    assert client.start_handling(order_id) is False
    assert box.order(order_id)["status"] == "handling"


def test_cancel_order_first_requests_then_confirms_the_cancellation(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready(make_sandbox)
    client, _ = client_for(box)
    order_id = box.order_ids()[0]

    client.cancel_order(order_id, "out of stock")
    assert box.order(order_id)["status"] == "cancellation-requested"
    client.cancel_order(order_id, "out of stock")

    assert box.order(order_id)["status"] == "canceled"


def test_deny_cancellation_answers_the_shoppers_request_and_restores_the_status(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready(make_sandbox)
    client, _ = client_for(box)
    order_id = box.order_ids()[0]
    request_id = shopper_request(box, order_id)

    client.deny_cancellation(order_id, request_id, "already with the carrier")

    order = client.get_order(order_id)
    assert order.status == READY
    assert order.open_cancellation_request() is None
    assert [r.id for r in order.cancellation_requests if r.denied_by_seller] == [request_id]


def test_deny_of_an_unknown_request_is_a_permanent_bad_request(make_sandbox: MakeSandbox) -> None:
    box = ready(make_sandbox)
    client, _ = client_for(box)
    order_id = box.order_ids()[0]
    shopper_request(box, order_id)

    with pytest.raises(VtexBadRequest) as caught:
        client.deny_cancellation(order_id, "no-such-request", "already shipped")

    assert isinstance(caught.value, PermanentError) and caught.value.status == 400


def test_posted_invoice_and_its_tracking_appear_on_the_order(make_sandbox: MakeSandbox) -> None:
    box = ready(make_sandbox)
    client, _ = client_for(box)
    order_id = box.order_ids()[0]
    client.start_handling(order_id)

    client.post_invoice(order_id, full_invoice(box, order_id, "NF-1001"))
    client.update_tracking(
        order_id, "NF-1001", "BR123", courier="Correios", tracking_url="https://t.example/BR123"
    )

    order = client.get_order(order_id)
    assert order.status == "invoiced"
    [package] = order.packages
    assert (package.number, package.value, package.tracking_number) == (
        "NF-1001",
        order.value,
        "BR123",
    )


def test_tracking_for_an_invoice_vtex_lacks_is_not_found(make_sandbox: MakeSandbox) -> None:
    box = ready(make_sandbox)
    client, _ = client_for(box)

    with pytest.raises(VtexNotFound):
        client.update_tracking(box.order_ids()[0], "NF-404", "BR123")


def test_feed_items_read_validate_and_commit_until_the_feed_is_empty(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready(make_sandbox)
    client, _ = client_for(box)

    items = client.get_feed(maxlot=10)
    events = [FeedEvent.model_validate(item) for item in items]
    client.commit([e.handle for e in events])
    client.commit([])  # nothing to commit: no call at all

    assert sorted(e.order_id for e in events) == sorted(box.order_ids())
    assert {e.state for e in events} == {READY}
    config = client.get_feed_config()
    assert config is not None and config.quantity == 0
    box.advance(0, feed_seconds=60)  # past the visibility timeout: uncommitted items would return
    assert client.get_feed() == []


def test_malformed_feed_items_come_back_raw_for_the_caller_to_quarantine(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready(make_sandbox, faults="feed_get:malformed=100%")
    client, _ = client_for(box)

    items = client.get_feed()

    bad = []
    for item in items:
        try:
            FeedEvent.model_validate(item)
        except ValidationError:
            bad.append(item)
    assert bad and len(bad) < len(items)
    assert all("handle" in item for item in bad)


def test_feed_configuration_round_trip(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox(scenario=calm())
    client, _ = client_for(box)
    assert client.get_feed_config() is None

    client.put_feed_config([READY, "canceled"], visibility_timeout=240, retention=432_000)
    config = client.get_feed_config()
    client.delete_feed_config()
    client.delete_feed_config()  # already gone: done

    assert config is not None
    assert (config.filter_type, config.statuses) == ("FromWorkflow", [READY, "canceled"])
    assert (config.visibility_timeout, config.retention, config.quantity) == (240, 432_000, 0)
    assert config.oldest_message_age == 0
    assert client.get_feed_config() is None
    with pytest.raises(VtexNotFound):
        client.get_feed()


def test_hook_configuration_round_trip(
    make_sandbox: MakeSandbox, canned: Callable[..., CannedServer]
) -> None:
    box = make_sandbox(scenario=calm())
    client, _ = client_for(box)
    receiver = canned(200)
    url = receiver.url + "/vtex/hook"
    assert client.get_hook_config() is None

    client.set_hook_config(url, [READY], {"key": "s3cret", "X-Our-Secret": "s3cret"})
    saved = client.get_hook_config()
    client.delete_hook_config()
    client.delete_hook_config()

    assert receiver.paths == ["/vtex/hook"]  # VTEX pinged the URL before saving
    assert saved == {
        "filter": {"type": "FromWorkflow", "status": [READY]},
        "hook": {"url": url, "headers": {"key": "s3cret", "X-Our-Secret": "s3cret"}},
    }
    assert client.get_hook_config() is None


def test_a_hook_without_its_key_header_is_refused_before_any_request(
    make_sandbox: MakeSandbox,
) -> None:
    box = make_sandbox(scenario=calm())
    client, session = client_for(box)

    with pytest.raises(ValueError, match='"key"'):
        client.set_hook_config("https://bridge.example/hook", [READY], {"X-Our-Secret": "s"})

    assert session.sent == []


def test_every_body_the_client_sends_validates_against_vtex_spec(
    make_sandbox: MakeSandbox, canned: Callable[..., CannedServer]
) -> None:
    box = ready(make_sandbox)
    client, session = client_for(box)
    first, second, third = box.order_ids()
    receiver = canned(200)

    client.put_feed_config(STATUSES, visibility_timeout=60)
    client.commit([item["handle"] for item in client.get_feed()])
    client.set_hook_config(receiver.url, [READY], {"key": "k", "X-Our-Secret": "k"})
    client.cancel_order(first, "out of stock")
    request_id = shopper_request(box, second)
    client.deny_cancellation(second, request_id, "already shipped")
    client.start_handling(third)
    client.post_invoice(third, full_invoice(box, third, "NF-7"))
    client.update_tracking(third, "NF-7", "BR7")
    client.update_tracking(
        third, "NF-7", "BR7", courier="Correios", tracking_url="https://t/BR7",
        dispatched_date="2024-02-12T15:00:00-03:00",
    )  # fmt: skip

    writes = [s for s in session.sent if s.body is not None]
    for sent in writes:
        if template_of(sent.path) == DENY:  # the guide's body: exactly these two strings
            assert sent.body == {
                "cancellationRequestId": request_id,
                "denyReason": "already shipped",
            }
        else:
            validate_request(sent.method, template_of(sent.path), sent.body)
    assert {template_of(s.path) for s in writes} == set(TEMPLATES)
    invoice = next(s.body for s in writes if s.path.endswith("/invoice"))
    assert invoice["invoiceValue"] == str(box.order(third)["value"])


def test_each_call_is_logged_at_debug_by_path_template_without_credentials(
    make_sandbox: MakeSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    box = ready(make_sandbox)
    client, _ = client_for(box)
    cfg = box.sandbox.world.config
    order_id = box.order_ids()[0]

    with caplog.at_level(logging.DEBUG):
        client.get_order(order_id)
        client.start_handling(order_id)
        client.start_handling(order_id)

    ours = [r.getMessage() for r in caplog.records if r.name.startswith("bridge.vtex")]
    assert [m.split(" in ")[0] for m in ours] == [
        "VTEX GET /api/oms/pvt/orders/{orderId} -> 200",
        "VTEX POST /api/oms/pvt/orders/{orderId}/start-handling -> 204",
        "VTEX POST /api/oms/pvt/orders/{orderId}/start-handling -> 409",
    ]
    every = " ".join(r.getMessage() for r in caplog.records)
    assert cfg.app_token not in every and cfg.app_key not in every


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("token", "status"), [("wrong-token-XYZ", 403), ("", 401)])
def test_refused_credentials_raise_an_auth_error_that_never_shows_them(
    make_sandbox: MakeSandbox, token: str, status: int
) -> None:
    box = ready(make_sandbox)
    client, _ = client_for(box, token=token)
    app_key = box.sandbox.world.config.app_key

    with pytest.raises(VtexAuthError) as caught:
        client.get_order(box.order_ids()[0])

    error = caught.value
    assert isinstance(error, AuthenticationError) and error.status == status
    assert "VTEX_APP_KEY" in str(error) and "VTEX_APP_TOKEN" in str(error)
    shown = str(error) + repr(error) + repr(client)
    assert app_key not in shown
    assert not token or token not in shown
    assert box.sandbox.world.config.app_token not in repr(client)


def test_an_unknown_order_raises_not_found(make_sandbox: MakeSandbox) -> None:
    box = ready(make_sandbox)
    client, _ = client_for(box)

    with pytest.raises(VtexNotFound) as caught:
        client.get_order("9999999999999-01")

    assert isinstance(caught.value, NotFoundError)
    assert (caught.value.status, caught.value.code) == (404, "OMS001")
    assert caught.value.path == "/api/oms/pvt/orders/9999999999999-01"


def test_a_429_raises_rate_limited_with_retry_after_and_pauses_the_budget(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready(make_sandbox, faults="get_order:429=100%,retry-after=3")
    budget = FakeBudget()
    client, _ = client_for(box, budget=budget)

    with pytest.raises(RateLimited) as caught:
        client.get_order(box.order_ids()[0])

    assert isinstance(caught.value, TransientError)
    assert (caught.value.status, caught.value.retry_after) == (429, 3)
    assert budget.acquired == 1 and budget.pauses == [3]


def test_a_short_budget_wait_is_slept_and_a_long_one_raises_without_calling(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready(make_sandbox)
    order_id = box.order_ids()[0]
    short = FakeBudget(waits=[0.01, 0.01])
    long = FakeBudget(waits=[30.0])
    patient, _ = client_for(box, budget=short, max_budget_wait=1.0)
    hurried, session = client_for(box, budget=long, max_budget_wait=1.0)

    assert patient.get_order(order_id).order_id == order_id
    with pytest.raises(RateLimited) as caught:
        hurried.get_order(order_id)

    assert short.acquired == 3
    assert caught.value.retry_after == 30.0 and caught.value.status is None
    assert session.sent == [] and long.pauses == []


def test_a_500_raises_a_transient_server_error(make_sandbox: MakeSandbox) -> None:
    box = ready(make_sandbox, faults="get_order:500=100%")
    client, _ = client_for(box)

    with pytest.raises(VtexServerError) as caught:
        client.get_order(box.order_ids()[0])

    assert isinstance(caught.value, TransientError) and caught.value.status == 500


def test_a_dropped_answer_raises_a_connection_error_although_the_cancel_took_effect(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready(make_sandbox, faults="cancel:drop=100%")
    client, _ = client_for(box)
    order_id = box.order_ids()[0]

    with pytest.raises(VtexConnectionError) as caught:
        client.cancel_order(order_id, "out of stock")

    assert isinstance(caught.value, TransientError)
    assert "re-read the order" in str(caught.value)
    assert box.order(order_id)["status"] == "cancellation-requested"
    assert [e["kind"] for e in box.sandbox.world.effects_of(order_id)] == ["vtex.cancel_request"]


def test_an_answer_slower_than_the_read_timeout_raises_a_timeout(make_sandbox: MakeSandbox) -> None:
    box = ready(make_sandbox, faults="get_order:latency=500ms")
    client, _ = client_for(box, timeout=(1.0, 0.2))

    with pytest.raises(VtexTimeout) as caught:
        client.get_order(box.order_ids()[0])

    assert isinstance(caught.value, TransientError) and caught.value.status is None


def test_an_invalid_order_id_is_refused_before_any_request(make_sandbox: MakeSandbox) -> None:
    box = ready(make_sandbox)
    budget = FakeBudget()
    client, session = client_for(box, budget=budget)

    for bad in ["../feed/config", "1234-01?x=1", "1234567890123-1", "", "a" * 41 + "-01"]:
        with pytest.raises(ValueError, match="not a VTEX order id"):
            client.get_order(bad)
        with pytest.raises(ValueError):
            client.cancel_order(bad, "reason")

    assert session.sent == [] and budget.acquired == 0


def test_a_feed_answer_that_is_not_a_list_is_a_transient_bad_response(
    canned: Callable[..., CannedServer],
) -> None:
    server = canned(200, b'{"items": []}', {"Content-Type": "application/json"})
    client = VtexClient(server.url, "key", SecretStr("token"))

    with pytest.raises(VtexBadResponse) as caught:
        client.get_feed()

    assert isinstance(caught.value, VtexServerError) and isinstance(caught.value, TransientError)
    assert caught.value.path == "/api/orders/feed"


def test_a_redirect_is_not_followed_so_the_token_stays_home(
    canned: Callable[..., CannedServer],
) -> None:
    elsewhere = canned(200, b"[]")
    server = canned(302, b"", {"Location": elsewhere.url + "/api/orders/feed"})
    client = VtexClient(server.url, "key", SecretStr("token"))

    with pytest.raises(VtexPermanentError, match="VTEX_BASE_URL"):
        client.get_feed()

    assert len(server.paths) == 1 and elsewhere.paths == []
