"""The sandbox speaks VTEX's OpenAPI contract: every body it answers, and every body these tests
send it, validates against VTEX's own Orders API description (``tests/vtex_spec.py``).

The sandbox is driven into realistic states first (handling, cancellation requests, cancelled,
invoiced with tracking, split orders), so the documents checked are the ones the bridge will read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from sandbox.scenario import ScenarioConfig
from tests.sandbox_client import FEED_STATUSES, SandboxClient, wait_until
from tests.vtex_spec import require_spec, validate_request, validate_response

MakeSandbox = Callable[..., SandboxClient]

ORDER = "/api/oms/pvt/orders/{orderId}"
ORDERS = "/api/oms/pvt/orders"
ORDER_GROUP = "/api/oms/pvt/orders/order-group/{orderGroup}"
START_HANDLING = ORDER + "/start-handling"
CANCEL = ORDER + "/cancel"
INVOICE = ORDER + "/invoice"
TRACKING = ORDER + "/invoice/{invoiceNumber}"
FEED = "/api/orders/feed"
FEED_CONFIG = "/api/orders/feed/config"
HOOK_CONFIG = "/api/orders/hook/config"


@pytest.fixture(autouse=True)
def _spec() -> None:
    """Skip (with the reason) when VTEX's OpenAPI file is not beside the repository."""
    require_spec()


# -- helpers: every body sent is checked against the spec first ------------------------------


def send(
    box: SandboxClient, method: str, template: str, body: Any = None, **params: str
) -> requests.Response:
    """Validate ``body`` as a request of ``METHOD template``, then send it to the sandbox."""
    if body is not None:
        validate_request(method, template, body)
    path = template.format(**params)
    return box.vtex(method, path) if body is None else box.vtex(method, path, json=body)


def get_order(box: SandboxClient, order_id: str) -> dict[str, Any]:
    """GET the order and assert the document is a valid GetOrder 200."""
    response = send(box, "GET", ORDER, orderId=order_id)
    assert response.status_code == 200, response.text
    order: dict[str, Any] = response.json()
    validate_response("GET", ORDER, 200, order)
    # GetOrder does not describe cancellationRequests; the order-group schema of the same
    # order document does, so check the list against that one.
    validate_response(
        "GET", ORDER_GROUP, 200, [{"cancellationRequests": order.get("cancellationRequests")}]
    )
    return order


def feed_config_body(statuses: list[str], visibility: int = 30) -> dict[str, Any]:
    return {
        "filter": {"type": "FromWorkflow", "status": statuses},
        "queue": {
            "visibilityTimeoutInSeconds": visibility,
            "MessageRetentionPeriodInSeconds": 345_600,
        },
    }


def invoice_body(order: dict[str, Any], number: str, seller: str | None = None) -> dict[str, Any]:
    items = [i for i in order["items"] if seller is None or i["seller"] == seller]
    return {
        "type": "Output",
        "issuanceDate": "2024-02-12T13:59:00-03:00",
        "invoiceNumber": number,
        "invoiceValue": str(sum(i["price"] * i["quantity"] for i in items)),
        "invoiceKey": None,
        "invoiceUrl": None,
        "courier": "Correios",
        "trackingNumber": "",
        "trackingUrl": "",
        "dispatchedDate": None,
        "items": [
            {
                "id": i["id"],
                "price": i["price"],
                "quantity": i["quantity"],
                "description": i["name"],
            }
            for i in items
        ],
    }


def assert_receipt(response: requests.Response, method: str, template: str) -> None:
    assert response.status_code == 200, response.text
    validate_response(method, template, 200, response.json())


def ready_sandbox(make_sandbox: MakeSandbox, split_share: float = 0.0) -> SandboxClient:
    """Given orders that all reached ready-for-handling, and no shopper who cancels on their own."""
    box = make_sandbox(
        scenario=ScenarioConfig(
            orders=4,
            seed=3,
            split_share=split_share,
            cancel_in_window_share=0.0,
            cancel_after_window_share=0.0,
        )
    )
    response = send(box, "POST", FEED_CONFIG, feed_config_body(FEED_STATUSES))
    assert response.status_code == 200, response.text
    box.advance(4000)
    return box


def shopper_cancel(box: SandboxClient, order_id: str) -> None:
    response = box.vtex(
        "POST", f"/_sandbox/orders/{order_id}/shopper-cancel", json={"reason": "found it cheaper"}
    )
    assert response.status_code == 200, response.text


# -- GET order -------------------------------------------------------------------------------


def _ready(box: SandboxClient, order_id: str) -> None:
    pass


def _handling(box: SandboxClient, order_id: str) -> None:
    assert send(box, "POST", START_HANDLING, orderId=order_id).status_code == 204


def _shopper_request(box: SandboxClient, order_id: str) -> None:
    shopper_cancel(box, order_id)


def _seller_request(box: SandboxClient, order_id: str) -> None:
    _handling(box, order_id)
    cancel = {"reason": "out of stock", "requestedByUser": False}
    assert_receipt(send(box, "POST", CANCEL, cancel, orderId=order_id), "POST", CANCEL)


def _denied_request(box: SandboxClient, order_id: str) -> None:
    _handling(box, order_id)
    shopper_cancel(box, order_id)
    request_id = get_order(box, order_id)["cancellationRequests"][0]["id"]
    response = box.vtex(  # deny-cancellation-request is in a guide, not in the OpenAPI file
        "POST",
        f"/api/orders/pvt/document/{order_id}/deny-cancellation-request",
        json={"cancellationRequestId": request_id, "denyReason": "already shipped"},
    )
    assert response.status_code == 200, response.text


def _canceled(box: SandboxClient, order_id: str) -> None:
    shopper_cancel(box, order_id)
    cancel = {"reason": "accepted the shopper's request"}
    assert_receipt(send(box, "POST", CANCEL, cancel, orderId=order_id), "POST", CANCEL)


def _invoiced_with_tracking(box: SandboxClient, order_id: str) -> None:
    _handling(box, order_id)
    order = get_order(box, order_id)
    for n, seller in enumerate(s["id"] for s in order["sellers"]):
        body = invoice_body(order, f"NF{order['sequence']}{n:02d}", seller)
        assert_receipt(send(box, "POST", INVOICE, body, orderId=order_id), "POST", INVOICE)
    tracking = {
        "trackingNumber": "BR123456789",
        "trackingUrl": "https://tracking.example/BR123456789",
        "courier": "Correios",
        "dispatchedDate": "2024-02-12T15:00:00-03:00",
    }
    number = f"NF{order['sequence']}00"
    response = send(box, "PATCH", TRACKING, tracking, orderId=order_id, invoiceNumber=number)
    assert_receipt(response, "PATCH", TRACKING)


def _partly_invoiced_split(box: SandboxClient, order_id: str) -> None:
    _handling(box, order_id)
    order = get_order(box, order_id)
    body = invoice_body(order, f"NF{order['sequence']}00", order["sellers"][0]["id"])
    assert_receipt(send(box, "POST", INVOICE, body, orderId=order_id), "POST", INVOICE)


STATES: dict[str, tuple[Callable[[SandboxClient, str], None], str]] = {
    "ready-for-handling": (_ready, "ready-for-handling"),
    "handling": (_handling, "handling"),
    "shopper-cancellation-request": (_shopper_request, "cancellation-requested"),
    "seller-cancellation-request": (_seller_request, "cancellation-requested"),
    "denied-cancellation-request": (_denied_request, "handling"),
    "canceled": (_canceled, "canceled"),
    "invoiced-with-tracking": (_invoiced_with_tracking, "invoiced"),
}


@pytest.mark.parametrize("state", list(STATES))
def test_get_order_validates_in_every_state(make_sandbox: MakeSandbox, state: str) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    drive, expected_status = STATES[state]

    drive(box, order_id)
    order = get_order(box, order_id)

    assert order["status"] == expected_status


def test_cancelled_order_carries_valid_cancellation_data(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]

    _canceled(box, order_id)
    order = get_order(box, order_id)

    assert order["cancellationData"]["Reason"] == "accepted the shopper's request"
    assert order["cancellationRequests"][0]["reason"] == "found it cheaper"


def test_invoiced_order_packages_validate_with_tracking(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]

    _invoiced_with_tracking(box, order_id)
    packages = get_order(box, order_id)["packageAttachment"]["packages"]

    assert packages[0]["trackingNumber"] == "BR123456789"
    assert packages[0]["trackingUrl"] == "https://tracking.example/BR123456789"
    assert all(isinstance(p["invoiceValue"], int) for p in packages)


@pytest.mark.parametrize(
    ("drive", "status"),
    [
        (_ready, "ready-for-handling"),
        (_partly_invoiced_split, "handling"),
        (_invoiced_with_tracking, "invoiced"),
    ],
    ids=["ready", "one-seller-invoiced", "both-sellers-invoiced"],
)
def test_split_order_validates(
    make_sandbox: MakeSandbox, drive: Callable[[SandboxClient, str], None], status: str
) -> None:
    box = ready_sandbox(make_sandbox, split_share=1.0)
    order_id = box.order_ids()[0]

    drive(box, order_id)
    order = get_order(box, order_id)

    assert len(order["sellers"]) == 2
    assert {i["seller"] for i in order["items"]} == {s["id"] for s in order["sellers"]}
    assert order["status"] == status


# -- list orders -----------------------------------------------------------------------------


def test_list_orders_pages_validate_with_results_and_empty(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    first, second, third = box.order_ids()[:3]
    _handling(box, first)
    _canceled(box, second)
    _invoiced_with_tracking(box, third)

    queries = {
        "everything": "",
        "one-status": "?f_status=handling",
        "two-statuses": "?f_status=canceled,invoiced",
        "second-page": "?page=2&per_page=3",
        "no-match": "?f_status=no-such-status",
        "past-the-end": "?page=5&per_page=10",
    }
    pages = {}
    for name, query in queries.items():
        response = box.vtex("GET", ORDERS + query)
        assert response.status_code == 200, response.text
        validate_response("GET", ORDERS, 200, response.json())
        pages[name] = response.json()

    assert len(pages["everything"]["list"]) == 4
    assert [o["orderId"] for o in pages["one-status"]["list"]] == [first]
    assert len(pages["two-statuses"]["list"]) == 2
    assert len(pages["second-page"]["list"]) == 1
    assert pages["no-match"]["list"] == []
    assert pages["no-match"]["paging"]["total"] == 0
    assert pages["past-the-end"]["list"] == []


def test_list_orders_validates_before_any_order_exists(sandbox: SandboxClient) -> None:
    response = sandbox.vtex("GET", ORDERS)

    assert response.status_code == 200
    validate_response("GET", ORDERS, 200, response.json())
    assert response.json()["list"] == []


# -- feed ------------------------------------------------------------------------------------


def test_feed_items_and_commits_validate(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox, split_share=0.5)
    first, second, third = box.order_ids()[:3]
    _handling(box, first)
    _canceled(box, second)
    _invoiced_with_tracking(box, third)

    states = set()
    while batch := send(box, "GET", FEED + "?maxlot=10").json():
        validate_response("GET", FEED, 200, batch)
        states |= {item["state"] for item in batch}
        commit = {"handles": [item["handle"] for item in batch]}
        assert send(box, "POST", FEED, commit).status_code == 200

    assert states == set(FEED_STATUSES)
    empty = box.vtex("GET", FEED).json()
    validate_response("GET", FEED, 200, empty)
    assert empty == []


@pytest.mark.parametrize(
    "flt",
    [
        {"type": "FromWorkflow", "status": ["ready-for-handling", "invoiced"]},
        {"type": "FromOrders", "expression": 'status = "invoiced"', "disableSingleFire": False},
    ],
    ids=["from-workflow", "from-orders"],
)
def test_feed_configuration_validates_empty_and_with_events(
    make_sandbox: MakeSandbox, flt: dict[str, Any]
) -> None:
    box = make_sandbox()
    body = {**feed_config_body([]), "filter": flt}
    assert send(box, "POST", FEED_CONFIG, body).status_code == 200

    empty = box.vtex("GET", FEED_CONFIG).json()
    box.advance(4000)
    busy = box.vtex("GET", FEED_CONFIG).json()

    validate_response("GET", FEED_CONFIG, 200, empty)
    validate_response("GET", FEED_CONFIG, 200, busy)
    assert empty["quantity"] == 0
    assert busy["quantity"] > 0
    assert busy["filter"] == flt


# -- action answers and errors ---------------------------------------------------------------


def test_start_handling_refusal_validates(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    _handling(box, order_id)

    response = send(box, "POST", START_HANDLING, orderId=order_id)

    assert response.status_code == 409
    validate_response("POST", START_HANDLING, 409, response.json())
    assert response.json()["error"]["code"] == "OMS003"


def test_start_handling_without_credentials_validates_as_401(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    url = box.vtex_url + START_HANDLING.format(orderId=box.order_ids()[0])

    response = requests.post(url, timeout=10)

    assert response.status_code == 401
    validate_response("POST", START_HANDLING, 401, response.json())


def test_every_error_body_has_the_documented_oms_error_shape(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    _invoiced_with_tracking(box, order_id)

    errors = [
        box.vtex("GET", ORDER.format(orderId="0000000000000-01")),
        box.vtex("POST", CANCEL.format(orderId=order_id), json={"reason": "too late"}),
        box.vtex("POST", INVOICE.format(orderId=order_id), json={"type": "Output"}),
        box.vtex(
            "PATCH",
            TRACKING.format(orderId=order_id, invoiceNumber="NF-NONE"),
            json={"trackingNumber": "X", "trackingUrl": None, "courier": None},
        ),
        box.vtex("GET", FEED + "?maxlot=11"),
        box.vtex("GET", FEED, headers={"X-VTEX-API-AppToken": "wrong"}),
    ]

    assert [r.status_code for r in errors] == [404, 409, 400, 404, 400, 403]
    for response in errors:
        # start-handling's 409 is the one place the spec describes VTEX's OMS error body.
        validate_response("POST", START_HANDLING, 409, response.json())


# -- hook notifications ----------------------------------------------------------------------


class HookReceiver:
    """A tiny HTTP endpoint on a free port that records what is POSTed to it and answers 200."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver._lock:
                    receiver.bodies.append(body)
                    receiver.headers.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/vtex/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def notifications(self) -> list[tuple[dict[str, Any], dict[str, str]]]:
        with self._lock:
            return [
                (b, h)
                for b, h in zip(self.bodies, self.headers, strict=True)
                if b != {"hookConfig": "ping"}
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    hook = HookReceiver()
    yield hook
    hook.close()


def test_hook_notifications_validate_as_the_documented_notification_body(
    make_sandbox: MakeSandbox, receiver: HookReceiver
) -> None:
    box = make_sandbox(
        scenario=ScenarioConfig(
            orders=3, seed=5, cancel_in_window_share=0.0, cancel_after_window_share=0.0
        )
    )
    config = {
        "filter": {"type": "FromWorkflow", "status": ["ready-for-handling", "handling"]},
        "hook": {"url": receiver.url, "headers": {"key": "s3cr3t", "X-Our-Secret": "s3cr3t"}},
    }
    saved = send(box, "POST", HOOK_CONFIG, config)
    assert saved.status_code == 200, saved.text
    assert receiver.bodies[:1] == [{"hookConfig": "ping"}]

    box.advance(4000)
    _handling(box, box.order_ids()[0])
    wait_until(lambda: len(receiver.notifications()) >= 4, timeout=10, what="4 hook notifications")

    received = receiver.notifications()
    for body, headers in received:
        validate_response("POST", HOOK_CONFIG, 200, body)
        assert headers.get("X-Our-Secret") == "s3cr3t"
        assert body["Origin"]["Key"] == box.sandbox.world.config.app_key
    states = sorted(body["State"] for body, _ in received)
    assert states == ["handling", "ready-for-handling", "ready-for-handling", "ready-for-handling"]
