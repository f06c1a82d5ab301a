"""The sandbox's orders and VTEX's order flow, as a state machine.

Pure: no clocks, locks or HTTP. Every operation takes the store time ``now`` and reports status
changes through ``on_change(order, state, last_state, last_change)``, which the world turns into
feed events and hook notifications. Refusals raise :class:`OmsError` carrying VTEX's answer.

Flow (REFERENCE.md): order-created, payment-pending, payment-approved, window-to-cancel,
ready-for-handling, start-handling, handling, invoice, invoiced; cancel, canceled. After the
window a shopper's cancellation request moves a seller order to ``cancellation-requested``; a denial
returns it to the status it had before.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.clock import iso

CANCEL_REQUESTED = "cancellation-requested"
CANCELED = "canceled"
INVOICED = "invoiced"
READY = "ready-for-handling"
HANDLING = "handling"
WINDOW = "window-to-cancel"
BEFORE_HANDLING = (
    "order-created",
    "on-order-completed",
    "payment-pending",
    "payment-approved",
    WINDOW,
)


_moments = itertools.count(1)


def moment() -> int:
    """A strictly increasing stamp, to order reads and requests even on a frozen clock."""
    return next(_moments)


class OmsError(Exception):
    """A refusal, answered with VTEX's OMS error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "exception": None}}


@dataclass
class Item:
    sku: str
    name: str
    quantity: int
    price: int  # cents, per unit
    seller: str


@dataclass
class Invoice:
    number: str
    value: int
    kind: str  # Output or Input
    issuance_date: str
    items: list[dict[str, Any]]
    courier: str = ""
    tracking_number: str = ""
    tracking_url: str = ""
    invoice_key: str | None = None
    invoice_url: str = ""
    receipt: str = ""


@dataclass
class CancellationRequest:
    id: str
    reason: str
    date: str
    created: float
    requested_by_user: bool = True
    denied_by_seller: bool = False
    deny_reason: str | None = None
    denied_at: str | None = None
    moment: int = 0  # when it was made, comparable with Order.last_read


@dataclass
class Order:
    order_id: str
    sequence: str
    created: float
    items: list[Item]
    sellers: list[str]
    status: str = "order-created"
    last_change: float = 0.0
    status_since: float = 0.0
    packages: list[Invoice] = field(default_factory=list)
    cancellation_requests: list[CancellationRequest] = field(default_factory=list)
    cancellation: dict[str, Any] | None = None
    status_before_request: str | None = None
    receipts: int = 0
    last_read: int = 0  # moment (see :func:`moment`) of the consumer's latest Get order

    @property
    def value(self) -> int:
        return sum(i.price * i.quantity for i in self.items)

    @property
    def output_invoiced(self) -> int:
        return sum(p.value for p in self.packages if p.kind == "Output")

    @property
    def open_request(self) -> CancellationRequest | None:
        if self.status == CANCELED:
            return None
        for req in self.cancellation_requests:
            if not req.denied_by_seller:
                return req
        return None

    def invoice(self, number: str) -> Invoice | None:
        return next((p for p in self.packages if p.number == number), None)

    def next_receipt(self) -> str:
        self.receipts += 1
        return f"{self.sequence}{self.receipts:04d}".ljust(32, "0")


ChangeListener = Callable[[Order, str, str, float], None]


class OrderFlow:
    """Moves orders through VTEX's statuses and reports every change."""

    def __init__(self, on_change: ChangeListener, request_statuses: frozenset[str]) -> None:
        self._on_change = on_change
        # Statuses in which an order counts as having a cancellation request awaiting the seller.
        self.request_statuses = request_statuses

    def set_status(self, order: Order, status: str, now: float) -> None:
        if order.status == status:
            return
        last_state, last_change = order.status, order.last_change
        order.status = status
        order.last_change = now
        order.status_since = now
        self._on_change(order, status, last_state, last_change)

    # -- the shopper and the platform -------------------------------------------------------

    def advance_to(self, order: Order, status: str, now: float) -> bool:
        """Scenario step along the main path; ignored when the order has moved elsewhere."""
        path = (*BEFORE_HANDLING, READY)
        if order.status not in path or path.index(status) <= path.index(order.status):
            return False
        self.set_status(order, status, now)
        return True

    def shopper_cancels(self, order: Order, reason: str, request_id: str, now: float) -> str:
        """A shopper asks to cancel. Returns what happened: canceled, requested or ignored."""
        if order.status in BEFORE_HANDLING:
            self._cancel(order, reason, by_user=True, now=now)
            return "canceled"
        if order.status in (READY, HANDLING, INVOICED) and not order.open_request:
            order.cancellation_requests.append(
                CancellationRequest(
                    id=request_id, reason=reason, date=iso(now), created=now, moment=moment()
                )
            )
            order.status_before_request = order.status
            self.set_status(order, CANCEL_REQUESTED, now)
            return "requested"
        return "ignored"

    # -- the seller's API ------------------------------------------------------------------

    def start_handling(self, order: Order, now: float) -> None:
        if order.status != READY:
            raise OmsError(
                409,
                "OMS003",
                f"Order {order.order_id} is in status {order.status}, "
                "start handling is only allowed in ready-for-handling",
            )
        self.set_status(order, "start-handling", now)
        self.set_status(order, HANDLING, now)

    def cancel(self, order: Order, reason: str, now: float) -> str:
        """Seller cancel. Returns the effect: cancel (confirmed) or cancel_request (first step)."""
        if order.packages and any(p.kind == "Output" for p in order.packages):
            raise OmsError(
                409, "1", f"Order {order.order_id} has been invoiced and cannot be canceled"
            )
        if order.status == CANCELED:
            return "cancel"
        if order.status in (READY, HANDLING):
            # Two-step cancel through the API: the first call asks, a second one confirms.
            order.status_before_request = order.status
            self.set_status(order, CANCEL_REQUESTED, now)
            return "cancel_request"
        self._cancel(order, reason, by_user=False, now=now)
        return "cancel"

    def deny(self, order: Order, request_id: str, reason: str, now: float) -> None:
        if order.status == CANCELED:
            raise OmsError(400, "1", f"Order {order.order_id} is already canceled")
        req = next((r for r in order.cancellation_requests if r.id == request_id), None)
        if req is None:
            raise OmsError(400, "1", f"Cancellation request {request_id} not found")
        if req.denied_by_seller:
            # Answered already: denying it again must not touch a newer open request.
            raise OmsError(400, "1", f"Cancellation request {request_id} was already denied")
        if order.status not in self.request_statuses:
            raise OmsError(
                400,
                "1",
                f"Order {order.order_id} is in status {order.status}, "
                "not awaiting a decision on a cancellation request",
            )
        req.denied_by_seller = True
        req.deny_reason = reason
        req.denied_at = iso(now)
        self.set_status(order, order.status_before_request or HANDLING, now)
        order.status_before_request = None

    def post_invoice(self, order: Order, invoice: Invoice, now: float) -> tuple[str, bool]:
        """Add an invoice. Returns (receipt, applied); a repeated number changes nothing."""
        if order.status == CANCELED:
            raise OmsError(409, "1", f"Order {order.order_id} is canceled and cannot be invoiced")
        if order.invoice(invoice.number) is not None:
            return order.next_receipt(), False
        invoice.receipt = order.next_receipt()
        order.packages.append(invoice)
        if invoice.kind == "Output" and order.status in self.request_statuses:
            # A cancellation request waits for the seller's answer: the order stays where it is,
            # and a denial brings it back invoiced once its invoices add up.
            if order.output_invoiced >= order.value:
                order.status_before_request = INVOICED
        elif invoice.kind == "Output" and order.status != INVOICED:
            # Once invoiced, a further invoice is kept but the order does not move again.
            if order.output_invoiced >= order.value:
                self.set_status(order, "invoice", now)
                self.set_status(order, INVOICED, now)
            elif len(order.sellers) > 1:
                # One seller of a split order invoiced its part: VTEX tells of each package.
                self._on_change(order, INVOICED, order.status, order.last_change)
        return invoice.receipt, True

    def _cancel(self, order: Order, reason: str, *, by_user: bool, now: float) -> None:
        order.cancellation = {
            "RequestedByUser": by_user,
            "RequestedBySystem": False,
            "RequestedBySellerNotification": not by_user,
            "RequestedByPaymentNotification": False,
            "Reason": reason,
            "CancellationDate": iso(now),
        }
        self.set_status(order, "cancel", now)
        self.set_status(order, CANCELED, now)
