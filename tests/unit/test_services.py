"""The order-work service driven through in-memory fakes of its ports.

Each test builds its own order (its own id) on a FakeVtex and a FakeErp, runs ``run_work`` under a
FakeLease and checks what the systems of record, the ledger and the history hold afterwards.
"""

from __future__ import annotations

from typing import Any

import pytest

from bridge.domain.decisions import DENY_CARRIER, DENY_INVOICED
from bridge.domain.errors import (
    BridgeError,
    ConflictError,
    NotFoundError,
    PermanentError,
    StaleLockError,
    TransientError,
)
from bridge.domain.services import MAX_REDECIDES, Outcome, Ports, run_work
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
    cancellation_request,
    erp_invoice,
    erp_order,
    new_order_id,
    vtex_invoice,
    vtex_order,
)


class World:
    """One order's VTEX, ERP, ledger and history, and a lease on it."""

    def __init__(self, vtex: dict[str, Any], erp: dict[str, Any] | None = None) -> None:
        self.order_id: str = vtex["orderId"]
        self.journal: list[tuple[Any, ...]] = []  # writes to VTEX and the ERP, in order
        self.vtex = FakeVtex(vtex, journal=self.journal)
        self.erp = FakeErp(*([erp] if erp is not None else []), journal=self.journal)
        self.ledger = FakeLedger()
        self.history = FakeHistory()
        self.lease = FakeLease(token=1)

    @property
    def ports(self) -> Ports:
        return Ports(vtex=self.vtex, erp=self.erp, ledger=self.ledger, history=self.history)

    def run(self, work: str) -> Outcome:
        return run_work(work, self.order_id, self.ports, self.lease)

    def recorded(self) -> set[str]:
        return self.ledger.done(self.order_id)

    def writes(self) -> list[str]:
        """``system.method`` of every write, in order, across VTEX and the ERP."""
        return [f"{call[0]}.{call[1]}" for call in self.journal]


def nf(order_id: str, n: int = 1, value: int = 10_000, seller: str = "1") -> dict[str, Any]:
    """The invoice the ERP issues when packing, numbered after the order."""
    return erp_invoice(f"NF{order_id.split('-')[0]}{n:02d}", value, seller=seller)


def requested(order_id: str, **kw: Any) -> dict[str, Any]:
    """An order in cancellation-requested with the shopper's open request ``req-1``."""
    return vtex_order(REQUESTED, order_id=order_id, requests=[cancellation_request("req-1")], **kw)


# -- accept ----------------------------------------------------------------------------------------


def test_accept_imports_the_order_then_starts_handling() -> None:
    # given an order ready for handling that the ERP does not have
    oid = new_order_id()
    world = World(vtex_order(READY, order_id=oid))
    # when accept runs
    outcome = world.run("accept")
    # then the ERP imports it, then VTEX starts handling, and both are recorded
    assert world.journal == [("erp", "import_order", oid), ("vtex", "start_handling", oid)]
    assert world.erp.state(oid) == "new"
    assert world.vtex.order(oid).status == HANDLING
    assert outcome.effects == ["erp.import", "vtex.start_handling"]
    assert world.recorded() == {"erp.import", "vtex.start_handling"}


def test_a_duplicate_accept_imports_once_and_starts_handling_once() -> None:
    # given an order ready for handling, accepted once
    oid = new_order_id()
    world = World(vtex_order(READY, order_id=oid))
    world.run("accept")
    # when its event is delivered again
    second = world.run("accept")
    # then nothing happens a second time
    assert world.erp.count("import_order") == 1
    assert world.vtex.count("start_handling") == 1
    assert second.effects == [] and second.already_done == []
    assert second.status == HANDLING


def test_accept_after_a_wiped_ledger_causes_no_second_effect() -> None:
    # given an order accepted once, then Redis wiped (a new, empty ledger)
    oid = new_order_id()
    world = World(vtex_order(READY, order_id=oid))
    world.run("accept")
    world.ledger = FakeLedger()
    # when accept runs again
    outcome = world.run("accept")
    # then the systems of record say it is done: no second import, no second start
    assert world.erp.count("import_order") == 1
    assert world.vtex.count("start_handling") == 1
    assert outcome.effects == []


def test_accept_when_vtex_already_started_handling_records_it_as_already_done() -> None:
    # given an order ready for handling in the ERP, whose start-handling VTEX applies behind our
    # back (an earlier call whose answer was lost)
    oid = new_order_id()
    world = World(vtex_order(READY, order_id=oid), erp_order("new", order_id=oid))
    world.vtex.when_called("start_handling", lambda: world.vtex.orders[oid].update(status=HANDLING))
    # when accept runs
    outcome = world.run("accept")
    # then VTEX's "already started" is no failure: recorded as done, not as a new effect
    assert outcome.effects == []
    assert outcome.already_done == ["vtex.start_handling"]
    assert world.recorded() == {"vtex.start_handling"}
    assert world.erp.count("import_order") == 0


# -- cancellation ----------------------------------------------------------------------------------


def test_check_cancel_stops_the_erp_then_cancels_on_vtex() -> None:
    # given a cancellation request for an order the ERP is picking
    oid = new_order_id()
    world = World(requested(oid), erp_order("picking", order_id=oid))
    # when the cancellation is checked
    outcome = world.run("cancel-check")
    # then the ERP stops the order first, then VTEX confirms the cancellation
    assert world.writes() == ["erp.cancel_order", "vtex.cancel_order"]
    assert world.erp.state(oid) == "cancelled"
    assert world.vtex.order(oid).status == CANCELED
    assert world.vtex.writes()[-1] == ("cancel_order", oid, "Changed my mind")
    assert outcome.effects == ["erp.cancel", "vtex.cancel"]
    assert world.recorded() == {"erp.cancel", "vtex.cancel"}


def test_check_cancel_stops_the_erp_before_vtex_confirms() -> None:
    oid = new_order_id()
    world = World(requested(oid), erp_order("packed", order_id=oid, invoices=[nf(oid)]))
    erp_state_at_cancel: list[str | None] = []
    world.vtex.when_called("cancel_order", lambda: erp_state_at_cancel.append(world.erp.state(oid)))
    world.run("cancel-check")
    assert erp_state_at_cancel == ["cancelled"]


def test_a_cancelled_order_is_stopped_in_the_erp_only() -> None:
    # given an order cancelled on VTEX that the ERP has packed
    oid = new_order_id()
    world = World(vtex_order(CANCELED, order_id=oid), erp_order("packed", order_id=oid))
    # when the cancellation is checked
    outcome = world.run("cancel-check")
    # then the ERP stops it and VTEX is only read
    assert world.erp.state(oid) == "cancelled"
    assert world.vtex.methods() == []
    assert outcome.effects == ["erp.cancel"]


def test_an_order_dispatched_between_the_read_and_the_erp_cancel_is_denied_instead() -> None:
    # given a cancellation request for a packed, released order, which the carrier takes just
    # before the bridge's ERP cancel reaches the ERP
    oid = new_order_id()
    world = World(requested(oid), erp_order("packed", order_id=oid, released=True))
    world.erp.dispatch_at("cancel_order", oid)
    # when the cancellation is checked
    outcome = world.run("cancel-check")
    # then the ERP refuses, the service reads again and denies with the carrier reason
    assert world.vtex.count("get_order") == 2
    assert world.vtex.count("cancel_order") == 0
    assert world.vtex.writes()[-1] == ("deny_cancellation", oid, "req-1", DENY_CARRIER)
    assert world.vtex.order(oid).open_cancellation_request() is None
    assert world.vtex.order(oid).status == HANDLING
    assert world.erp.state(oid) == "dispatched"
    assert outcome.effects == ["vtex.deny:req-1"]
    assert any(d.startswith("conflict:") for d in outcome.decisions)
    assert world.recorded() == {"vtex.deny:req-1"}


def test_an_invoiced_orders_cancellation_request_is_denied_once_even_when_run_twice() -> None:
    # given an invoiced order the shopper asks to cancel
    oid = new_order_id()
    number = f"NF{oid.split('-')[0]}01"
    world = World(
        vtex_order(INVOICED, order_id=oid, invoices=[vtex_invoice(number, 10_000)]),
        erp_order("dispatched", order_id=oid, released=True, invoices=[nf(oid)]),
    )
    world.vtex.shopper_requests_cancel(oid, "req-7")
    # when the cancellation is checked twice (a duplicate event)
    first = world.run("cancel-check")
    second = world.run("cancel-check")
    # then the request is denied once, with the invoiced reason, and nothing is cancelled
    assert world.vtex.count("deny_cancellation") == 1
    assert world.vtex.writes()[-1] == ("deny_cancellation", oid, "req-7", DENY_INVOICED)
    assert world.vtex.count("cancel_order") == 0 and world.erp.count("cancel_order") == 0
    assert world.vtex.order(oid).status == INVOICED
    assert first.effects == ["vtex.deny:req-7"]
    assert second.effects == []


def test_a_denial_vtex_still_shows_open_is_not_sent_twice() -> None:
    # given a request denied once, which VTEX still shows open (its read lags behind its write)
    oid = new_order_id()
    world = World(requested(oid), erp_order("dispatched", order_id=oid, released=True))
    world.run("cancel-check")
    world.vtex.orders[oid] = requested(oid)
    # when the cancellation is checked again
    outcome = world.run("cancel-check")
    # then the ledger knows the denial: VTEX is not asked twice (it would refuse)
    assert world.vtex.count("deny_cancellation") == 1
    assert outcome.effects == []


def test_work_that_keeps_conflicting_gives_up_with_a_conflict_instead_of_looping() -> None:
    # given an ERP that refuses every cancel as conflicting
    oid = new_order_id()
    world = World(requested(oid), erp_order("new", order_id=oid))
    world.erp.fail_next("cancel_order", ConflictError("locked by the warehouse"), times=10)
    # when the cancellation is checked
    with pytest.raises(ConflictError):
        world.run("cancel-check")
    # then it decided afresh a bounded number of times and cancelled nothing on VTEX
    assert world.erp.count("cancel_order") == MAX_REDECIDES
    assert world.vtex.count("cancel_order") == 0
    assert world.recorded() == set()


# -- pre-ship recheck ------------------------------------------------------------------------------


def test_recheck_holds_a_shipment_whose_order_has_an_open_cancellation_request() -> None:
    # given a packed shipment whose order the shopper asks to cancel
    oid = new_order_id()
    world = World(requested(oid), erp_order("packed", order_id=oid, invoices=[nf(oid)]))
    # when the shipment is rechecked
    outcome = world.run("recheck")
    # then it is held, not released, and its invoice is not posted
    assert world.erp.methods() == ["hold_shipment"]
    assert world.erp.state(oid) == "held"
    assert world.vtex.methods() == []
    assert outcome.effects == ["erp.hold"]


def test_recheck_holds_a_shipment_whose_order_was_cancelled() -> None:
    oid = new_order_id()
    world = World(vtex_order(CANCELED, order_id=oid), erp_order("packed", order_id=oid))
    world.run("recheck")
    assert world.erp.methods() == ["hold_shipment"]
    assert world.erp.orders[oid]["released"] is False


def test_recheck_posts_the_invoices_then_releases_a_clean_shipment() -> None:
    # given a packed shipment of an order in handling, its invoice not yet on VTEX
    oid = new_order_id()
    world = World(
        vtex_order(HANDLING, order_id=oid), erp_order("packed", order_id=oid, invoices=[nf(oid)])
    )
    # when the shipment is rechecked
    outcome = world.run("recheck")
    # then the invoice goes to VTEX first, then the ERP releases the shipment
    number = f"NF{oid.split('-')[0]}01"
    assert world.writes() == ["vtex.post_invoice", "erp.release_shipment"]
    assert world.vtex.order(oid).status == INVOICED
    assert [p.number for p in world.vtex.order(oid).packages] == [number]
    assert world.erp.orders[oid]["released"] is True
    assert outcome.effects == [f"vtex.invoice:{number}", "erp.release"]


def test_a_shipment_whose_order_is_cancelled_while_invoicing_is_held_not_released() -> None:
    # given a clean packed shipment whose order is cancelled on VTEX just before the invoice post
    oid = new_order_id()
    world = World(
        vtex_order(HANDLING, order_id=oid), erp_order("packed", order_id=oid, invoices=[nf(oid)])
    )
    world.vtex.when_called("post_invoice", lambda: world.vtex.orders[oid].update(status=CANCELED))
    # when the shipment is rechecked
    outcome = world.run("recheck")
    # then VTEX refuses the invoice, the service reads again and holds the shipment
    assert world.erp.methods() == ["hold_shipment"]
    assert world.erp.orders[oid]["released"] is False
    assert outcome.effects == ["erp.hold"]


# -- invoices --------------------------------------------------------------------------------------


def test_a_split_orders_invoices_are_synced_both_ways_once_per_number() -> None:
    # given a split order: seller B invoiced its part on VTEX; the ERP issued the store's invoice
    oid = new_order_id()
    store_invoice = nf(oid, 1, 5_000)
    world = World(
        vtex_order(
            HANDLING,
            order_id=oid,
            split=True,
            invoices=[vtex_invoice("SELLERB-0042", 5_000, seller="sellerb", item="1002")],
        ),
        erp_order("packed", order_id=oid, invoices=[store_invoice]),
    )
    # when the invoice work runs twice (two sellers' invoiced events)
    first = world.run("invoice")
    second = world.run("invoice")
    # then the store's invoice is posted once and seller B's recorded once
    assert world.vtex.count("post_invoice") == 1
    assert world.erp.count("record_invoice") == 1
    assert world.erp.invoice_numbers(oid) == [store_invoice["invoiceNumber"], "SELLERB-0042"]
    assert world.vtex.order(oid).status == INVOICED
    assert first.effects == [
        f"vtex.invoice:{store_invoice['invoiceNumber']}",
        "erp.invoice:SELLERB-0042",
    ]
    assert second.effects == []


# -- the lease and the fencing token ---------------------------------------------------------------


def test_a_lease_lost_before_an_effect_stops_the_run_before_it() -> None:
    # given an order ready for handling and a lease that is already lost
    oid = new_order_id()
    world = World(vtex_order(READY, order_id=oid))
    world.lease.lost = True
    # when accept runs
    with pytest.raises(StaleLockError):
        world.run("accept")
    # then no effect happened and nothing is recorded
    assert world.erp.methods() == [] and world.vtex.methods() == []
    assert world.erp.state(oid) is None
    assert world.recorded() == set()


def test_a_lease_lost_between_two_effects_stops_the_run_before_the_second() -> None:
    # given an order ready for handling and a lease that expires after the first check
    oid = new_order_id()
    world = World(vtex_order(READY, order_id=oid))
    world.lease.expire_after(1)
    # when accept runs
    with pytest.raises(StaleLockError):
        world.run("accept")
    # then the import happened and was recorded, the start-handling did not happen
    assert world.erp.state(oid) == "new"
    assert world.vtex.count("start_handling") == 0
    assert world.recorded() == {"erp.import"}


def test_a_worker_whose_lease_expired_cannot_record_its_effect() -> None:
    # given an order ready for handling, and a worker whose lease another worker (token 2) took
    oid = new_order_id()
    world = World(vtex_order(READY, order_id=oid))
    world.ledger.holder_token = 2
    # when the stale worker runs accept
    with pytest.raises(StaleLockError):
        world.run("accept")
    # then its record is refused, and it stops before any further effect
    assert world.ledger.refused == [(oid, "erp.import", 1)]
    assert world.recorded() == set()
    assert world.vtex.count("start_handling") == 0


def test_the_new_lease_holder_finishes_without_repeating_the_stale_workers_effect() -> None:
    # given a stale worker that imported the order but could not record it
    oid = new_order_id()
    world = World(vtex_order(READY, order_id=oid))
    world.ledger.holder_token = 2
    with pytest.raises(StaleLockError):
        world.run("accept")
    # when the new holder runs accept
    world.lease = FakeLease(token=2)
    outcome = world.run("accept")
    # then the ERP's record stops a second import; only start-handling remains
    assert world.erp.count("import_order") == 1
    assert outcome.effects == ["vtex.start_handling"]
    assert world.recorded() == {"vtex.start_handling"}


# -- errors --------------------------------------------------------------------------------------


def world_for(work: str) -> World:
    """An order ready for handling (accept), or with an open request the ERP can still stop."""
    oid = new_order_id()
    if work == "accept":
        return World(vtex_order(READY, order_id=oid))
    return World(requested(oid), erp_order("new", order_id=oid))


@pytest.mark.parametrize(
    ("work", "port", "method", "error", "recorded"),
    [
        pytest.param("accept", "vtex", "get_order", TransientError("429", retry_after=2.0),
            set(), id="a VTEX 429 on the read"),
        pytest.param("accept", "erp", "get_order", TransientError("ERP timed out"),
            set(), id="an ERP timeout on the read"),
        pytest.param("accept", "erp", "import_order", TransientError("503", retry_after=5.0),
            set(), id="an ERP 503 on the import"),
        pytest.param("accept", "vtex", "start_handling", TransientError("VTEX 502"),
            {"erp.import"}, id="a VTEX 502 on start-handling"),
        pytest.param("cancel-check", "vtex", "cancel_order", TransientError("reset"),
            {"erp.cancel"}, id="a VTEX connection reset on cancel"),
        pytest.param("accept", "vtex", "get_order", NotFoundError("no such order"),
            set(), id="a VTEX 404 on the read"),
    ],
)  # fmt: skip
def test_errors_from_a_port_propagate_unchanged_for_the_tasks_retry(
    work: str, port: str, method: str, error: BridgeError, recorded: set[str]
) -> None:
    # given an order whose next call of one port method fails
    world = world_for(work)
    fake: FakeVtex | FakeErp = world.vtex if port == "vtex" else world.erp
    fake.fail_next(method, error)
    # when the work runs
    with pytest.raises(type(error)) as raised:
        world.run(work)
    # then the very error propagates (retry_after intact); only the steps before it are recorded
    assert raised.value is error
    assert world.recorded() == recorded


def test_a_retry_after_a_transient_error_completes_the_work_once() -> None:
    # given an accept whose start-handling failed transiently after the import
    oid = new_order_id()
    world = World(vtex_order(READY, order_id=oid))
    world.vtex.fail_next("start_handling", TransientError("VTEX 503"))
    with pytest.raises(TransientError):
        world.run("accept")
    # when the task retries
    outcome = world.run("accept")
    # then the import is not repeated and the start-handling happens
    assert world.erp.count("import_order") == 1
    assert world.vtex.order(oid).status == HANDLING
    assert outcome.effects == ["vtex.start_handling"]


# -- history and the outcome -----------------------------------------------------------------------


def test_history_gets_one_entry_per_run() -> None:
    # given an order ready for handling
    oid = new_order_id()
    world = World(vtex_order(READY, order_id=oid))
    # when accept runs twice
    world.run("accept")
    world.run("accept")
    # then the history holds two entries, each with what that run decided and did
    first, second = world.history.of(oid)
    assert first["work"] == "accept" and first["orderId"] == oid
    assert first["status"] == READY
    assert first["effects"] == ["erp.import", "vtex.start_handling"]
    assert second["status"] == HANDLING and second["effects"] == []


def test_a_run_that_decides_again_after_a_conflict_leaves_one_history_entry() -> None:
    oid = new_order_id()
    world = World(requested(oid), erp_order("packed", order_id=oid, released=True))
    world.erp.dispatch_at("cancel_order", oid)
    world.run("cancel-check")
    (entry,) = world.history.of(oid)
    assert entry["effects"] == ["vtex.deny:req-1"]
    assert len(entry["decisions"]) == 3  # decided, conflicted, decided again


def test_a_failed_run_leaves_its_history_entry() -> None:
    oid = new_order_id()
    world = World(vtex_order(READY, order_id=oid))
    world.vtex.fail_next("start_handling", TransientError("VTEX 503"))
    with pytest.raises(TransientError):
        world.run("accept")
    (entry,) = world.history.of(oid)
    assert entry["effects"] == ["erp.import"]


def test_the_outcome_reads_as_json_for_operators() -> None:
    # given an order accepted by a run
    oid = new_order_id()
    world = World(vtex_order(READY, order_id=oid))
    outcome = world.run("accept")
    # when its outcome is shown
    shown = outcome.to_json()
    # then it names the work, the order, the status it found, what it decided and did
    assert shown == {
        "work": "accept",
        "orderId": oid,
        "status": READY,
        "decisions": [outcome.decisions[0]],
        "effects": ["erp.import", "vtex.start_handling"],
        "alreadyDone": [],
    }
    assert shown["decisions"][0]


def test_a_denial_refused_because_another_run_already_sent_it_ends_quietly() -> None:
    # given a request to deny, which a worker whose lease expired denies in the meantime
    oid = new_order_id()
    world = World(requested(oid), erp_order("dispatched", order_id=oid, released=True))
    request_id = world.vtex.order(oid).cancellation_requests[0].id

    def stale_worker_denies() -> None:
        raw = world.vtex.orders[oid]
        raw["cancellationRequests"][0]["deniedBySeller"] = True
        raw["status"] = HANDLING

    world.vtex.when_called("deny_cancellation", stale_worker_denies)
    # when this run's own denial is refused
    outcome = world.run("cancel-check")
    # then it reads again, finds the request answered, and ends without an error
    assert world.vtex.count("deny_cancellation") == 1
    assert outcome.effects == []
    assert any(d.startswith("refused:") for d in outcome.decisions)
    assert f"vtex.deny:{request_id}" not in world.recorded()


def test_a_refusal_that_still_stands_after_a_fresh_read_is_raised() -> None:
    # given an invoice VTEX refuses for a reason that does not go away
    oid = new_order_id()
    world = World(
        vtex_order(HANDLING, order_id=oid),
        erp_order("packed", order_id=oid, invoices=[nf(oid)]),
    )
    world.vtex.fail_next("post_invoice", PermanentError("invoice refused"), times=5)
    # when the invoices are synced, then the refusal propagates (to quarantine), tried twice
    with pytest.raises(PermanentError, match="invoice refused"):
        world.run("invoice")
    assert world.vtex.count("post_invoice") <= 2
