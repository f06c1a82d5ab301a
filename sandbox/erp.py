"""The reference ERP: the fulfilment side of a store, as the bridge's ERP port sees it.

Pure state and rules; the world adds the clock, the ledger and HTTP. An imported order moves
``new`` -> ``picking`` -> ``packed`` on the store clock; when packed, the ERP issues its invoices
(one per seller) and waits for the bridge to release or hold the shipment. A released shipment is
``dispatched`` (handed to the carrier) after a delay; from then on it cannot be cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.clock import iso

STATES = ("new", "picking", "packed", "dispatched", "held", "cancelled")


class ErpError(Exception):
    """A refusal of the ERP, answered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass
class ErpInvoice:
    number: str
    seller: str
    value: int
    items: list[dict[str, Any]]
    issued_at: str
    source: str  # "erp" when the ERP issued it, "vtex" when recorded from VTEX

    def to_json(self) -> dict[str, Any]:
        return {
            "invoiceNumber": self.number,
            "seller": self.seller,
            "invoiceValue": self.value,
            "items": self.items,
            "issuanceDate": self.issued_at,
            "source": self.source,
        }


@dataclass
class ErpOrder:
    order_id: str
    items: list[dict[str, Any]]
    value: int
    imported_at: float
    state: str = "new"
    state_since: float = 0.0
    released: bool = False
    released_at: float | None = None
    invoices: list[ErpInvoice] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "state": self.state,
            "released": self.released,
            "value": self.value,
            "items": self.items,
            "invoices": [i.to_json() for i in self.invoices],
        }

    def invoice(self, number: str) -> ErpInvoice | None:
        return next((i for i in self.invoices if i.number == number), None)


@dataclass(frozen=True)
class ErpTimings:
    """Store seconds each fulfilment step takes."""

    picking: float = 300.0
    packing: float = 600.0
    dispatch: float = 120.0


class Erp:
    """The ERP's orders and the rules of its contract."""

    def __init__(self, timings: ErpTimings) -> None:
        self.timings = timings
        self.orders: dict[str, ErpOrder] = {}

    def get(self, order_id: str) -> ErpOrder:
        order = self.orders.get(order_id)
        if order is None:
            raise ErpError(404, "not-found", f"order {order_id} is not in the ERP")
        return order

    def import_order(self, order_id: str, items: list[dict[str, Any]], now: float) -> bool:
        """Import an order; returns False (and changes nothing) when it is already there."""
        if order_id in self.orders:
            return False
        value = sum(int(i["price"]) * int(i["quantity"]) for i in items)
        self.orders[order_id] = ErpOrder(order_id, items, value, now, state_since=now)
        return True

    def cancel(self, order_id: str, now: float) -> bool:
        order = self.get(order_id)
        if order.state == "dispatched":
            raise ErpError(409, "dispatched", f"order {order_id} is already with the carrier")
        if order.state == "cancelled":
            return False
        self._move(order, "cancelled", now)
        return True

    def hold(self, order_id: str, now: float) -> bool:
        order = self.get(order_id)
        if order.state == "held" and not order.released:
            return False
        if order.state != "packed" or order.released:
            raise ErpError(
                409,
                "not-packed",
                f"order {order_id} is {order.state}; only a packed shipment "
                "waiting for release can be held",
            )
        self._move(order, "held", now)
        return True

    def release(self, order_id: str, now: float) -> bool:
        order = self.get(order_id)
        if order.released:
            return False
        if order.state not in ("packed", "held"):
            raise ErpError(
                409,
                "not-packed",
                f"order {order_id} is {order.state}; only a packed or held "
                "shipment can be released",
            )
        self._move(order, "packed", now)
        order.released = True
        order.released_at = now
        return True

    def record_invoice(self, order_id: str, invoice: ErpInvoice) -> bool:
        order = self.get(order_id)
        if order.invoice(invoice.number) is not None:
            return False
        order.invoices.append(invoice)
        return True

    def packed_waiting(self) -> list[str]:
        """Shipments packed (or held) and waiting for the bridge's release."""
        return sorted(
            o.order_id
            for o in self.orders.values()
            if o.state in ("packed", "held") and not o.released
        )

    def progress(self, now: float) -> list[tuple[str, ErpOrder]]:
        """Move orders along on the store clock; returns the (step, order) pairs that happened.

        Each step happens when it is due, however rarely this is called: after a jump of the
        clock an order catches up through every step due by ``now``, each dated when it was due.
        """
        steps: list[tuple[str, ErpOrder]] = []
        t = self.timings
        for order in self.orders.values():
            while True:
                if order.state == "new" and now - order.state_since >= t.picking:
                    self._move(order, "picking", order.state_since + t.picking)
                    steps.append(("picking", order))
                elif order.state == "picking" and now - order.state_since >= t.packing:
                    packed_at = order.state_since + t.packing
                    self._move(order, "packed", packed_at)
                    self._issue_invoices(order, packed_at)
                    steps.append(("packed", order))
                elif (
                    order.state == "packed"
                    and order.released
                    and order.released_at is not None
                    and now - order.released_at >= t.dispatch
                ):
                    self._move(order, "dispatched", order.released_at + t.dispatch)
                    steps.append(("dispatched", order))
                else:
                    break
        return steps

    @staticmethod
    def _issue_invoices(order: ErpOrder, now: float) -> None:
        """One invoice per seller, numbered after the order, as the store's fiscal system does."""
        by_seller: dict[str, list[dict[str, Any]]] = {}
        for item in order.items:
            by_seller.setdefault(str(item.get("seller", "1")), []).append(item)
        base = order.order_id.split("-")[0]
        for n, (seller, items) in enumerate(sorted(by_seller.items()), start=1):
            lines = [{"id": i["id"], "price": i["price"], "quantity": i["quantity"]} for i in items]
            value = sum(int(i["price"]) * int(i["quantity"]) for i in items)
            order.invoices.append(
                ErpInvoice(f"NF{base}{n:02d}", seller, value, lines, iso(now), "erp")
            )

    @staticmethod
    def _move(order: ErpOrder, state: str, now: float) -> None:
        order.state = state
        order.state_since = now
