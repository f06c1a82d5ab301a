"""Order work: read the order as it is now, decide, act, record. Ports come in as arguments.

Each run holds the order's lease (the caller acquired it). Before every effect the lease is
checked, and every effect is recorded in the ledger with the lease's fencing token: a worker whose
lease expired under it stops instead of writing. When the world moves under a run (the ERP
dispatched the order between our read and our cancel), the run reads again and decides afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Set
from dataclasses import dataclass, field
from typing import Any

from bridge.domain import decisions
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
from bridge.domain.errors import AuthenticationError, ConflictError, PermanentError
from bridge.domain.fencing import fenced
from bridge.domain.models import ErpOrder, VtexOrder
from bridge.domain.ports import ErpPort, HistoryPort, Lease, LedgerPort, VtexPort

log = logging.getLogger(__name__)

WORKS = ("accept", "cancel-check", "recheck", "invoice")
MAX_REDECIDES = 3

Decide = Callable[[VtexOrder, ErpOrder | None, Set[str], Set[str]], Decision]


def _accept(order: VtexOrder, erp: ErpOrder | None, done: Set[str], _: Set[str]) -> Decision:
    return decisions.decide_accept(order, erp, done)


DECIDERS: dict[str, Decide] = {
    "accept": _accept,
    "cancel-check": decisions.decide_cancelation,
    "recheck": decisions.decide_preship,
    "invoice": decisions.decide_invoices,
}


@dataclass
class Ports:
    vtex: VtexPort
    erp: ErpPort
    ledger: LedgerPort
    history: HistoryPort
    request_statuses: Set[str] = field(default_factory=lambda: decisions.DEFAULT_REQUEST_STATUSES)


@dataclass
class Outcome:
    """What a run decided and did: returned by tasks, shown by ``vtexbridge trigger --wait``."""

    work: str
    order_id: str
    status: str = ""
    decisions: list[str] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "work": self.work,
            "orderId": self.order_id,
            "status": self.status,
            "decisions": list(self.decisions),
            "effects": list(self.effects),
            "alreadyDone": list(self.already_done),
        }


def run_work(work: str, order_id: str, ports: Ports, lease: Lease) -> Outcome:
    """Run one piece of order work under ``lease``; transient errors propagate for a retry."""
    decide = DECIDERS[work]
    outcome = Outcome(work, order_id)
    refused: dict[str, PermanentError] = {}
    try:
        for _ in range(MAX_REDECIDES):
            order = ports.vtex.get_order(order_id)
            with fenced(order_id, lease.token, lease.ensure):
                erp = ports.erp.get_order(order_id)
            done = ports.ledger.done(order_id)
            decision = decide(order, erp, done, ports.request_statuses)
            outcome.status = order.status
            outcome.decisions.append(decision.reason)
            current = ""
            try:
                for action in decision.actions:
                    current = action.key
                    if current in refused:
                        # Refused once and still called for after a fresh read: it stands.
                        raise refused[current]
                    lease.ensure()
                    with fenced(order_id, lease.token, lease.ensure):
                        applied = _apply(action, order, ports)
                    if applied:
                        outcome.effects.append(action.key)
                    else:
                        outcome.already_done.append(action.key)
                    ports.ledger.record(order_id, action.key, lease.token)
            except ConflictError as exc:
                # The world moved between our read and our act: read again and decide afresh.
                log.info("order %s: %s conflicted (%s); deciding again", order_id, work, exc)
                outcome.decisions.append(f"conflict: {exc}")
                continue
            except PermanentError as exc:
                if isinstance(exc, AuthenticationError) or current in refused:
                    raise
                # A refusal may mean someone else did it meanwhile (a run whose lease expired
                # under a paused worker, say): read again; if it is still needed, it stands.
                refused[current] = exc
                outcome.decisions.append(f"refused: {exc}")
                continue
            return outcome
        raise ConflictError(f"order {order_id}: {work} kept conflicting with the order's state")
    finally:
        # One entry per run, whatever its end (done, conflicting, stale lease, transient error).
        ports.history.add(order_id, {"work": work, **outcome.to_json()})


def _apply(action: Action, order: VtexOrder, ports: Ports) -> bool:
    """Carry out one action; False when the other side says it was already done."""
    oid = order.order_id
    match action:
        case ImportToErp():
            ports.erp.import_order(order)
        case StartHandling():
            return ports.vtex.start_handling(oid)
        case StopInErp():
            ports.erp.cancel_order(oid)
        case CancelOnVtex(reason=reason):
            ports.vtex.cancel_order(oid, reason)
        case DenyCancellation(request_id=request_id, reason=reason):
            ports.vtex.deny_cancellation(oid, request_id, reason)
        case HoldShipment():
            ports.erp.hold_shipment(oid)
        case ReleaseShipment():
            ports.erp.release_shipment(oid)
        case PostInvoice(invoice=invoice):
            ports.vtex.post_invoice(oid, invoice)
        case RecordInvoiceInErp(invoice=invoice):
            ports.erp.record_invoice(oid, invoice)
    return True
