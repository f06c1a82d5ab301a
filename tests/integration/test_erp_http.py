"""The reference ERP over HTTP: auth, import, fulfilment on the store clock, shipments, invoices.

Real HTTP against a real sandbox with a frozen store clock: time moves only through ``advance``.
Orders are imported with ids and items of the scenario's VTEX orders.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.sandbox_client import SandboxClient

INVOICE_NUMBER = re.compile(r"NF\d{13}\d{2}")


@pytest.fixture
def store(sandbox: SandboxClient) -> SandboxClient:
    """The default sandbox with every scenario order created on VTEX."""
    return ready(sandbox)


def ready(client: SandboxClient) -> SandboxClient:
    assert client.configure_feed().status_code == 200
    client.advance(4000)
    return client


def erp_items(client: SandboxClient, order_id: str) -> list[dict[str, Any]]:
    return [
        {"id": i["id"], "quantity": i["quantity"], "price": i["price"], "seller": i["seller"]}
        for i in client.order(order_id)["items"]
    ]


def import_order(client: SandboxClient, order_id: str) -> requests.Response:
    return client.erp("PUT", f"/orders/{order_id}", json={"items": erp_items(client, order_id)})


def erp_order(client: SandboxClient, order_id: str) -> dict[str, Any]:
    r = client.erp("GET", f"/orders/{order_id}")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def pending(client: SandboxClient) -> list[str]:
    r = client.erp("GET", "/shipments/pending")
    assert r.status_code == 200, r.text
    ids: list[str] = r.json()["orderIds"]
    return ids


def packed(client: SandboxClient, order_id: str) -> None:
    """Import the order and let the ERP pick and pack it."""
    assert import_order(client, order_id).status_code == 201
    client.advance(300)
    client.advance(600)
    assert erp_order(client, order_id)["state"] == "packed"


def split_order_id(client: SandboxClient) -> str:
    for order_id in client.order_ids():
        if len({i["seller"] for i in client.order(order_id)["items"]}) > 1:
            return order_id
    raise AssertionError("the scenario has no order with two sellers")


def assert_error(r: requests.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    return error


# -- authentication ---------------------------------------------------------------------------


def test_a_request_without_a_bearer_token_is_refused_with_401_and_a_challenge(
    sandbox: SandboxClient,
) -> None:
    # given no Authorization header
    # when
    r = requests.get(f"{sandbox.erp_url}/shipments/pending", timeout=10)
    # then
    assert_error(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_bearer_token_is_refused_with_403(sandbox: SandboxClient) -> None:
    # given a token that is not the ERP's
    headers = {"Authorization": "Bearer not-the-erp-token"}
    # when
    r = requests.get(f"{sandbox.erp_url}/shipments/pending", headers=headers, timeout=10)
    # then
    assert_error(r, 403)


def test_health_answers_without_credentials(sandbox: SandboxClient) -> None:
    r = requests.get(f"{sandbox.erp_url}/health", timeout=10)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


# -- import -----------------------------------------------------------------------------------


def test_importing_an_order_twice_answers_201_then_200_and_the_ledger_flags_the_repeat(
    store: SandboxClient,
) -> None:
    # given a VTEX order and its items
    order_id = store.order_ids()[0]
    items = erp_items(store, order_id)
    # when the ERP imports it for the first time
    first = store.erp("PUT", f"/orders/{order_id}", json={"items": items})
    # then it is created, new, with the value of its items
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["orderId"] == order_id
    assert body["state"] == "new"
    assert body["released"] is False
    assert body["value"] == sum(i["price"] * i["quantity"] for i in items)
    assert body["invoices"] == []
    assert not _repeats(store, "erp.import", order_id)
    # when the same import comes again
    second = store.erp("PUT", f"/orders/{order_id}", json={"items": items})
    # then the ERP answers idempotently, but the ledger flags the repeated effect
    assert second.status_code == 200, second.text
    assert second.json() == body
    assert _repeats(store, "erp.import", order_id)


def _repeats(client: SandboxClient, kind: str, order_id: str) -> list[dict[str, Any]]:
    return [
        v
        for v in client.report()["violations"]
        if v["rule"] == "effect-repeated" and v["orderId"] == order_id and kind in v["detail"]
    ]


ITEM = {"id": "10600", "quantity": 1, "price": 4450, "seller": "1"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-items-key"),
        pytest.param({"items": []}, id="empty-items"),
        pytest.param({"items": "10600"}, id="items-not-a-list"),
        pytest.param([ITEM], id="body-not-an-object"),
        pytest.param({"items": [{**ITEM, "id": 10600}]}, id="id-not-a-string"),
        pytest.param({"items": [{**ITEM, "price": 44.5}]}, id="price-a-float"),
        pytest.param({"items": [{**ITEM, "price": "4450"}]}, id="price-a-string"),
        pytest.param({"items": [{**ITEM, "price": True}]}, id="price-a-boolean"),
        pytest.param({"items": [{**ITEM, "price": -1}]}, id="price-negative"),
        pytest.param({"items": [{**ITEM, "quantity": 1.5}]}, id="quantity-a-float"),
        pytest.param({"items": [{**ITEM, "quantity": "1"}]}, id="quantity-a-string"),
        pytest.param({"items": [{**ITEM, "quantity": True}]}, id="quantity-a-boolean"),
        pytest.param({"items": [{**ITEM, "quantity": 0}]}, id="quantity-zero"),
        pytest.param({"orderId": "0007000000099-01", "items": [ITEM]}, id="orderId-differs"),
    ],
)
def test_an_import_with_a_bad_body_is_refused_with_400_and_imports_nothing(
    store: SandboxClient, body: Any
) -> None:
    # given a VTEX order id
    order_id = store.order_ids()[0]
    # when the import body is malformed
    r = store.erp("PUT", f"/orders/{order_id}", json=body)
    # then it is refused and the order is not in the ERP
    assert_error(r, 400)
    assert_error(store.erp("GET", f"/orders/{order_id}"), 404)


def test_an_import_whose_body_names_the_same_order_is_accepted(store: SandboxClient) -> None:
    order_id = store.order_ids()[0]
    body = {"orderId": order_id, "items": erp_items(store, order_id)}
    r = store.erp("PUT", f"/orders/{order_id}", json=body)
    assert r.status_code == 201, r.text


def test_an_unknown_order_is_404(store: SandboxClient) -> None:
    assert_error(store.erp("GET", "/orders/0007000000099-01"), 404)


# -- fulfilment on the store clock ------------------------------------------------------------


def test_an_imported_order_is_picked_then_packed_with_one_invoice_per_seller(
    store: SandboxClient,
) -> None:
    # given an imported order with items of two sellers
    order_id = split_order_id(store)
    items = erp_items(store, order_id)
    assert import_order(store, order_id).status_code == 201
    assert erp_order(store, order_id)["state"] == "new"
    # when just under the picking time passes, then it is still new
    store.advance(299)
    assert erp_order(store, order_id)["state"] == "new"
    # when picking time has passed
    store.advance(1)
    # then it is being picked, without invoices
    picking = erp_order(store, order_id)
    assert picking["state"] == "picking"
    assert picking["invoices"] == []
    assert order_id not in pending(store)
    # when packing time passes too
    store.advance(600)
    # then it is packed, waiting for release, with one ERP invoice per seller
    done = erp_order(store, order_id)
    assert done["state"] == "packed"
    assert done["released"] is False
    base = order_id.split("-")[0]
    sellers = sorted({i["seller"] for i in items})
    invoices = done["invoices"]
    assert [i["invoiceNumber"] for i in invoices] == [
        f"NF{base}{n:02d}" for n in range(1, len(sellers) + 1)
    ]
    assert all(INVOICE_NUMBER.fullmatch(i["invoiceNumber"]) for i in invoices)
    for seller, invoice in zip(sellers, invoices, strict=True):
        mine = [i for i in items if i["seller"] == seller]
        assert invoice["seller"] == seller
        assert invoice["source"] == "erp"
        assert invoice["invoiceValue"] == sum(i["price"] * i["quantity"] for i in mine)
        assert invoice["items"] == [
            {"id": i["id"], "price": i["price"], "quantity": i["quantity"]} for i in mine
        ]
    assert sum(i["invoiceValue"] for i in invoices) == done["value"]
    assert pending(store) == [order_id]


def test_a_held_shipment_stays_pending_and_a_released_one_is_dispatched_and_not_cancellable(
    store: SandboxClient,
) -> None:
    # given a packed order waiting for release
    order_id = store.order_ids()[0]
    packed(store, order_id)
    assert order_id in pending(store)
    # when the shipment is held
    held = store.erp("POST", f"/orders/{order_id}/hold")
    # then it is held and still waits for a decision
    assert held.status_code == 200, held.text
    assert held.json()["state"] == "held"
    assert order_id in pending(store)
    # when it is released
    released = store.erp("POST", f"/orders/{order_id}/release")
    # then it is released and no longer pending
    assert released.status_code == 200, released.text
    assert released.json()["released"] is True
    assert order_id not in pending(store)
    # when the dispatch delay passes
    store.advance(120)
    # then the carrier has it and it cannot be cancelled any more
    assert erp_order(store, order_id)["state"] == "dispatched"
    error = assert_error(store.erp("POST", f"/orders/{order_id}/cancel"), 409)
    assert order_id in error["message"]
    assert erp_order(store, order_id)["state"] == "dispatched"


def test_a_release_is_not_dispatched_before_the_dispatch_delay(store: SandboxClient) -> None:
    order_id = store.order_ids()[0]
    packed(store, order_id)
    assert store.erp("POST", f"/orders/{order_id}/release").status_code == 200
    store.advance(119)
    assert erp_order(store, order_id)["state"] == "packed"


def test_an_order_cancelled_before_dispatch_is_cancelled_and_never_progresses(
    store: SandboxClient,
) -> None:
    # given an imported, not yet dispatched order
    order_id = store.order_ids()[0]
    assert import_order(store, order_id).status_code == 201
    # when it is cancelled
    r = store.erp("POST", f"/orders/{order_id}/cancel")
    # then it is cancelled and stays so as time passes
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    store.advance(300)
    store.advance(600)
    assert erp_order(store, order_id)["state"] == "cancelled"
    assert order_id not in pending(store)


@pytest.mark.parametrize("action", ["hold", "release"])
def test_a_shipment_action_on_an_order_not_packed_is_refused_with_409(
    store: SandboxClient, action: str
) -> None:
    # given an order that is only new
    order_id = store.order_ids()[0]
    assert import_order(store, order_id).status_code == 201
    # when the shipment is held or released
    r = store.erp("POST", f"/orders/{order_id}/{action}")
    # then the ERP refuses, and the order is unchanged
    assert_error(r, 409)
    after = erp_order(store, order_id)
    assert after["state"] == "new"
    assert after["released"] is False


def test_holding_a_released_shipment_is_refused_with_409(store: SandboxClient) -> None:
    order_id = store.order_ids()[0]
    packed(store, order_id)
    assert store.erp("POST", f"/orders/{order_id}/release").status_code == 200
    assert_error(store.erp("POST", f"/orders/{order_id}/hold"), 409)
    assert erp_order(store, order_id)["released"] is True


@pytest.mark.parametrize("action", ["cancel", "hold", "release", "invoices"])
def test_an_action_on_an_unknown_order_is_404(store: SandboxClient, action: str) -> None:
    body = {"invoiceNumber": "VT-1", "invoiceValue": 100, "items": []}
    r = store.erp("POST", f"/orders/0007000000099-01/{action}", json=body)
    assert_error(r, 404)


# -- VTEX invoices recorded in the ERP --------------------------------------------------------


def test_a_vtex_invoice_is_recorded_once_and_shown_with_source_vtex(
    store: SandboxClient,
) -> None:
    # given an imported order
    order_id = store.order_ids()[0]
    assert import_order(store, order_id).status_code == 201
    item = erp_items(store, order_id)[0]
    invoice = {
        "invoiceNumber": "VTEX-000123",
        "invoiceValue": str(item["price"] * item["quantity"]),
        "issuanceDate": "2024-02-12T13:59:00-03:00",
        "seller": item["seller"],
        "items": [{"id": item["id"], "price": item["price"], "quantity": item["quantity"]}],
    }
    # when VTEX's invoice is recorded
    first = store.erp("POST", f"/orders/{order_id}/invoices", json=invoice)
    # then it is created and the order shows it, its value in integer cents
    assert first.status_code == 201, first.text
    expected = {
        "invoiceNumber": "VTEX-000123",
        "seller": item["seller"],
        "invoiceValue": item["price"] * item["quantity"],
        "items": invoice["items"],
        "issuanceDate": "2024-02-12T13:59:00-03:00",
        "source": "vtex",
    }
    assert first.json()["invoices"] == [expected]
    # when the same invoice is recorded again
    second = store.erp("POST", f"/orders/{order_id}/invoices", json=invoice)
    # then the ERP answers 200 and still holds it once
    assert second.status_code == 200, second.text
    assert erp_order(store, order_id)["invoices"] == [expected]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"invoiceValue": 100}, id="no-invoiceNumber"),
        pytest.param({"invoiceNumber": 123, "invoiceValue": 100}, id="number-not-a-string"),
        pytest.param({"invoiceNumber": "", "invoiceValue": 100}, id="number-empty"),
        pytest.param({"invoiceNumber": "VT-1"}, id="no-invoiceValue"),
        pytest.param({"invoiceNumber": "VT-1", "invoiceValue": "12a"}, id="value-not-digits"),
        pytest.param({"invoiceNumber": "VT-1", "invoiceValue": 0}, id="value-zero"),
        pytest.param({"invoiceNumber": "VT-1", "invoiceValue": -100}, id="value-negative"),
        pytest.param({"invoiceNumber": "VT-1", "invoiceValue": 10.5}, id="value-a-float"),
        pytest.param({"invoiceNumber": "VT-1", "invoiceValue": True}, id="value-a-boolean"),
        pytest.param(
            {"invoiceNumber": "VT-1", "invoiceValue": 100, "items": "x"}, id="items-not-a-list"
        ),
        pytest.param(["VT-1"], id="body-not-an-object"),
    ],
)
def test_an_invoice_with_a_bad_body_is_refused_with_400_and_not_recorded(
    store: SandboxClient, body: Any
) -> None:
    order_id = store.order_ids()[0]
    assert import_order(store, order_id).status_code == 201
    assert_error(store.erp("POST", f"/orders/{order_id}/invoices", json=body), 400)
    assert erp_order(store, order_id)["invoices"] == []


# -- faults -----------------------------------------------------------------------------------


def test_a_500_fault_on_the_erp_answers_500_and_does_nothing(
    make_sandbox: Callable[..., SandboxClient],
) -> None:
    # given an ERP whose every endpoint fails
    client = ready(make_sandbox(faults="erp:500=100%"))
    order_id = client.order_ids()[0]
    # when an order is imported, then the ERP answers 500
    assert import_order(client, order_id).status_code == 500
    assert client.erp("GET", f"/orders/{order_id}").status_code == 500
    # and once the fault is gone, the order was never imported
    assert client.vtex("POST", "/_sandbox/faults", json={"spec": ""}).status_code == 200
    assert_error(client.erp("GET", f"/orders/{order_id}"), 404)


def test_a_dropped_release_answer_still_releases_the_shipment(
    make_sandbox: Callable[..., SandboxClient],
) -> None:
    # given a packed order and an ERP that loses every release answer
    client = ready(make_sandbox(faults="erp_release:drop=100%"))
    order_id = client.order_ids()[0]
    packed(client, order_id)
    # when the shipment is released, then the client sees no answer
    with pytest.raises(requests.ConnectionError):
        client.erp("POST", f"/orders/{order_id}/release")
    # but the release was applied
    assert erp_order(client, order_id)["released"] is True
    assert order_id not in pending(client)
