"""VTEX OMS order endpoints over HTTP, against the real sandbox, and the faults it injects."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from sandbox.scenario import ScenarioConfig
from tests.sandbox_client import SandboxClient

MakeSandbox = Callable[..., SandboxClient]
ORDERS = "/api/oms/pvt/orders"
READY = "ready-for-handling"
HANDLING = "handling"
REQUESTED = "cancellation-requested"
CANCELED = "canceled"
INVOICED = "invoiced"


def calm(orders: int = 3, **kw: Any) -> ScenarioConfig:
    """A scenario in which no shopper cancels on their own (tests cancel when they want)."""
    kw.setdefault("seed", 1)
    kw.setdefault("split_share", 0.0)
    return ScenarioConfig(
        orders=orders, cancel_in_window_share=0.0, cancel_after_window_share=0.0, **kw
    )


def ready_sandbox(make_sandbox: MakeSandbox, *, faults: str = "", **kw: Any) -> SandboxClient:
    """Given a sandbox whose orders all sit in ready-for-handling."""
    box = make_sandbox(scenario=calm(**kw), faults=faults)
    assert box.configure_feed().status_code == 200
    box.advance(4000)
    world = box.sandbox.world
    with world.lock:  # read directly, not over HTTP: the fault plan may refuse get_order
        statuses = {o.status for o in world.orders.values()}
    assert statuses == {READY}
    return box


def in_window_sandbox(make_sandbox: MakeSandbox) -> SandboxClient:
    """Given a sandbox whose orders are all paid and inside the cancellation window."""
    box = make_sandbox(scenario=calm())
    box.configure_feed()
    box.advance(1300)  # created by 1200, approved about a minute later, window lasts 1800
    assert {box.order(o)["status"] for o in box.order_ids()} == {"window-to-cancel"}
    return box


def assert_oms_error(response: requests.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "exception"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


def start_handling(box: SandboxClient, order_id: str) -> requests.Response:
    return box.vtex("POST", f"{ORDERS}/{order_id}/start-handling")


def cancel(box: SandboxClient, order_id: str, reason: str = "out of stock") -> requests.Response:
    return box.vtex(
        "POST", f"{ORDERS}/{order_id}/cancel", json={"reason": reason, "requestedByUser": False}
    )


def shopper_cancel(box: SandboxClient, order_id: str) -> str:
    response = box.vtex(
        "POST", f"/_sandbox/orders/{order_id}/shopper-cancel", json={"reason": "changed my mind"}
    )
    assert response.status_code == 200, response.text
    result: str = response.json()["result"]
    return result


def deny(box: SandboxClient, order_id: str, request_id: str) -> requests.Response:
    return box.vtex(
        "POST",
        f"/api/orders/pvt/document/{order_id}/deny-cancellation-request",
        json={"cancellationRequestId": request_id, "denyReason": "already with the carrier"},
    )


def invoice_body(
    order: dict[str, Any], number: str, seller: str | None = None, value: Any = None
) -> dict[str, Any]:
    """An Output invoice for the whole order, or for one seller's items."""
    items = [i for i in order["items"] if seller is None or i["seller"] == seller]
    total = sum(i["price"] * i["quantity"] for i in items)
    return {
        "type": "Output",
        "issuanceDate": "2024-02-12T13:59:00-03:00",
        "invoiceNumber": number,
        "invoiceValue": str(total) if value is None else value,
        "items": [{"id": i["id"], "price": i["price"], "quantity": i["quantity"]} for i in items],
        "courier": "Correios",
    }


def post_invoice(box: SandboxClient, order_id: str, body: Any) -> requests.Response:
    return box.vtex("POST", f"{ORDERS}/{order_id}/invoice", json=body)


def tracking_body(number: str = "BR123456789") -> dict[str, Any]:
    return {
        "trackingNumber": number,
        "trackingUrl": f"https://tracking.example/{number}",
        "courier": "Correios",
        "dispatchedDate": None,
    }


# -- reading orders ------------------------------------------------------------------------


def test_an_unknown_order_answers_404_with_the_oms_error_body(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)

    assert_oms_error(box.vtex("GET", f"{ORDERS}/9999999999999-01"), 404)


def test_list_orders_filters_by_status(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox, orders=4)
    handled = box.order_ids()[0]
    assert start_handling(box, handled).status_code == 204

    in_handling = box.vtex("GET", f"{ORDERS}?f_status={HANDLING}").json()
    ready = box.vtex("GET", f"{ORDERS}?f_status={READY}").json()
    both = box.vtex("GET", f"{ORDERS}?f_status={READY},{HANDLING}").json()

    assert [o["orderId"] for o in in_handling["list"]] == [handled]
    assert in_handling["paging"]["total"] == 1
    assert sorted(o["orderId"] for o in ready["list"]) == sorted(box.order_ids()[1:])
    assert {o["status"] for o in ready["list"]} == {READY}
    assert both["paging"]["total"] == 4


def test_list_orders_pages_through_the_results(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox, orders=5)

    pages = [box.vtex("GET", f"{ORDERS}?page={n}&per_page=2").json() for n in (1, 2, 3, 4)]

    assert [len(p["list"]) for p in pages] == [2, 2, 1, 0]
    assert pages[1]["paging"] == {"total": 5, "pages": 3, "currentPage": 2, "perPage": 2}
    listed = [o["orderId"] for p in pages for o in p["list"]]
    assert sorted(listed) == sorted(box.order_ids())


@pytest.mark.parametrize(
    "query", ["per_page=0", "per_page=101", "page=31", "page=0", "page=x"], ids=str
)
def test_list_orders_refuses_out_of_range_paging(make_sandbox: MakeSandbox, query: str) -> None:
    box = ready_sandbox(make_sandbox)

    assert_oms_error(box.vtex("GET", f"{ORDERS}?{query}"), 400)


# -- start handling --------------------------------------------------------------------------


def test_start_handling_moves_a_ready_order_to_handling(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]

    response = start_handling(box, order_id)

    assert response.status_code == 204
    assert response.content == b""
    assert box.order(order_id)["status"] == HANDLING


def test_start_handling_a_second_time_is_refused_with_oms003(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    assert start_handling(box, order_id).status_code == 204

    assert_oms_error(start_handling(box, order_id), 409, "OMS003")
    assert box.order(order_id)["status"] == HANDLING
    assert box.report()["effects"]["vtex.start_handling"] == 1


def test_start_handling_outside_ready_for_handling_is_refused_with_oms003(
    make_sandbox: MakeSandbox,
) -> None:
    box = in_window_sandbox(make_sandbox)
    order_id = box.order_ids()[0]

    assert_oms_error(start_handling(box, order_id), 409, "OMS003")
    assert box.order(order_id)["status"] == "window-to-cancel"


# -- cancel ------------------------------------------------------------------------------------


def test_seller_cancel_of_a_ready_order_asks_first_and_confirms_on_the_second_call(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]

    first = cancel(box, order_id)
    status_between = box.order(order_id)["status"]
    second = cancel(box, order_id)

    assert first.status_code == 200
    assert status_between == REQUESTED
    assert second.status_code == 200
    body = second.json()
    assert set(body) == {"date", "orderId", "receipt"}
    assert body["orderId"] == order_id
    assert body["receipt"] != first.json()["receipt"]
    order = box.order(order_id)
    assert order["status"] == CANCELED
    assert order["cancellationData"]["Reason"] == "out of stock"


def test_cancel_of_an_invoiced_order_is_refused(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    assert start_handling(box, order_id).status_code == 204
    order = box.order(order_id)
    assert post_invoice(box, order_id, invoice_body(order, "NF-1")).status_code == 200

    assert_oms_error(cancel(box, order_id), 409)
    assert box.order(order_id)["status"] == INVOICED


# -- shopper cancellation requests and denial ------------------------------------------------


def test_shopper_cancel_after_the_window_becomes_a_cancellation_request(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]

    result = shopper_cancel(box, order_id)

    assert result == "requested"
    order = box.order(order_id)
    assert order["status"] == REQUESTED
    (request,) = order["cancellationRequests"]
    assert request["id"]
    assert request["reason"] == "changed my mind"
    assert request["requestedByUser"] is True
    assert request["deniedBySeller"] is False
    assert order["cancellationData"] is None


def test_denying_a_request_returns_the_order_to_its_former_status(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    assert start_handling(box, order_id).status_code == 204
    shopper_cancel(box, order_id)
    request_id = box.order(order_id)["cancellationRequests"][0]["id"]

    response = deny(box, order_id, request_id)

    assert response.status_code == 200
    order = box.order(order_id)
    assert order["status"] == HANDLING
    (request,) = order["cancellationRequests"]
    assert request["deniedBySeller"] is True
    assert request["deniedBySellerReason"] == "already with the carrier"


def test_deny_with_an_unknown_request_id_is_refused_with_400(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    shopper_cancel(box, order_id)

    assert_oms_error(deny(box, order_id, "no-such-request"), 400)
    assert box.order(order_id)["status"] == REQUESTED


def test_deny_on_an_order_not_awaiting_a_decision_is_refused_with_400(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    shopper_cancel(box, order_id)
    request_id = box.order(order_id)["cancellationRequests"][0]["id"]
    assert deny(box, order_id, request_id).status_code == 200  # back in ready-for-handling

    assert_oms_error(deny(box, order_id, request_id), 400)
    assert box.order(order_id)["status"] == READY


def test_deny_on_a_cancelled_order_is_refused_with_400(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    shopper_cancel(box, order_id)
    request_id = box.order(order_id)["cancellationRequests"][0]["id"]
    assert cancel(box, order_id).status_code == 200  # the seller accepts the request

    assert_oms_error(deny(box, order_id, request_id), 400)
    assert box.order(order_id)["status"] == CANCELED


def test_shopper_cancel_inside_the_window_cancels_the_order_by_itself(
    make_sandbox: MakeSandbox,
) -> None:
    box = in_window_sandbox(make_sandbox)
    order_id = box.order_ids()[0]

    result = shopper_cancel(box, order_id)

    assert result == "canceled"
    order = box.order(order_id)
    assert order["status"] == CANCELED
    assert order["cancellationData"]["RequestedByUser"] is True
    assert order["cancellationData"]["Reason"] == "changed my mind"
    assert order["cancellationData"]["CancellationDate"]
    assert not order["cancellationRequests"]


def test_shopper_cancel_of_an_unknown_order_answers_404(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)

    response = box.vtex("POST", "/_sandbox/orders/9999999999999-01/shopper-cancel", json={})

    assert_oms_error(response, 404)


# -- invoices --------------------------------------------------------------------------------


def test_output_invoices_adding_up_to_the_order_value_make_it_invoiced(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    assert start_handling(box, order_id).status_code == 204
    order = box.order(order_id)

    response = post_invoice(box, order_id, invoice_body(order, "NF-1"))

    assert response.status_code == 200
    assert set(response.json()) == {"date", "orderId", "receipt"}
    after = box.order(order_id)
    assert after["status"] == INVOICED
    (package,) = after["packageAttachment"]["packages"]
    assert package["invoiceNumber"] == "NF-1"
    assert package["invoiceValue"] == order["value"]
    assert package["type"] == "Output"


def test_a_partial_invoice_leaves_the_order_status_as_it_was(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    order = next(o for o in map(box.order, box.order_ids()) if o["items"][0]["price"] < o["value"])
    order_id = order["orderId"]
    assert start_handling(box, order_id).status_code == 204
    first_item = order["items"][0]
    partial = {
        **invoice_body(order, "NF-1"),
        "invoiceValue": str(first_item["price"]),
        "items": [{"id": first_item["id"], "price": first_item["price"], "quantity": 1}],
    }

    response = post_invoice(box, order_id, partial)

    assert response.status_code == 200
    after = box.order(order_id)
    assert after["status"] == HANDLING
    assert [p["invoiceNumber"] for p in after["packageAttachment"]["packages"]] == ["NF-1"]


def test_each_seller_invoice_of_a_split_order_produces_an_invoiced_event(
    make_sandbox: MakeSandbox,
) -> None:
    box = make_sandbox(scenario=calm(orders=3, split_share=1.0))
    box.configure_feed([INVOICED])
    box.advance(4000)
    order_id = next(o for o in box.order_ids() if len(box.order(o)["sellers"]) == 2)
    assert start_handling(box, order_id).status_code == 204
    order = box.order(order_id)
    first, second = (s["id"] for s in order["sellers"])

    assert post_invoice(box, order_id, invoice_body(order, "NF-A", first)).status_code == 200
    status_after_first = box.order(order_id)["status"]
    assert post_invoice(box, order_id, invoice_body(order, "NF-B", second)).status_code == 200

    assert status_after_first == HANDLING
    assert box.order(order_id)["status"] == INVOICED
    events = box.drain_feed()
    assert [(e["orderId"], e["state"]) for e in events] == [(order_id, INVOICED)] * 2
    assert len({e["eventId"] for e in events}) == 2


@pytest.mark.parametrize("as_type", [str, int], ids=["string-of-cents", "integer"])
def test_invoice_value_is_accepted_as_a_string_of_cents_or_an_integer(
    make_sandbox: MakeSandbox, as_type: Callable[[int], Any]
) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    order = box.order(order_id)

    body = invoice_body(order, "NF-1", value=as_type(order["value"]))
    response = post_invoice(box, order_id, body)

    assert response.status_code == 200, response.text
    (package,) = box.order(order_id)["packageAttachment"]["packages"]
    assert package["invoiceValue"] == order["value"]


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


@pytest.mark.parametrize(
    "spoil",
    [
        lambda b: _without(b, "type"),
        lambda b: {**b, "type": "Sale"},
        lambda b: {**b, "invoiceValue": "12.34"},
        lambda b: {**b, "invoiceValue": "abc"},
        lambda b: {**b, "invoiceValue": 0},
        lambda b: {**b, "invoiceValue": True},
        lambda b: _without(b, "invoiceNumber"),
        lambda b: _without(b, "issuanceDate"),
        lambda b: {**b, "items": [{**b["items"][0], "price": 12.5}]},
        lambda b: {**b, "items": [{**b["items"][0], "price": "1250"}]},
        lambda b: {**b, "items": "all of them"},
        lambda b: ["not", "an", "object"],
    ],
    ids=[
        "missing-type",
        "unknown-type",
        "decimal-value",
        "garbage-value",
        "zero-value",
        "boolean-value",
        "missing-number",
        "missing-issuance-date",
        "decimal-item-price",
        "string-item-price",
        "items-not-a-list",
        "not-an-object",
    ],
)
def test_a_bad_invoice_body_is_refused_with_400(
    make_sandbox: MakeSandbox, spoil: Callable[[dict[str, Any]], Any]
) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    order = box.order(order_id)

    response = post_invoice(box, order_id, spoil(invoice_body(order, "NF-1")))

    assert_oms_error(response, 400)
    after = box.order(order_id)
    assert after["packageAttachment"]["packages"] == []
    assert after["status"] == READY


def test_the_same_invoice_number_again_changes_nothing_but_is_reported(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    assert start_handling(box, order_id).status_code == 204
    order = box.order(order_id)
    body = invoice_body(order, "NF-1")
    first = post_invoice(box, order_id, body)
    packages = box.order(order_id)["packageAttachment"]["packages"]

    again = post_invoice(box, order_id, {**body, "invoiceValue": "1", "courier": "Other"})

    assert first.status_code == again.status_code == 200
    assert again.json()["receipt"] != first.json()["receipt"]
    assert box.order(order_id)["packageAttachment"]["packages"] == packages
    violations = box.report()["violations"]
    assert {"effect-repeated"} <= {v["rule"] for v in violations if v["orderId"] == order_id}


def test_invoice_on_a_cancelled_order_is_refused(make_sandbox: MakeSandbox) -> None:
    box = in_window_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    assert shopper_cancel(box, order_id) == "canceled"
    order = box.order(order_id)

    assert_oms_error(post_invoice(box, order_id, invoice_body(order, "NF-1")), 409)
    assert box.order(order_id)["packageAttachment"]["packages"] == []


# -- tracking --------------------------------------------------------------------------------


def test_tracking_patch_updates_the_package(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    order = box.order(order_id)
    assert post_invoice(box, order_id, invoice_body(order, "NF-1")).status_code == 200

    response = box.vtex("PATCH", f"{ORDERS}/{order_id}/invoice/NF-1", json=tracking_body())

    assert response.status_code == 200, response.text
    assert set(response.json()) == {"date", "orderId", "receipt"}
    (package,) = box.order(order_id)["packageAttachment"]["packages"]
    assert package["trackingNumber"] == "BR123456789"
    assert package["trackingUrl"] == "https://tracking.example/BR123456789"
    assert package["courier"] == "Correios"


def test_tracking_patch_with_nulls_changes_only_the_tracking_number(
    make_sandbox: MakeSandbox,
) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    order = box.order(order_id)
    assert post_invoice(box, order_id, invoice_body(order, "NF-1")).status_code == 200
    only_number = {
        "trackingNumber": "BR2",
        "trackingUrl": None,
        "courier": None,
        "dispatchedDate": None,
    }

    response = box.vtex("PATCH", f"{ORDERS}/{order_id}/invoice/NF-1", json=only_number)

    assert response.status_code == 200, response.text
    (package,) = box.order(order_id)["packageAttachment"]["packages"]
    assert package["trackingNumber"] == "BR2"
    assert package["courier"] == "Correios"  # from the invoice, left as it was


def test_tracking_patch_of_an_unknown_invoice_answers_404(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    order_id = box.order_ids()[0]
    order = box.order(order_id)
    assert post_invoice(box, order_id, invoice_body(order, "NF-1")).status_code == 200

    response = box.vtex("PATCH", f"{ORDERS}/{order_id}/invoice/NF-404", json=tracking_body())

    assert_oms_error(response, 404)


# -- faults over HTTP ------------------------------------------------------------------------


def test_a_429_fault_answers_with_retry_after(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox, faults="get_order:429=100%,retry-after=2")

    response = box.vtex("GET", f"{ORDERS}/{box.order_ids()[0]}")

    assert_oms_error(response, 429)
    assert response.headers["Retry-After"] == "2"


def test_a_dropped_answer_still_applies_the_effect(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox, faults="start_handling:drop=100%")
    order_id = box.order_ids()[0]

    with pytest.raises(requests.ConnectionError):
        start_handling(box, order_id)

    assert box.order(order_id)["status"] == HANDLING


def test_a_500_fault_on_the_vtex_group_answers_500(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox(faults="vtex:500=100%")

    order = box.vtex("GET", f"{ORDERS}/0007000000001-01")
    feed = box.vtex("GET", "/api/orders/feed")

    assert_oms_error(order, 500)
    assert_oms_error(feed, 500)
    assert box.vtex("GET", "/_sandbox/health").status_code == 200


def test_a_latency_fault_delays_the_answer(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox, faults="get_order:latency=50ms")
    order_id = box.order_ids()[0]

    started = time.perf_counter()
    response = box.vtex("GET", f"{ORDERS}/{order_id}")
    elapsed = time.perf_counter() - started

    assert response.status_code == 200
    assert elapsed >= 0.045


def test_the_fault_plan_can_be_changed_at_runtime(make_sandbox: MakeSandbox) -> None:
    box = ready_sandbox(make_sandbox)
    path = f"{ORDERS}/{box.order_ids()[0]}"
    assert box.vtex("GET", path).status_code == 200

    set_500 = box.vtex("POST", "/_sandbox/faults", json={"spec": "get_order:500=100%"})
    during = box.vtex("GET", path)
    cleared = box.vtex("POST", "/_sandbox/faults", json={"spec": ""})
    after = box.vtex("GET", path)

    assert set_500.status_code == 200
    assert set_500.json() == {"rules": {"get_order": {"p500": 1.0}}}
    assert during.status_code == 500
    assert cleared.status_code == 200
    assert after.status_code == 200


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("get_order:teapot=5%", "teapot"),
        ("nowhere:500=5%", "nowhere"),
        ("get_order:500=150%", "150%"),
    ],
)
def test_a_bad_fault_spec_at_runtime_answers_400_naming_the_problem(
    make_sandbox: MakeSandbox, spec: str, named: str
) -> None:
    box = make_sandbox()

    response = box.vtex("POST", "/_sandbox/faults", json={"spec": spec})

    assert_oms_error(response, 400)
    assert named in response.json()["error"]["message"]
    assert box.vtex("GET", "/_sandbox/faults").json() == {"rules": {}}


@pytest.mark.parametrize(
    "body",
    [b'{"advance": NaN}', b'{"advance_feed": Infinity}', b'{"advance": true}', b'{"advance": -1}'],
    ids=["nan", "infinity", "boolean", "negative"],
)
def test_the_clock_only_moves_forward_by_finite_numbers(
    make_sandbox: MakeSandbox, body: bytes
) -> None:
    box = make_sandbox()
    before = box.vtex("POST", "/_sandbox/clock", json={"advance": 0}).json()["now"]

    response = box.vtex(
        "POST", "/_sandbox/clock", data=body, headers={"Content-Type": "application/json"}
    )

    assert_oms_error(response, 400)
    assert box.vtex("POST", "/_sandbox/clock", json={"advance": 0}).json()["now"] == before
