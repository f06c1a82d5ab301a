"""RestErp against the sandbox's reference ERP over real HTTP.

Each test has its own sandbox (its own orders); the store clock is frozen and moves only through
``advance``: 300 s picking, 600 s packing, 120 s from release to dispatch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from bridge.domain.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from bridge.domain.models import ErpOrder, FulfilmentState, Invoice, VtexOrder
from bridge.erp import (
    ErpAuthError,
    ErpBadRequest,
    ErpConflict,
    ErpNotFound,
    ErpTransientError,
    RestErp,
)
from tests.sandbox_client import SandboxClient


def ready(client: SandboxClient) -> SandboxClient:
    """Every scenario order created on VTEX and ready for handling."""
    assert client.configure_feed().status_code == 200
    client.advance(4000)
    return client


def rest_erp(client: SandboxClient, **kw: Any) -> RestErp:
    return RestErp(client.erp_url, SecretStr(client.sandbox.world.config.erp_token), **kw)


def vtex_order(client: SandboxClient, order_id: str | None = None) -> VtexOrder:
    return VtexOrder.model_validate(client.order(order_id or client.order_ids()[0]))


def split_order(client: SandboxClient) -> VtexOrder:
    """A scenario order with items of two sellers."""
    for order_id in client.order_ids():
        order = vtex_order(client, order_id)
        if len({i.seller for i in order.items}) > 1:
            return order
    raise AssertionError("the scenario has no order with two sellers")


def set_faults(client: SandboxClient, spec: str) -> None:
    assert client.vtex("POST", "/_sandbox/faults", json={"spec": spec}).status_code == 200


def effects(client: SandboxClient, kind: str, order_id: str) -> int:
    """How many times the sandbox's ledger saw ``kind`` applied to the order."""
    with client.sandbox.world.lock:
        return client.sandbox.world.ledger.times(kind, order_id)


@pytest.fixture
def store(sandbox: SandboxClient) -> SandboxClient:
    return ready(sandbox)


@pytest.fixture
def erp(store: SandboxClient) -> Iterator[RestErp]:
    with rest_erp(store) as adapter:
        yield adapter


def packed(store: SandboxClient, erp: RestErp) -> ErpOrder:
    """Import the first scenario order and let the ERP pick and pack it."""
    order = vtex_order(store)
    erp.import_order(order)
    store.advance(300)
    store.advance(600)
    found = erp.get_order(order.order_id)
    assert found is not None and found.state is FulfilmentState.PACKED
    return found


# -- import and read --------------------------------------------------------------------------


def test_an_imported_order_reads_back_as_new_with_the_vtex_items(
    store: SandboxClient, erp: RestErp
) -> None:
    # given a VTEX order ready for handling, with items of two sellers
    order = split_order(store)
    # when the ERP imports it
    erp.import_order(order)
    # then the ERP has it, new, not released, without invoices, with VTEX's items
    found = erp.get_order(order.order_id)
    assert found is not None
    assert found.order_id == order.order_id
    assert found.state is FulfilmentState.NEW
    assert found.released is False
    assert found.invoices == []
    raw = store.erp("GET", f"/orders/{order.order_id}").json()
    assert raw["items"] == [
        {"id": i.id, "quantity": i.quantity, "price": i.price, "seller": i.seller}
        for i in order.items
    ]


def test_importing_twice_is_idempotent_in_the_erp_but_the_ledger_flags_it_so_callers_check_first(
    store: SandboxClient, erp: RestErp
) -> None:
    # given an order the ERP has imported
    order = vtex_order(store)
    erp.import_order(order)
    # when it is imported again
    erp.import_order(order)
    # then the ERP still holds one new order (no error) ...
    found = erp.get_order(order.order_id)
    assert found is not None and found.state is FulfilmentState.NEW
    # ... yet the import happened twice: the effect is at most once only if the caller reads the
    # ERP's record (get_order) before importing
    assert effects(store, "erp.import", order.order_id) == 2
    assert any(
        v["rule"] == "effect-repeated" and v["orderId"] == order.order_id
        for v in store.report()["violations"]
    )


def test_an_order_the_erp_does_not_have_reads_as_none(store: SandboxClient, erp: RestErp) -> None:
    assert erp.get_order(store.order_ids()[0]) is None
    assert erp.get_order("0007000000099-01") is None


# -- fulfilment, shipments, invoices ----------------------------------------------------------


def test_a_packed_order_reads_with_its_erp_invoices_and_waits_for_release(
    store: SandboxClient, erp: RestErp
) -> None:
    # given an imported order with items of two sellers
    order = split_order(store)
    erp.import_order(order)
    assert erp.pending_shipments() == []
    # when picking and packing time pass
    store.advance(300)
    store.advance(600)
    # then it is packed, with the ERP's invoices as Invoice models covering the order's value
    found = erp.get_order(order.order_id)
    assert found is not None
    assert found.state is FulfilmentState.PACKED
    assert found.waiting_for_release
    assert found.invoices and all(isinstance(i, Invoice) for i in found.invoices)
    assert all(i.number.startswith("NF") for i in found.invoices)
    assert sum(i.value for i in found.invoices) == sum(i.price * i.quantity for i in order.items)
    assert {i.seller for i in found.invoices} == {i.seller for i in order.items}
    assert all(line.quantity > 0 for i in found.invoices for line in i.items)
    # and its shipment is pending
    assert erp.pending_shipments() == [order.order_id]


def test_a_held_shipment_stays_pending_and_a_released_one_leaves_the_list(
    store: SandboxClient, erp: RestErp
) -> None:
    # given a packed order
    order_id = packed(store, erp).order_id
    # when its shipment is held
    erp.hold_shipment(order_id)
    # then it is held and still pending
    held = erp.get_order(order_id)
    assert held is not None and held.state is FulfilmentState.HELD
    assert erp.pending_shipments() == [order_id]
    # when it is released
    erp.release_shipment(order_id)
    # then it is released and no longer pending; after the dispatch delay the carrier has it
    released = erp.get_order(order_id)
    assert released is not None and released.released is True
    assert erp.pending_shipments() == []
    store.advance(120)
    dispatched = erp.get_order(order_id)
    assert dispatched is not None and dispatched.dispatched


def test_holding_an_order_that_is_not_packed_is_a_conflict(
    store: SandboxClient, erp: RestErp
) -> None:
    order = vtex_order(store)
    erp.import_order(order)
    with pytest.raises(ErpConflict) as caught:
        erp.hold_shipment(order.order_id)
    assert caught.value.status == 409
    assert caught.value.code == "not-packed"


def test_cancelling_an_order_not_yet_dispatched_stops_it(
    store: SandboxClient, erp: RestErp
) -> None:
    # given an imported order
    order = vtex_order(store)
    erp.import_order(order)
    # when it is cancelled
    erp.cancel_order(order.order_id)
    # then it is cancelled and never packed
    store.advance(900)
    found = erp.get_order(order.order_id)
    assert found is not None and found.state is FulfilmentState.CANCELLED
    assert erp.pending_shipments() == []


def test_cancelling_a_dispatched_order_is_a_conflict_carrying_the_erp_code(
    store: SandboxClient, erp: RestErp
) -> None:
    # given an order the carrier has
    order_id = packed(store, erp).order_id
    erp.release_shipment(order_id)
    store.advance(120)
    # when it is cancelled
    with pytest.raises(ConflictError) as caught:
        erp.cancel_order(order_id)
    # then the ERP refuses with its reason, and the order stays dispatched
    assert isinstance(caught.value, ErpConflict)
    assert caught.value.code == "dispatched"
    assert "dispatched" in str(caught.value)
    found = erp.get_order(order_id)
    assert found is not None and found.dispatched


def test_a_vtex_invoice_is_recorded_in_the_erp_once(store: SandboxClient, erp: RestErp) -> None:
    # given an imported order and an invoice VTEX holds for one of its items
    order = vtex_order(store)
    erp.import_order(order)
    item = order.items[0]
    invoice = Invoice.model_validate(
        {
            "invoiceNumber": "VTEX-000123",
            "invoiceValue": str(item.price * item.quantity),
            "seller": item.seller,
            "issuanceDate": "2024-02-12T13:59:00-03:00",
            "items": [{"id": item.id, "price": item.price, "quantity": item.quantity}],
        }
    )
    # when it is recorded, twice
    erp.record_invoice(order.order_id, invoice)
    erp.record_invoice(order.order_id, invoice)
    # then the ERP holds it once, as it was
    found = erp.get_order(order.order_id)
    assert found is not None
    assert [(i.number, i.value, i.seller, i.issuance_date) for i in found.invoices] == [
        ("VTEX-000123", item.price * item.quantity, item.seller, "2024-02-12T13:59:00-03:00")
    ]
    assert [(line.id, line.quantity) for line in found.invoices[0].items] == [
        (item.id, item.quantity)
    ]


# -- failures ---------------------------------------------------------------------------------


def test_a_wrong_token_is_an_auth_error_that_names_the_setting_and_not_the_token(
    store: SandboxClient,
) -> None:
    # given an adapter with a token the ERP does not accept
    wrong = "wrong-token-7f3a9c"
    adapter = RestErp(store.erp_url, SecretStr(wrong))
    # when it reads an order
    with pytest.raises(AuthenticationError) as caught:
        adapter.get_order(store.order_ids()[0])
    # then the error says to check ERP_TOKEN and shows no token
    error = caught.value
    assert isinstance(error, ErpAuthError) and error.status == 403
    assert "ERP_TOKEN" in str(error)
    real = store.sandbox.world.config.erp_token
    for text in (str(error), repr(error), repr(adapter)):
        assert wrong not in text and real not in text
    adapter.close()


def test_an_import_the_erp_refuses_as_made_is_a_permanent_bad_request(
    store: SandboxClient, erp: RestErp
) -> None:
    # given an order without items, which the contract does not allow
    order = vtex_order(store).model_copy(update={"items": []})
    # when it is imported, then the ERP's 400 is a permanent error, not one to retry
    with pytest.raises(PermanentError) as caught:
        erp.import_order(order)
    assert isinstance(caught.value, ErpBadRequest)
    assert not isinstance(caught.value, TransientError)
    assert caught.value.status == 400 and caught.value.code == "invalid"
    assert erp.get_order(order.order_id) is None


@pytest.mark.parametrize("action", ["cancel_order", "hold_shipment", "release_shipment"])
def test_an_action_on_an_order_the_erp_does_not_have_is_not_found(
    store: SandboxClient, erp: RestErp, action: str
) -> None:
    with pytest.raises(NotFoundError) as caught:
        getattr(erp, action)(store.order_ids()[0])
    assert isinstance(caught.value, ErpNotFound) and caught.value.status == 404


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_from_the_erp_is_transient(
    make_sandbox: Callable[..., SandboxClient], status: int
) -> None:
    store = ready(make_sandbox(faults=f"erp:{status}=100%"))
    with rest_erp(store) as adapter, pytest.raises(TransientError) as caught:
        adapter.get_order(store.order_ids()[0])
    assert isinstance(caught.value, ErpTransientError) and caught.value.status == status


def test_a_500_on_an_import_is_transient_and_imports_nothing(
    make_sandbox: Callable[..., SandboxClient],
) -> None:
    store = ready(make_sandbox(faults="erp:500=100%"))
    order = vtex_order(store)
    with rest_erp(store) as adapter:
        with pytest.raises(ErpTransientError):
            adapter.import_order(order)
        set_faults(store, "")
        assert adapter.get_order(order.order_id) is None


def test_a_429_from_the_erp_is_transient_with_its_retry_after(
    make_sandbox: Callable[..., SandboxClient],
) -> None:
    store = ready(make_sandbox(faults="erp_packed:429=100%,retry-after=2"))
    with rest_erp(store) as adapter, pytest.raises(ErpTransientError) as caught:
        adapter.pending_shipments()
    assert caught.value.status == 429
    assert caught.value.retry_after == 2.0


def test_an_erp_slower_than_the_read_timeout_is_transient(
    make_sandbox: Callable[..., SandboxClient],
) -> None:
    store = ready(make_sandbox(faults="erp_get:latency=400ms"))
    with rest_erp(store, timeout=(1.0, 0.1)) as adapter, pytest.raises(ErpTransientError) as c:
        adapter.get_order(store.order_ids()[0])
    assert "retry" in str(c.value)


def test_a_dropped_answer_is_transient_though_the_erp_acted(
    store: SandboxClient, erp: RestErp
) -> None:
    # given a packed order and an ERP that drops the answer to a release after releasing
    order_id = packed(store, erp).order_id
    set_faults(store, "erp_release:drop=100%")
    # when the shipment is released
    with pytest.raises(ErpTransientError):
        erp.release_shipment(order_id)
    # then the release took effect: a retry must read the ERP's record before releasing again
    set_faults(store, "")
    found = erp.get_order(order_id)
    assert found is not None and found.released is True
    assert effects(store, "erp.release", order_id) == 1


@pytest.mark.parametrize(
    "order_id",
    [
        "../admin-01",
        "1234567890123-01/cancel",
        "1234567890123-01\n",
        "1234567890123-1",
        "1234567890123",
        "",
        "a" * 41 + "-01",
        "1234567890123-01?x=1",
    ],
)
def test_an_order_id_that_is_not_one_is_refused_before_any_request(order_id: str) -> None:
    # given an adapter pointing where nothing listens (a request would be a transient error)
    adapter = RestErp("http://127.0.0.1:9", SecretStr("token"), timeout=(0.5, 0.5))
    # when / then every call that takes an order id refuses it with ValueError
    calls: list[Callable[[], object]] = [
        lambda: adapter.get_order(order_id),
        lambda: adapter.cancel_order(order_id),
        lambda: adapter.hold_shipment(order_id),
        lambda: adapter.release_shipment(order_id),
        lambda: adapter.record_invoice(order_id, Invoice(number="VT-1", value=100)),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="not an order id"):
            call()
    adapter.close()


def test_health_is_true_for_the_erp_and_false_where_nothing_listens(store: SandboxClient) -> None:
    with rest_erp(store) as up:
        assert up.health() is True
    with RestErp("http://127.0.0.1:9", SecretStr("token"), timeout=(0.5, 0.5)) as down:
        assert down.health() is False
