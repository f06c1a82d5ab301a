"""VTEX's Order Management System over HTTP: orders, the Feed v3 and the hook configuration.

One :class:`VtexClient` per process, over one ``requests.Session`` with explicit (connect, read)
timeouts (:mod:`bridge.vtex.transport`); the feed and hook calls come from
:class:`bridge.vtex.feed.FeedCalls`. Every call takes a turn from the account's shared rate
budget; every answer is checked at the boundary (a pydantic model, or the shape VTEX documents);
every failure becomes one of :mod:`bridge.vtex.errors`. The client never retries.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.domain.models import ORDER_ID_PATTERN, STATE_PATTERN, Invoice, OrderId, VtexOrder
from bridge.vtex.errors import VtexConflict
from bridge.vtex.feed import FeedCalls, checked_statuses
from bridge.vtex.transport import bad_response, first_problem, json_body

if TYPE_CHECKING:
    from bridge.domain.ports import VtexPort

log = logging.getLogger(__name__)

ORDER = "/api/oms/pvt/orders/{orderId}"
MAX_PAGES = 30  # VTEX serves at most 30 pages of a list
_ALREADY_STARTED = "OMS003"


class OrderSummary(BaseModel):
    """One entry of the order list: enough for a sweep to pick orders to look at."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    order_id: OrderId = Field(alias="orderId")
    status: str = Field(pattern=STATE_PATTERN)


class OrderPage(BaseModel):
    """One page of ``GET /api/oms/pvt/orders``. ``skipped``: entries that failed validation."""

    model_config = ConfigDict(frozen=True)

    orders: list[OrderSummary]
    total: int
    pages: int
    page: int
    skipped: int = 0


class _Paging(BaseModel):
    total: int
    pages: int
    current_page: int = Field(alias="currentPage")


class VtexClient(FeedCalls):
    """VTEX's OMS for one account and appKey (implements :class:`bridge.domain.ports.VtexPort`).

    Built as ``VtexClient(base_url, app_key, app_token, *, timeout, budget, max_budget_wait,
    session)`` (see :class:`bridge.vtex.transport.VtexTransport`). Order ids are validated before
    they reach a URL (``ValueError`` otherwise).
    """

    def get_order(self, order_id: str) -> VtexOrder:
        """The order as VTEX has it now (:class:`VtexNotFound` when it has none)."""
        order_id = _order_id(order_id)
        response = self._call("GET", ORDER, {"orderId": order_id})
        try:
            order = VtexOrder.model_validate(json_body(response, dict, "an order object"))
        except ValidationError as exc:
            raise bad_response(
                response, f"an order VTEX sent does not validate: {first_problem(exc)}"
            ) from None
        if order.order_id != order_id:
            raise bad_response(response, "VTEX answered with another order than the one asked for")
        return order

    def list_orders(self, statuses: Sequence[str], page: int = 1, per_page: int = 100) -> OrderPage:
        """A page of orders in ``statuses`` (VTEX indexes with a lag: for sweeps only)."""
        if not 1 <= page <= MAX_PAGES or not 1 <= per_page <= 100:
            raise ValueError(f"page must be 1..{MAX_PAGES} and per_page 1..100")
        params: dict[str, str | int] = {
            "f_status": ",".join(checked_statuses(statuses)),
            "page": page,
            "per_page": per_page,
        }
        response = self._call("GET", "/api/oms/pvt/orders", params=params)
        body = json_body(response, dict, "an order list object")
        entries = body.get("list")
        try:
            paging = _Paging.model_validate(body.get("paging"))
        except ValidationError as exc:
            raise bad_response(
                response, f"the order list's paging is unreadable: {first_problem(exc)}"
            ) from None
        if not isinstance(entries, list):
            raise bad_response(response, "the order list has no list of orders")
        orders: list[OrderSummary] = []
        for entry in entries:
            try:
                orders.append(OrderSummary.model_validate(entry))
            except ValidationError:
                continue  # counted below: one bad entry must not hide the others
        if len(orders) < len(entries):
            log.warning("VTEX order list: %d entries failed validation", len(entries) - len(orders))
        return OrderPage(
            orders=orders,
            total=paging.total,
            pages=paging.pages,
            page=paging.current_page,
            skipped=len(entries) - len(orders),
        )

    def start_handling(self, order_id: str) -> bool:
        """Start handling: True when VTEX did it now, False when it refuses with OMS003 (the
        order is no longer in ready-for-handling: already started, or moved on, e.g. cancelled).
        """
        try:
            self._call("POST", ORDER + "/start-handling", {"orderId": _order_id(order_id)})
        except VtexConflict as exc:
            if exc.code == _ALREADY_STARTED:
                return False
            raise
        return True

    def cancel_order(self, order_id: str, reason: str) -> None:
        """Cancel (in ready-for-handling/handling a first call requests, a second confirms)."""
        path = {"orderId": _order_id(order_id)}
        self._call("POST", ORDER + "/cancel", path, body={"reason": reason})

    def deny_cancellation(self, order_id: str, request_id: str, reason: str) -> None:
        """Decline the shopper's cancellation request ``request_id``, telling them ``reason``."""
        path = {"orderId": _order_id(order_id)}
        if not request_id or len(request_id) > 200 or not reason:
            raise ValueError("a cancellation request id (1..200 chars) and a reason are required")
        body = {"cancellationRequestId": request_id, "denyReason": reason}
        template = "/api/orders/pvt/document/{orderId}/deny-cancellation-request"
        self._call("POST", template, path, body=body)

    def post_invoice(self, order_id: str, invoice: Invoice) -> None:
        """Notify VTEX of an invoice (posting a number VTEX has again changes nothing)."""
        path = {"orderId": _order_id(order_id)}
        self._call("POST", ORDER + "/invoice", path, body=invoice_body(invoice))

    def update_tracking(
        self,
        order_id: str,
        invoice_number: str,
        tracking_number: str,
        *,
        courier: str | None = None,
        tracking_url: str | None = None,
        dispatched_date: str | None = None,
    ) -> None:
        """Add tracking to an invoice VTEX has (:class:`VtexNotFound` when it has not)."""
        if not invoice_number or len(invoice_number) > 100:
            raise ValueError("invoice_number must be 1..100 characters")
        path = {"orderId": _order_id(order_id), "invoiceNumber": invoice_number}
        # VTEX's spec requires all four fields; the ones we lack go as null.
        body = {
            "trackingNumber": tracking_number,
            "trackingUrl": tracking_url,
            "courier": courier,
            "dispatchedDate": dispatched_date,
        }
        self._call("PATCH", ORDER + "/invoice/{invoiceNumber}", path, body=body)


def invoice_body(invoice: Invoice) -> dict[str, Any]:
    """VTEX's invoice notification. ``invoiceValue`` is a string of cents in VTEX's spec."""
    if not invoice.issuance_date:
        raise ValueError(f"invoice {invoice.number!r} has no issuance date; VTEX requires one")
    body: dict[str, Any] = {
        "type": invoice.kind,
        "invoiceNumber": invoice.number,
        "invoiceValue": str(invoice.value),
        "issuanceDate": invoice.issuance_date,
        "items": [{"id": i.id, "price": i.price, "quantity": i.quantity} for i in invoice.items],
    }
    if invoice.courier:
        body["courier"] = invoice.courier
    if invoice.tracking_number:
        body["trackingNumber"] = invoice.tracking_number
    return body


def _order_id(order_id: str) -> str:
    if not isinstance(order_id, str) or re.fullmatch(ORDER_ID_PATTERN, order_id) is None:
        raise ValueError(f"not a VTEX order id: {repr(order_id)[:60]}")
    return order_id


if TYPE_CHECKING:

    def _implements_the_port(client: VtexClient) -> VtexPort:
        return client  # mypy checks VtexClient against the domain's VtexPort here
