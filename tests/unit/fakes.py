"""In-memory fakes of the domain's ports, and builders of VTEX- and ERP-shaped order dicts.

The fakes keep the orders as the outside systems send them (dicts shaped like VTEX's Get order
and the ERP contract's answers) and parse them through the domain's models on every read, so a
test sees the same validation the adapters do. They follow the rules of the systems they stand
for: VTEX refuses to cancel an invoiced order, the ERP refuses to cancel a dispatched one. Each
records every call, and a test can make the world move at a given call (``when_called``) or make
a call fail (``fail_next``).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.domain.decisions import DEFAULT_REQUEST_STATUSES
from bridge.domain.errors import (
    BridgeError,
    ConflictError,
    NotFoundError,
    PermanentError,
    StaleLockError,
)
from bridge.domain.models import ErpOrder, Invoice, VtexOrder

READY = "ready-for-handling"
HANDLING = "handling"
REQUESTED = "cancellation-requested"
CANCELED = "canceled"
INVOICED = "invoiced"
ISSUED = "2026-12-03T17:02:11.0000000Z"

_sequence = itertools.count(1)


def new_order_id(seller_suffix: str = "01") -> str:
    """A VTEX-shaped order id of this test's own (13 digits and the seller suffix)."""
    return f"{1_234_500_000_000 + next(_sequence):013d}-{seller_suffix}"


# -- VTEX-shaped dicts ---------------------------------------------------------------------------


def vtex_invoice(
    number: str, value: int, *, kind: str = "Output", seller: str = "1", item: str = "1001"
) -> dict[str, Any]:
    """One entry of ``packageAttachment.packages``: an invoice as VTEX keeps it."""
    return {
        "invoiceNumber": number,
        "invoiceValue": value,
        "type": kind,
        "issuanceDate": ISSUED,
        "seller": seller,
        "courier": None,
        "trackingNumber": None,
        "items": [{"id": item, "itemIndex": 0, "quantity": 1, "price": value}],
    }


def cancellation_request(
    request_id: str, *, reason: str = "Changed my mind", denied: bool = False
) -> dict[str, Any]:
    """One entry of ``cancellationRequests``."""
    return {
        "id": request_id,
        "reason": reason,
        "cancellationRequestDate": ISSUED,
        "requestedByUser": True,
        "deniedBySeller": denied,
        "deniedBySellerReason": "Already shipped" if denied else None,
    }


def vtex_order(
    status: str,
    *,
    order_id: str = "1234567890123-01",
    split: bool = False,
    invoices: Iterable[Mapping[str, Any]] = (),
    requests: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A Get order answer: 10000 cents, one item of seller 1 (plus one of ``sellerb`` when split,
    5000 cents each)."""
    if split:
        items = [
            {"id": "1001", "quantity": 1, "price": 5_000, "seller": "1", "name": "Kettle"},
            {"id": "1002", "quantity": 1, "price": 5_000, "seller": "sellerb", "name": "Scale"},
        ]
        sellers = [{"id": "1", "name": "Store"}, {"id": "sellerb", "name": "Seller B"}]
    else:
        items = [{"id": "1001", "quantity": 2, "price": 5_000, "seller": "1", "name": "Kettle"}]
        sellers = [{"id": "1", "name": "Store"}]
    requests = [dict(r) for r in requests]
    return {
        "orderId": order_id,
        "sequence": order_id.split("-")[0][-6:],
        "status": status,
        "value": 10_000,
        "lastChange": ISSUED,
        "items": items,
        "sellers": sellers,
        "packageAttachment": {"packages": [dict(i) for i in invoices]},
        "cancellationRequests": requests or None,
        "cancellationData": None,
        "allowCancellation": status in (READY, HANDLING),
    }


# -- ERP-shaped dicts (the ERP contract's answers) -----------------------------------------------


def erp_invoice(
    number: str, value: int, *, seller: str = "1", source: str = "erp"
) -> dict[str, Any]:
    return {
        "invoiceNumber": number,
        "seller": seller,
        "invoiceValue": value,
        "items": [{"id": "1001", "price": value, "quantity": 1}],
        "issuanceDate": ISSUED,
        "source": source,
    }


def erp_order(
    state: str,
    *,
    order_id: str = "1234567890123-01",
    released: bool = False,
    invoices: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    return {
        "orderId": order_id,
        "state": state,
        "released": released,
        "value": 10_000,
        "items": [{"id": "1001", "quantity": 2, "price": 5_000, "seller": "1"}],
        "invoices": [dict(i) for i in invoices],
    }


def _invoice_dict(invoice: Invoice, **extra: Any) -> dict[str, Any]:
    return {
        "invoiceNumber": invoice.number,
        "invoiceValue": invoice.value,
        "type": invoice.kind,
        "issuanceDate": invoice.issuance_date,
        "seller": invoice.seller,
        "courier": invoice.courier,
        "trackingNumber": invoice.tracking_number,
        "items": [i.model_dump(by_alias=True) for i in invoice.items],
        **extra,
    }


# -- the recorder both system fakes share --------------------------------------------------------


class _Recorder:
    """Records every call; lets a test move the world at a call or make a call fail.

    ``journal``, when given, is a list shared by several fakes: every write (failed ones too) is
    appended as ``(system, method, *args)``, so a test sees the order of calls across systems.
    """

    system = ""

    def __init__(self, journal: list[tuple[Any, ...]] | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.journal: list[tuple[Any, ...]] = journal if journal is not None else []
        self._moves: dict[tuple[str, int], Callable[[], None]] = {}
        self._failures: dict[str, list[BridgeError]] = {}

    def when_called(self, method: str, change: Callable[[], None], *, nth: int = 1) -> None:
        """Run ``change`` just before the ``nth`` call of ``method`` does its work: the world
        moved between the bridge's read and its act."""
        self._moves[(method, nth)] = change

    def fail_next(self, method: str, error: BridgeError, *, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` raise ``error`` before they do anything."""
        self._failures.setdefault(method, []).extend([error] * times)

    def count(self, method: str) -> int:
        return sum(1 for call in self.calls if call[0] == method)

    def writes(self) -> list[tuple[Any, ...]]:
        """The calls made, in order, reads left out."""
        return [c for c in self.calls if not str(c[0]).startswith(("get_", "pending_"))]

    def methods(self) -> list[str]:
        """The names of the writes made, in order."""
        return [str(c[0]) for c in self.writes()]

    def _call(self, method: str, *args: Any) -> None:
        self.calls.append((method, *args))
        if not method.startswith(("get_", "pending_")):
            self.journal.append((self.system, method, *args))
        failures = self._failures.get(method)
        if failures:
            raise failures.pop(0)
        move = self._moves.pop((method, self.count(method)), None)
        if move is not None:
            move()


# -- VTEX ----------------------------------------------------------------------------------------


class FakeVtex(_Recorder):
    """VTEX's OMS over VTEX-shaped order dicts, with its refusals."""

    system = "vtex"

    def __init__(
        self,
        *orders: dict[str, Any],
        request_statuses: frozenset[str] = DEFAULT_REQUEST_STATUSES,
        journal: list[tuple[Any, ...]] | None = None,
    ) -> None:
        super().__init__(journal)
        self.orders: dict[str, dict[str, Any]] = {o["orderId"]: copy.deepcopy(o) for o in orders}
        self.request_statuses = request_statuses
        self._before_request: dict[str, str] = {}

    def order(self, order_id: str) -> VtexOrder:
        """The order as VTEX has it now (for assertions; not a recorded call)."""
        return VtexOrder.model_validate(copy.deepcopy(self.orders[order_id]))

    def _raw(self, order_id: str) -> dict[str, Any]:
        raw = self.orders.get(order_id)
        if raw is None:
            raise NotFoundError(f"order {order_id} not found")
        return raw

    def _packages(self, order_id: str) -> list[dict[str, Any]]:
        packages: list[dict[str, Any]] = self._raw(order_id)["packageAttachment"]["packages"]
        return packages

    def _fully_invoiced(self, order_id: str) -> bool:
        out = sum(p["invoiceValue"] for p in self._packages(order_id) if p["type"] == "Output")
        return bool(out >= self._raw(order_id)["value"])

    # -- the world (not calls of the bridge) --

    def shopper_requests_cancel(self, order_id: str, request_id: str, reason: str = "") -> None:
        raw = self._raw(order_id)
        self._before_request[order_id] = raw["status"]
        requests = raw["cancellationRequests"] or []
        requests.append(cancellation_request(request_id, reason=reason or "Changed my mind"))
        raw["cancellationRequests"] = requests
        raw["status"] = REQUESTED

    # -- VtexPort --

    def get_order(self, order_id: str) -> VtexOrder:
        self._call("get_order", order_id)
        return VtexOrder.model_validate(copy.deepcopy(self._raw(order_id)))

    def start_handling(self, order_id: str) -> bool:
        self._call("start_handling", order_id)
        raw = self._raw(order_id)
        if raw["status"] != READY:
            return False  # VTEX answers 409 OMS003; the client reports "already started"
        raw["status"] = HANDLING
        return True

    def cancel_order(self, order_id: str, reason: str) -> None:
        self._call("cancel_order", order_id, reason)
        raw = self._raw(order_id)
        if any(p["type"] == "Output" for p in self._packages(order_id)):
            raise ConflictError(f"order {order_id} has been invoiced and cannot be canceled")
        if raw["status"] == CANCELED:
            return
        if raw["status"] in (READY, HANDLING):
            # VTEX's two-step cancel through the API: a first call only asks.
            self._before_request[order_id] = raw["status"]
            raw["status"] = REQUESTED
            return
        raw["status"] = CANCELED
        raw["cancellationData"] = {"RequestedByUser": False, "Reason": reason}

    def deny_cancellation(self, order_id: str, request_id: str, reason: str) -> None:
        self._call("deny_cancellation", order_id, request_id, reason)
        raw = self._raw(order_id)
        if raw["status"] == CANCELED:
            raise PermanentError(f"order {order_id} is already canceled")
        request = next(
            (r for r in raw["cancellationRequests"] or [] if r["id"] == request_id), None
        )
        if request is None:
            raise PermanentError(f"cancellation request {request_id} not found")
        if request["deniedBySeller"]:
            raise PermanentError(f"cancellation request {request_id} was already denied")
        if raw["status"] not in self.request_statuses:
            raise PermanentError(f"order {order_id} is not awaiting a cancellation decision")
        request["deniedBySeller"] = True
        request["deniedBySellerReason"] = reason
        fallback = INVOICED if self._fully_invoiced(order_id) else HANDLING
        raw["status"] = self._before_request.pop(order_id, fallback)

    def post_invoice(self, order_id: str, invoice: Invoice) -> None:
        self._call("post_invoice", order_id, invoice.number)
        raw = self._raw(order_id)
        if raw["status"] == CANCELED:
            raise ConflictError(f"order {order_id} is canceled and cannot be invoiced")
        packages = self._packages(order_id)
        if any(p["invoiceNumber"] == invoice.number for p in packages):
            return  # a repeated number gets a new receipt and changes nothing
        packages.append(_invoice_dict(invoice))
        if invoice.kind == "Output" and self._fully_invoiced(order_id):
            if raw["status"] in self.request_statuses:
                self._before_request[order_id] = INVOICED
            else:
                raw["status"] = INVOICED


# -- the ERP -------------------------------------------------------------------------------------


class FakeErp(_Recorder):
    """The store's ERP over ERP-contract dicts, with the contract's refusals."""

    system = "erp"

    def __init__(
        self, *orders: dict[str, Any], journal: list[tuple[Any, ...]] | None = None
    ) -> None:
        super().__init__(journal)
        self.orders: dict[str, dict[str, Any]] = {o["orderId"]: copy.deepcopy(o) for o in orders}

    def state(self, order_id: str) -> str | None:
        raw = self.orders.get(order_id)
        return None if raw is None else str(raw["state"])

    def invoice_numbers(self, order_id: str) -> list[str]:
        return [i["invoiceNumber"] for i in self._raw(order_id)["invoices"]]

    def dispatch(self, order_id: str) -> None:
        """The carrier takes the shipment (the world moving, not a call of the bridge)."""
        self._raw(order_id)["state"] = "dispatched"

    def dispatch_at(self, method: str, order_id: str, *, nth: int = 1) -> None:
        """Dispatch the order behind the bridge's back, just before its ``nth`` ``method`` call."""
        self.when_called(method, lambda: self.dispatch(order_id), nth=nth)

    def _raw(self, order_id: str) -> dict[str, Any]:
        raw = self.orders.get(order_id)
        if raw is None:
            raise NotFoundError(f"order {order_id} is not in the ERP")
        return raw

    # -- ErpPort --

    def get_order(self, order_id: str) -> ErpOrder | None:
        self._call("get_order", order_id)
        raw = self.orders.get(order_id)
        return None if raw is None else ErpOrder.model_validate(copy.deepcopy(raw))

    def import_order(self, order: VtexOrder) -> None:
        self._call("import_order", order.order_id)
        if order.order_id in self.orders:
            return
        items = [i.model_dump() for i in order.items]
        self.orders[order.order_id] = {
            **erp_order("new", order_id=order.order_id),
            "items": items,
            "value": sum(i.price * i.quantity for i in order.items),
        }

    def cancel_order(self, order_id: str) -> None:
        self._call("cancel_order", order_id)
        raw = self._raw(order_id)
        if raw["state"] == "dispatched":
            raise ConflictError(f"order {order_id} is already with the carrier")
        raw["state"] = "cancelled"

    def hold_shipment(self, order_id: str) -> None:
        self._call("hold_shipment", order_id)
        raw = self._raw(order_id)
        if raw["state"] == "held" and not raw["released"]:
            return
        if raw["state"] != "packed" or raw["released"]:
            raise ConflictError(f"order {order_id} is {raw['state']}; it cannot be held")
        raw["state"] = "held"

    def release_shipment(self, order_id: str) -> None:
        self._call("release_shipment", order_id)
        raw = self._raw(order_id)
        if raw["released"]:
            return
        if raw["state"] not in ("packed", "held"):
            raise ConflictError(f"order {order_id} is {raw['state']}; it cannot be released")
        raw["state"] = "packed"
        raw["released"] = True

    def pending_shipments(self) -> list[str]:
        self._call("pending_shipments")
        return sorted(
            oid
            for oid, raw in self.orders.items()
            if raw["state"] in ("packed", "held") and not raw["released"]
        )

    def record_invoice(self, order_id: str, invoice: Invoice) -> None:
        self._call("record_invoice", order_id, invoice.number)
        invoices = self._raw(order_id)["invoices"]
        if any(i["invoiceNumber"] == invoice.number for i in invoices):
            return
        invoices.append(_invoice_dict(invoice, source="vtex"))


# -- Redis-backed state ----------------------------------------------------------------------------


@dataclass
class FakeLedger:
    """Effects recorded per order. ``holder_token`` is the fencing token of the order's current
    lease holder, set by the test: a record with any other token is refused."""

    holder_token: int = 1
    keys: dict[str, set[str]] = field(default_factory=dict)
    refused: list[tuple[str, str, int]] = field(default_factory=list)

    def done(self, order_id: str) -> set[str]:
        return set(self.keys.get(order_id, set()))

    def record(self, order_id: str, key: str, token: int) -> None:
        if token != self.holder_token:
            self.refused.append((order_id, key, token))
            raise StaleLockError(f"token {token} no longer holds order {order_id}")
        self.keys.setdefault(order_id, set()).add(key)


@dataclass
class FakeHistory:
    """The orders' histories; entries are copied when added, as a store would serialise them."""

    entries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, order_id: str, entry: Mapping[str, Any]) -> None:
        self.entries.setdefault(order_id, []).append(copy.deepcopy(dict(entry)))

    def of(self, order_id: str) -> list[dict[str, Any]]:
        return self.entries.get(order_id, [])


@dataclass
class FakeLease:
    """A held lease: ``lost`` makes :meth:`ensure` refuse; :meth:`expire_after` lets ``checks``
    more checks pass first (the lease expires in the middle of a run)."""

    token: int = 1
    lost: bool = False
    checks: int = 0
    _passing: int | None = None

    def expire_after(self, checks: int) -> None:
        self._passing = checks

    def ensure(self) -> None:
        self.checks += 1
        if self._passing is not None and self.checks > self._passing:
            self.lost = True
        if self.lost:
            raise StaleLockError("the order's lease expired")
