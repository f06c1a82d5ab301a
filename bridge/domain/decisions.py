"""Pure decisions: given the order as VTEX has it now, what the ERP says and what the ledger
holds, what must happen. No I/O here; table-driven tests cover every combination that matters.

``done`` is the set of ledger keys already recorded for the order: the fast path. The systems of
record (the VTEX order, the ERP order) are checked too, so a wiped ledger never causes a second
effect.
"""

from __future__ import annotations

from collections.abc import Set

from bridge.domain.actions import (
    Action,
    CancelOnVtex,
    Decision,
    DenyCancellation,
    HoldShipment,
    ImportToErp,
    PostInvoice,
    RecordInvoiceInErp,
    ReleaseShipment,
    StartHandling,
    StopInErp,
)
from bridge.domain.models import ErpOrder, FulfilmentState, VtexOrder

READY = "ready-for-handling"
CANCELED = "canceled"
INVOICED = "invoiced"
DEFAULT_REQUEST_STATUSES = frozenset(
    {
        "cancellation-requested",
        "cancelation-request",
        "request-cancel",
        "waiting-for-seller-decision",
    }
)
DENY_CARRIER = "The order is already with the carrier and can no longer be cancelled."
DENY_INVOICED = "The order has been invoiced and can no longer be cancelled."


def decide_accept(order: VtexOrder, erp: ErpOrder | None, done: Set[str]) -> Decision:
    """``ready-for-handling``: the ERP imports the order, then VTEX start-handling (once)."""
    if order.status != READY:
        return Decision((), f"order is {order.status}, not {READY}: nothing to accept")
    actions: list[Action] = []
    # The ERP is the record: an order it does not have is imported, whatever the ledger says
    # (the import is idempotent by order id).
    if erp is None:
        actions.append(ImportToErp())
    # The VTEX status is the record: ready-for-handling means start-handling has not happened
    # (a call whose answer was lost and that did apply shows as handling).
    actions.append(StartHandling())
    return Decision(tuple(actions), "ready for handling: import into the ERP, start handling")


def decide_cancelation(
    order: VtexOrder,
    erp: ErpOrder | None,
    done: Set[str],
    request_statuses: Set[str] = DEFAULT_REQUEST_STATUSES,
) -> Decision:
    """A cancellation requested or done on VTEX: stop the ERP, then confirm or deny on VTEX.

    A split order whose shipment is not released yet is cancelled on VTEX first (see below)."""
    if order.status == CANCELED:
        if erp is None or erp.state is FulfilmentState.CANCELLED:
            return Decision((), "cancelled on VTEX and not active in the ERP")
        if erp.dispatched:
            return Decision(
                (), "cancelled on VTEX but already with the carrier: an operator must act"
            )
        return Decision((StopInErp(),), "cancelled on VTEX: stop it in the ERP")
    request = order.open_cancellation_request()
    if request is None:
        return Decision((), f"order is {order.status} with no open cancellation request")
    deny_key = DenyCancellation(request.id, "").key
    if order.invoiced or (erp is not None and erp.dispatched):
        if deny_key in done:
            return Decision((), f"cancellation request {request.id} already denied")
        reason = DENY_INVOICED if order.invoiced else DENY_CARRIER
        return Decision(
            (DenyCancellation(request.id, reason),),
            "cancellation requested but the order is past the point of no return: deny",
        )
    cancel = CancelOnVtex(request.reason or "cancellation requested by the shopper")
    if erp is None or erp.state is FulfilmentState.CANCELLED:
        return Decision((cancel,), "cancellation requested in time, not active in the ERP: cancel")
    if len(order.sellers) > 1 and not erp.released:
        # Another seller of a split order may invoice its part at any moment, and VTEX then
        # refuses the cancel: stopping the ERP first would strand the store's part, which nobody
        # ships. The ERP ships nothing the pre-ship recheck has not released; that recheck
        # re-reads VTEX under the order's lock, and this run's ERP read (carrying its fencing
        # token) already makes the ERP refuse a release from a holder before it. So VTEX can be
        # asked first here.
        return Decision(
            (cancel, StopInErp()),
            "split order's cancellation requested in time: cancel on VTEX, then stop the ERP",
        )
    return Decision(
        (StopInErp(), cancel), "cancellation requested in time: stop the ERP, cancel on VTEX"
    )


def decide_invoices(
    order: VtexOrder,
    erp: ErpOrder | None,
    done: Set[str],
    request_statuses: Set[str] = DEFAULT_REQUEST_STATUSES,
) -> Decision:
    """Every ERP invoice on VTEX (only numbers VTEX lacks), every VTEX invoice in the ERP."""
    if erp is None:
        return Decision((), "order not in the ERP: no invoices to sync")
    if order.status == CANCELED:
        return Decision((), "order cancelled: never invoice it")
    on_vtex = {p.number for p in order.packages}
    in_erp = {i.number for i in erp.invoices}
    actions: list[Action] = []
    waiting_answer = (
        order.open_cancellation_request() is not None or order.status in request_statuses
    )
    # An order the ERP stopped never ships: invoicing it on VTEX would bill the shopper for it.
    stopped = erp.state is FulfilmentState.CANCELLED
    if not waiting_answer and not stopped:
        # An invoice posted while a cancellation request waits would force a denial.
        for invoice in erp.invoices:
            if invoice.number not in on_vtex and PostInvoice(invoice).key not in done:
                actions.append(PostInvoice(invoice))
    for package in order.packages:
        if package.number not in in_erp and RecordInvoiceInErp(package).key not in done:
            actions.append(RecordInvoiceInErp(package))
    if not actions:
        return Decision((), "invoices in step")
    return Decision(tuple(actions), "invoices out of step: post what VTEX lacks, record the rest")


def decide_preship(
    order: VtexOrder,
    erp: ErpOrder | None,
    done: Set[str],
    request_statuses: Set[str] = DEFAULT_REQUEST_STATUSES,
) -> Decision:
    """Just before shipping: hold a cancelled or contested order, else invoice and release."""
    if erp is None or not erp.waiting_for_release:
        state = "not in the ERP" if erp is None else f"{erp.state.value}, released={erp.released}"
        return Decision((), f"shipment not waiting for release ({state})")
    contested = (
        order.status == CANCELED
        or order.open_cancellation_request() is not None
        or order.status in request_statuses
    )
    if contested:
        if erp.state is FulfilmentState.HELD or HoldShipment.key in done:
            return Decision((), "shipment already held while the cancellation is settled")
        return Decision((HoldShipment(),), f"order is {order.status}: hold the shipment")
    invoices = decide_invoices(order, erp, done, request_statuses)
    actions = (*invoices.actions, ReleaseShipment())
    return Decision(actions, "order still wanted: invoices on VTEX, then release the shipment")


def work_for_state(state: str, request_statuses: Set[str] = DEFAULT_REQUEST_STATUSES) -> str | None:
    """Which order work a feed event's state calls for; None when it needs none."""
    if state == READY:
        return "accept"
    if state == CANCELED or state in request_statuses:
        return "cancel-check"
    if state == INVOICED:
        return "invoice"
    return None
