"""The model world of the stateful pipeline test: VTEX and the ERP as fakes that note every
effect they apply, the faults a test can inject, the world's own moves, and the rules to check.

Built on :mod:`tests.unit.fakes` (subclassed, not edited). What is added:

- every write the bridge makes goes through :meth:`World.write`, which counts the effects that
  applied (the call returned; VTEX's "already started" False is a refusal), checks the safety
  rules of DESIGN.md Semantics 4 at the moment of the write, can lose the answer of an applied
  effect (the effect happened, the caller gets a TransientError) and can move the world just
  before a write (the world moving between the bridge's read and its act);
- a ledger whose fencing token is checked per order, with a new holder able to take over mid-run;
- the world's moves: an order reaches ready-for-handling, the ERP picks, packs (issuing one invoice
  per seller) and dispatches released shipments, a shopper asks to cancel, another seller posts
  its invoice on VTEX directly.

The effects counted are those of the sandbox's checker (``sandbox/ledger.py``): a call that
succeeded counts even when the other side found nothing to change, so a repeated import or a
repeated post of an invoice number is a repeated effect.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bridge.domain.decisions import DEFAULT_REQUEST_STATUSES, work_for_state
from bridge.domain.errors import BridgeError, StaleLockError, TransientError
from bridge.domain.models import Invoice, VtexOrder
from bridge.domain.services import WORKS, Outcome, Ports, run_work
from tests.unit.fakes import (
    CANCELED,
    HANDLING,
    INVOICED,
    READY,
    REQUESTED,
    FakeErp,
    FakeHistory,
    FakeLease,
    FakeLedger,
    FakeVtex,
    erp_invoice,
    erp_order,
    new_order_id,
    vtex_invoice,
    vtex_order,
)

T = TypeVar("T")

PRE_HANDLING = "window-to-cancel"
STAGES = ("before-handling", "ready", "handling", "packed")
# A defect this model found (see test_stateful_pipeline): the ERP stopped a split order, then
# another seller invoiced its part on VTEX before the VTEX cancel: VTEX could no longer cancel it.
STRANDED = "stopped in the ERP, invoiced on VTEX by another seller"
MOVES = ("ready", "erp-moves-on", "shopper-cancels", "seller-invoices")


@dataclass(frozen=True)
class Effect:
    """One applied effect: ``kind`` as the sandbox's ledger names it, ``key`` the invoice number
    or cancellation request id where the effect is once per number or request."""

    kind: str
    order_id: str
    key: str = ""


class ModelVtex(FakeVtex):
    """FakeVtex whose writes go through the world, and whose reads the world notes."""

    def __init__(self, world: World) -> None:
        super().__init__(journal=world.journal)
        self.world = world

    def get_order(self, order_id: str) -> VtexOrder:
        order = super().get_order(order_id)
        self.world.seen[order_id] = copy.deepcopy(self.orders[order_id])
        return order

    def start_handling(self, order_id: str) -> bool:
        return self.world.write(
            "vtex.start_handling", order_id, "", lambda: FakeVtex.start_handling(self, order_id)
        )

    def cancel_order(self, order_id: str, reason: str) -> None:
        self.world.write(
            "vtex.cancel", order_id, "", lambda: FakeVtex.cancel_order(self, order_id, reason)
        )

    def deny_cancellation(self, order_id: str, request_id: str, reason: str) -> None:
        def deny() -> None:
            FakeVtex.deny_cancellation(self, order_id, request_id, reason)

        self.world.write("vtex.deny", order_id, request_id, deny)

    def post_invoice(self, order_id: str, invoice: Invoice) -> None:
        self.world.write(
            "vtex.invoice",
            order_id,
            invoice.number,
            lambda: FakeVtex.post_invoice(self, order_id, invoice),
        )


class ModelErp(FakeErp):
    """FakeErp whose writes go through the world."""

    def __init__(self, world: World) -> None:
        super().__init__(journal=world.journal)
        self.world = world

    def import_order(self, order: VtexOrder) -> None:
        oid = order.order_id
        self.world.write("erp.import", oid, "", lambda: FakeErp.import_order(self, order))

    def cancel_order(self, order_id: str) -> None:
        self.world.write("erp.cancel", order_id, "", lambda: FakeErp.cancel_order(self, order_id))

    def hold_shipment(self, order_id: str) -> None:
        self.world.write("erp.hold", order_id, "", lambda: FakeErp.hold_shipment(self, order_id))

    def release_shipment(self, order_id: str) -> None:
        self.world.write(
            "erp.release", order_id, "", lambda: FakeErp.release_shipment(self, order_id)
        )

    def record_invoice(self, order_id: str, invoice: Invoice) -> None:
        self.world.write(
            "erp.invoice",
            order_id,
            invoice.number,
            lambda: FakeErp.record_invoice(self, order_id, invoice),
        )


@dataclass
class FencedLedger(FakeLedger):
    """The ledger with a lock holder per order (``holders``): a record under any other token is
    refused. :meth:`take_over_after` hands the order to a new holder after ``records`` more
    accepted records, as when a paused worker's lease expires and another worker takes it."""

    holders: dict[str, int] = field(default_factory=dict)
    takeovers: dict[str, tuple[int, int]] = field(default_factory=dict)

    def take_over_after(self, order_id: str, records: int, new_token: int) -> None:
        self.takeovers[order_id] = (records, new_token)

    def record(self, order_id: str, key: str, token: int) -> None:
        pending = self.takeovers.get(order_id)
        if pending is not None:
            left, new_token = pending
            if left <= 0:
                self.holders[order_id] = new_token
                del self.takeovers[order_id]
            else:
                self.takeovers[order_id] = (left - 1, new_token)
        if token != self.holders.get(order_id):
            self.refused.append((order_id, key, token))
            raise StaleLockError(f"token {token} no longer holds order {order_id}")
        self.keys.setdefault(order_id, set()).add(key)


class World:
    """A handful of orders on VTEX and in the ERP, the bridge's state, faults and the checker."""

    def __init__(self, plan: Sequence[tuple[str, bool]]) -> None:
        """``plan``: each order's stage (one of :data:`STAGES`) and whether it is split between
        two sellers. Orders that start handled or packed are in the ERP already."""
        self.journal: list[tuple[Any, ...]] = []
        self.order_ids = [new_order_id() for _ in plan]
        self.split = {oid: split for oid, (_, split) in zip(self.order_ids, plan, strict=True)}
        self.statuses: dict[str, list[str]] = {}
        self.ever_packed: set[str] = set()
        self.vtex = ModelVtex(self)
        self.erp = ModelErp(self)
        self.ledger = FencedLedger()
        self.history = FakeHistory()
        self.applied: Counter[Effect] = Counter()
        self.violations: list[str] = []
        self.trail: list[str] = []  # what happened, for the failure message
        self.seen: dict[str, dict[str, Any]] = {}  # the VTEX order at the bridge's latest read
        self._tokens = itertools.count(1)
        self._lose: set[str] = set()
        self._race: tuple[str, str, str] | None = None  # (system, order id, move)
        for oid, (stage, split) in zip(self.order_ids, plan, strict=True):
            self._open(oid, stage, split)

    def _open(self, order_id: str, stage: str, split: bool) -> None:
        handled = stage in ("handling", "packed")
        status = HANDLING if handled else READY if stage == "ready" else PRE_HANDLING
        raw = vtex_order(status, order_id=order_id, split=split)
        self.vtex.orders[order_id] = raw
        self.statuses[order_id] = [READY, HANDLING] if handled else [status]
        if handled:
            items = [{k: i[k] for k in ("id", "quantity", "price", "seller")} for i in raw["items"]]
            self.erp.orders[order_id] = {**erp_order("new", order_id=order_id), "items": items}
        if stage == "packed":
            self.erp.orders[order_id]["state"] = "picking"
            self.erp_moves_on(order_id)

    # -- the bridge's runs -----------------------------------------------------------------------

    @property
    def ports(self) -> Ports:
        return Ports(vtex=self.vtex, erp=self.erp, ledger=self.ledger, history=self.history)

    def acquire(self, order_id: str) -> FakeLease:
        """Take the order's lock: a new fencing token, which the ledger now expects."""
        lease = FakeLease(token=next(self._tokens))
        self.ledger.holders[order_id] = lease.token
        self.ledger.takeovers.pop(order_id, None)  # a takeover a stale run never reached
        return lease

    def run(self, work: str, order_id: str, lease: FakeLease | None = None) -> Outcome | None:
        """Run one piece of work as a worker would, under a new lease unless ``lease`` (a stale
        one) is given. A lost answer, or a stale lease, ends the run (the task retries later);
        any other error is a finding."""
        expected = (TransientError,) if lease is None else (TransientError, StaleLockError)
        lease = lease or self.acquire(order_id)
        try:
            outcome = run_work(work, order_id, self.ports, lease)
        except expected as exc:
            self.trail.append(f"{work} {order_id} (token {lease.token}) ended: {exc}")
            return None
        except BridgeError as exc:
            self.violate(order_id, f"{work} failed with {type(exc).__name__}: {exc}")
            return None
        self.trail.append(f"{work} {order_id} (token {lease.token}): {outcome.effects}")
        return outcome

    def run_stale(self, work: str, order_id: str, checks: int, how: str) -> None:
        """Run under a lock lost mid-run: the lease fails ``ensure`` after ``checks`` checks, or
        (``fence``) a new holder takes the order after ``checks`` records of this one."""
        lease = self.acquire(order_id)
        if how == "lease":
            lease.expire_after(checks)
        else:
            self.ledger.take_over_after(order_id, checks, next(self._tokens))
        self.run(work, order_id, lease)

    def works_called_for(self, order_id: str) -> list[str]:
        """The works the events of the order's current state call for."""
        raw = self.vtex.orders[order_id]
        works = [w for w in [work_for_state(raw["status"])] if w is not None]
        erp = self.erp.orders.get(order_id)
        if erp is not None and erp["state"] in ("packed", "held") and not erp["released"]:
            works.append("recheck")
        if raw["packageAttachment"]["packages"] and "invoice" not in works:
            works.append("invoice")  # a split order's package emits an invoiced event
        return works

    def past_works(self, order_id: str) -> list[str]:
        """The works events of states the order has left behind call for (stale events)."""
        past = {work_for_state(s) for s in self.statuses[order_id][:-1]}
        if order_id in self.ever_packed:
            past.add("recheck")
        return sorted(w for w in past if w is not None)

    # -- faults ------------------------------------------------------------------------------------

    def lose_next_answer(self, system: str) -> None:
        self._lose.add(system)

    def move_mid_run(self, system: str, order_id: str, move: str) -> None:
        """Make ``move`` happen just before the next write the bridge makes to ``system``."""
        self._race = (system, order_id, move)

    def wipe_ledger(self) -> None:
        """Redis wiped: the ledger, and the locks with it, are gone."""
        self.ledger = FencedLedger()
        self.trail.append("ledger wiped")

    def stop_faults(self) -> None:
        self._lose.clear()
        self._race = None

    # -- the bridge's writes -----------------------------------------------------------------------

    def write(self, kind: str, order_id: str, key: str, call: Callable[[], T]) -> T:
        """One write of the bridge: the armed mid-run move first, the checks, the call, the
        count of the applied effect, then the armed loss of its answer."""
        system = kind.split(".")[0]
        if self._race is not None and self._race[0] == system:
            _, moved, move = self._race
            self._race = None
            self.move(move, moved)
        self._check_before(kind, order_id, key)
        try:
            result = call()
        except BridgeError as exc:
            self.trail.append(f"  {kind} {order_id} {key} refused: {exc}")
            raise
        if result is not False:
            self.applied[Effect(kind, order_id, key)] += 1
            self._check_after(kind, order_id)
            self.trail.append(f"  {kind} {order_id} {key} applied")
        self._note_status(order_id)
        if system in self._lose:
            self._lose.discard(system)
            self.trail.append(f"  {kind} {order_id} {key}: answer lost")
            raise TransientError(f"{kind}: connection dropped after the effect applied")
        return result

    def _check_before(self, kind: str, order_id: str, key: str) -> None:
        raw = self.vtex.orders[order_id]
        seen = self.seen.get(order_id, {})
        if kind == "vtex.start_handling" and order_id not in self.erp.orders:
            self.violate(order_id, "start-handling before the ERP imported the order")
        if kind == "vtex.invoice" and raw["status"] == CANCELED:
            self.violate(order_id, f"invoice {key} posted on a cancelled order")
        # What the bridge had read decides what it could know: a rule broken by a move of the
        # world after its read (a race nobody can close) is not held against it.
        stopping = kind in ("vtex.cancel", "erp.cancel")
        if stopping and _output_invoices(seen) and seen["status"] != CANCELED:
            self.violate(order_id, f"{kind} of an order the bridge had read as invoiced")
        if kind == "vtex.deny" and any(
            r["id"] == key and r["deniedBySeller"] for r in raw["cancellationRequests"] or []
        ):
            self.violate(order_id, f"cancellation request {key} denied a second time")

    def _check_after(self, kind: str, order_id: str) -> None:
        raw = self.vtex.orders[order_id]
        erp = self.erp.orders.get(order_id) or {}
        if kind == "vtex.cancel" and erp.get("state") == "dispatched":
            self.violate(order_id, "VTEX cancel of an order the ERP handed to the carrier")
        if kind == "erp.release":
            if raw["status"] == CANCELED:
                self.violate(order_id, "shipment released while the VTEX order is cancelled")
            # A request made after the bridge's last read is the sandbox's grace; one the bridge
            # had read and released anyway is a violation.
            seen_open = {r["id"] for r in _open_requests(self.seen.get(order_id, {}))}
            if any(r["id"] in seen_open for r in _open_requests(raw)):
                self.violate(order_id, "shipment released with an open cancellation request")
            # The seller's own first cancel step leaves a request status and no request entry.
            seen_status = self.seen.get(order_id, {}).get("status")
            asked = raw["status"] in DEFAULT_REQUEST_STATUSES and not _open_requests(raw)
            if asked and seen_status == raw["status"]:
                self.violate(order_id, f"shipment released while the order is {seen_status}")

    # -- the world's moves -------------------------------------------------------------------------

    def move(self, move: str, order_id: str) -> bool:
        """One scenario step; False when it does not apply to the order as it is."""
        raw = self.vtex.orders[order_id]
        moved = False
        if move == "ready" and raw["status"] == PRE_HANDLING:
            raw["status"] = READY
            moved = True
        elif move == "erp-moves-on":
            moved = self.erp_moves_on(order_id)
        elif move == "shopper-cancels":
            moved = self._shopper_cancels(order_id, raw)
        elif move == "seller-invoices":
            moved = self._seller_invoices(order_id, raw)
        if moved:
            self.trail.append(f"world: {move} {order_id}")
            self._note_status(order_id)
        return moved

    def erp_moves_on(self, order_id: str) -> bool:
        """The ERP's next step: picking, packed (one invoice per seller), or dispatched once
        the bridge released the shipment."""
        raw = self.erp.orders.get(order_id)
        if raw is None:
            return False
        if raw["state"] == "new":
            raw["state"] = "picking"
        elif raw["state"] == "picking":
            raw["state"] = "packed"
            raw["invoices"].extend(_issue_invoices(order_id, raw["items"]))
            self.ever_packed.add(order_id)
        elif raw["state"] == "packed" and raw["released"]:
            raw["state"] = "dispatched"
            if self.vtex.orders[order_id]["status"] == CANCELED:
                self.violate(order_id, "the ERP dispatched an order VTEX shows cancelled")
        else:
            return False
        self.trail.append(f"world: ERP {order_id} {raw['state']}")
        return True

    def _shopper_cancels(self, order_id: str, raw: dict[str, Any]) -> bool:
        if raw["status"] == PRE_HANDLING:
            # Still in the window: VTEX cancels at once, nothing reached the ERP.
            raw["status"] = CANCELED
            raw["cancellationData"] = {"RequestedByUser": True, "Reason": "Changed my mind"}
            return True
        if raw["status"] in (READY, HANDLING, INVOICED) and not _open_requests(raw):
            number = len(raw["cancellationRequests"] or []) + 1
            self.vtex.shopper_requests_cancel(order_id, f"req-{number}")
            return True
        return False

    def _seller_invoices(self, order_id: str, raw: dict[str, Any]) -> bool:
        """Seller B of a split order posts its own invoice on VTEX (not through the bridge)."""
        packages = raw["packageAttachment"]["packages"]
        number = f"SELLERB-{order_id.split('-')[0][-6:]}"
        if not self.split[order_id] or raw["status"] not in (HANDLING, REQUESTED, INVOICED):
            return False
        if any(p["invoiceNumber"] == number for p in packages):
            return False
        packages.append(vtex_invoice(number, 5_000, seller="sellerb", item="1002"))
        # FakeVtex's own rule for an invoice posted while a request waits (not its post_invoice:
        # that would record a call of the bridge).
        invoiced = sum(p["invoiceValue"] for p in packages if p["type"] == "Output")
        if invoiced >= raw["value"]:
            if raw["status"] == REQUESTED:
                self.vtex._before_request[order_id] = INVOICED
            else:
                raw["status"] = INVOICED
        return True

    def _note_status(self, order_id: str) -> None:
        status = self.vtex.orders[order_id]["status"]
        if self.statuses[order_id][-1] != status:
            self.statuses[order_id].append(status)

    # -- the checker -------------------------------------------------------------------------------

    def violate(self, order_id: str, what: str) -> None:
        self.violations.append(f"{order_id}: {what}")

    def repeated(self) -> list[str]:
        """Effects applied more than once (per order, per invoice number or request id)."""
        return [
            f"{e.kind} {e.order_id} {e.key} applied {n} times"
            for e, n in self.applied.items()
            if n > 1
        ]

    def settle(self, max_rounds: int = 12) -> bool:
        """Faults stop; every work runs for every order and the world moves on until a whole
        round changes nothing. False when it never settles (a livelock)."""
        self.stop_faults()
        for _ in range(max_rounds):
            changed = False
            for oid in self.order_ids:
                changed |= self.move("ready", oid)
                for work in WORKS:
                    outcome = self.run(work, oid)
                    changed |= outcome is None or bool(outcome.effects or outcome.already_done)
                changed |= self.erp_moves_on(oid)
            if not changed:
                return True
        return False

    def unfinished(self) -> dict[str, str]:
        """Orders not at an end, with what is wrong (see :meth:`_end`)."""
        ends = {oid: self._end(oid) for oid in self.order_ids}
        return {oid: why for oid, why in ends.items() if why is not None}

    def _end(self, order_id: str) -> str | None:
        """None when the order is at an end: cancelled on both sides (or never in the ERP), or
        invoiced on VTEX with the ERP dispatched and the same invoice numbers on both sides;
        and no cancellation request waits for an answer."""
        raw = self.vtex.orders[order_id]
        erp = self.erp.orders.get(order_id)
        erp_state = None if erp is None else erp["state"]
        on_vtex = sorted(p["invoiceNumber"] for p in raw["packageAttachment"]["packages"])
        in_erp = sorted(i["invoiceNumber"] for i in (erp or {}).get("invoices", []))
        where = f"VTEX {raw['status']} {on_vtex}, ERP {erp_state} {in_erp}"
        if _open_requests(raw) or raw["status"] in DEFAULT_REQUEST_STATUSES:
            return f"cancellation request unanswered ({where})"
        cancelled = raw["status"] == CANCELED and erp_state in (None, "cancelled")
        shipped = raw["status"] == INVOICED and erp_state == "dispatched" and on_vtex == in_erp
        if cancelled or shipped:
            return None
        if erp_state == "cancelled" and any(n.startswith("SELLERB-") for n in on_vtex):
            return f"{STRANDED} ({where})"
        return f"not at an end ({where})"

    def report(self, order_id: str | None = None, last: int = 40) -> str:
        lines = [t for t in self.trail if order_id is None or order_id in t]
        return "\n".join(lines[-last:])


def _open_requests(raw: dict[str, Any]) -> list[dict[str, Any]]:
    if not raw or raw.get("status") == CANCELED:
        return []
    return [r for r in raw.get("cancellationRequests") or [] if not r["deniedBySeller"]]


def _output_invoices(raw: dict[str, Any]) -> list[dict[str, Any]]:
    if not raw:
        return []
    return [p for p in raw["packageAttachment"]["packages"] if p["type"] == "Output"]


def _issue_invoices(order_id: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One invoice per seller, numbered after the order, as the sandbox's ERP issues them."""
    by_seller: Counter[str] = Counter()
    for item in items:
        by_seller[str(item.get("seller", "1"))] += int(item["price"]) * int(item["quantity"])
    base = order_id.split("-")[0]
    return [
        erp_invoice(f"NF{base}{n:02d}", value, seller=seller)
        for n, (seller, value) in enumerate(sorted(by_seller.items()), start=1)
    ]
