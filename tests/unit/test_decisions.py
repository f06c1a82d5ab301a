"""The pure decisions: given the VTEX order, the ERP's record and the ledger, what must happen.

Tables over the combinations that matter (DESIGN.md, "What it does for the store"), then the
safety rules of Semantics 4 checked over every combination of VTEX status, ERP state and ledger.
Orders are built from VTEX- and ERP-shaped dicts and parsed as the adapters parse them.
"""

from __future__ import annotations

import itertools
from collections.abc import Set
from typing import Any

import pytest

from bridge.domain.actions import (
    CancelOnVtex,
    Decision,
    DenyCancellation,
    PostInvoice,
    RecordInvoiceInErp,
    ReleaseShipment,
    StopInErp,
)
from bridge.domain.decisions import (
    DEFAULT_REQUEST_STATUSES,
    DENY_CARRIER,
    DENY_INVOICED,
    decide_accept,
    decide_cancelation,
    decide_invoices,
    decide_preship,
    work_for_state,
)
from bridge.domain.models import ErpOrder, FulfilmentState, VtexOrder
from tests.unit.fakes import (
    CANCELED,
    HANDLING,
    INVOICED,
    READY,
    REQUESTED,
    cancellation_request,
    erp_invoice,
    erp_order,
    vtex_invoice,
    vtex_order,
)

NOTHING: tuple[str, ...] = ()
NO_LEDGER: frozenset[str] = frozenset()
IMPORT_AND_START = ("erp.import", "vtex.start_handling")
START = ("vtex.start_handling",)
STOP_AND_CANCEL = ("erp.cancel", "vtex.cancel")
CANCEL_AND_STOP = ("vtex.cancel", "erp.cancel")
CANCEL = ("vtex.cancel",)
DENY_1 = ("vtex.deny:req-1",)
DENY_2 = ("vtex.deny:req-2",)
HOLD = ("erp.hold",)
RELEASE = ("erp.release",)
POST_NF = ("vtex.invoice:NF123456789012301",)
RECORD_SELLERB = ("erp.invoice:SELLERB-0042",)

# -- the VTEX side ---------------------------------------------------------------------------------

OPEN = [cancellation_request("req-1", reason="Ordered twice")]
DENIED = [cancellation_request("req-1", denied=True)]
DENIED_THEN_OPEN = [cancellation_request("req-1", denied=True), cancellation_request("req-2")]
FULL = [vtex_invoice("NF123456789012301", 10_000)]  # what the ERP issued, already on VTEX
SELLERB = [vtex_invoice("SELLERB-0042", 5_000, seller="sellerb", item="1002")]
NF02_ON_VTEX = [vtex_invoice("NF123456789012302", 5_000, seller="sellerb", item="1002")]

VTEX: dict[str, dict[str, Any]] = {
    "ready": vtex_order(READY),
    "handling": vtex_order(HANDLING),
    "requested": vtex_order(REQUESTED, requests=OPEN),
    "requested-spelled-cancelation-request": vtex_order("cancelation-request", requests=OPEN),
    "requested-marketplace": vtex_order("waiting-for-seller-decision", requests=OPEN),
    "requested-no-entry-yet": vtex_order("request-cancel"),
    "denied": vtex_order(HANDLING, requests=DENIED),
    "denied-then-requested-again": vtex_order(REQUESTED, requests=DENIED_THEN_OPEN),
    "canceled": vtex_order(CANCELED, requests=OPEN),
    "invoiced": vtex_order(INVOICED, invoices=FULL),
    "invoiced-then-requested": vtex_order(REQUESTED, invoices=FULL, requests=OPEN),
    "split-partly-invoiced": vtex_order(HANDLING, split=True, invoices=SELLERB),
    "split-partly-invoiced-requested": vtex_order(
        REQUESTED, split=True, invoices=SELLERB, requests=OPEN
    ),
    "split-store-part-missing": vtex_order(HANDLING, split=True, invoices=NF02_ON_VTEX),
    "split-requested": vtex_order(REQUESTED, split=True, requests=OPEN),
    "requested-answer-not-shown-yet": vtex_order(REQUESTED, requests=DENIED),
    "replaced": vtex_order("replaced"),
}

# -- the ERP side: packed and later states carry the invoice the ERP issued when packing --------

NF = erp_invoice("NF123456789012301", 10_000)
NF01 = erp_invoice("NF123456789012301", 5_000)
NF02 = erp_invoice("NF123456789012302", 5_000, seller="sellerb")
SELLERB_RECORDED = erp_invoice("SELLERB-0042", 5_000, seller="sellerb", source="vtex")

ERP: dict[str, dict[str, Any] | None] = {
    "not-imported": None,
    "new": erp_order("new"),
    "picking": erp_order("picking"),
    "packed": erp_order("packed", invoices=[NF]),
    "held": erp_order("held", invoices=[NF]),
    "packed-released": erp_order("packed", released=True, invoices=[NF]),
    "dispatched": erp_order("dispatched", released=True, invoices=[NF]),
    "cancelled": erp_order("cancelled"),
    "cancelled-after-packing": erp_order("cancelled", invoices=[NF]),
    "split-packed": erp_order("packed", invoices=[NF01, NF02]),
    "split-packed-store-part": erp_order("packed", invoices=[NF01]),
    "picking-sellerb-recorded": erp_order("picking", invoices=[SELLERB_RECORDED]),
}

# Every key the decisions could find in the ledger for these orders.
EVERYTHING_RECORDED = frozenset(
    {
        "erp.import",
        "vtex.start_handling",
        "erp.cancel",
        "vtex.cancel",
        "vtex.deny:req-1",
        "vtex.deny:req-2",
        "erp.hold",
        "erp.release",
        "vtex.invoice:NF123456789012301",
        "vtex.invoice:NF123456789012302",
        "erp.invoice:SELLERB-0042",
        "erp.invoice:NF123456789012301",
    }
)
LEDGERS = {"empty": NO_LEDGER, "everything-recorded": EVERYTHING_RECORDED}


def vtex(name: str) -> VtexOrder:
    return VtexOrder.model_validate(VTEX[name])


def erp(name: str) -> ErpOrder | None:
    raw = ERP[name]
    return None if raw is None else ErpOrder.model_validate(raw)


def keys(decision: Decision) -> tuple[str, ...]:
    return tuple(action.key for action in decision.actions)


# -- accept --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "erp_state", "done", "expected"),
    [
        pytest.param("ready", "not-imported", NO_LEDGER, IMPORT_AND_START,
            id="a ready order unknown to the ERP is imported, then started"),
        pytest.param("ready", "new", NO_LEDGER, START,
            id="a ready order the ERP holds is only started, even with a wiped ledger"),
        pytest.param("ready", "new", frozenset(IMPORT_AND_START), START,
            id="a ready order is started again while VTEX shows the recorded start undone"),
        pytest.param("handling", "new", NO_LEDGER, NOTHING,
            id="an order in handling needs nothing, even with a wiped ledger"),
        pytest.param("handling", "not-imported", NO_LEDGER, NOTHING,
            id="an order already in handling is not imported by accept"),
        pytest.param("requested", "new", NO_LEDGER, NOTHING,
            id="a contested order is not accepted"),
        pytest.param("canceled", "not-imported", NO_LEDGER, NOTHING,
            id="a cancelled order is not accepted"),
        pytest.param("invoiced", "packed", NO_LEDGER, NOTHING,
            id="an invoiced order is not accepted"),
        pytest.param("replaced", "not-imported", NO_LEDGER, NOTHING,
            id="an unknown status is not accepted"),
    ],
)  # fmt: skip
def test_accept_imports_and_starts_only_orders_ready_for_handling(
    order: str, erp_state: str, done: Set[str], expected: tuple[str, ...]
) -> None:
    # given the order on VTEX, the ERP's record and the ledger
    # when accept decides
    decision = decide_accept(vtex(order), erp(erp_state), done)
    # then exactly these effects, in this order
    assert keys(decision) == expected
    assert decision.reason


# -- cancellation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "erp_state", "done", "expected"),
    [
        # a request in time: the ERP stops the order, then VTEX confirms the cancellation
        pytest.param("requested", "not-imported", NO_LEDGER, CANCEL,
            id="a request for an order the ERP never imported is confirmed on VTEX"),
        pytest.param("requested", "new", NO_LEDGER, STOP_AND_CANCEL,
            id="a request for a new order stops the ERP, then cancels on VTEX"),
        pytest.param("requested", "picking", NO_LEDGER, STOP_AND_CANCEL,
            id="a request for an order being picked stops the ERP, then cancels"),
        pytest.param("requested", "packed", NO_LEDGER, STOP_AND_CANCEL,
            id="a request for a packed order stops the ERP, then cancels"),
        pytest.param("requested", "held", NO_LEDGER, STOP_AND_CANCEL,
            id="a request for a held shipment stops the ERP, then cancels"),
        pytest.param("requested", "packed-released", NO_LEDGER, STOP_AND_CANCEL,
            id="a request for a released shipment not yet with the carrier stops it, then cancels"),
        pytest.param("requested", "cancelled", NO_LEDGER, CANCEL,
            id="a request for an order the ERP already stopped is confirmed on VTEX"),
        pytest.param("requested", "cancelled", frozenset(STOP_AND_CANCEL), CANCEL,
            id="a request still open on VTEX is confirmed again, whatever the ledger says"),
        pytest.param("requested-spelled-cancelation-request", "new", NO_LEDGER, STOP_AND_CANCEL,
            id="the FAQ's spelling of the request status is a request too"),
        pytest.param("requested-marketplace", "new", NO_LEDGER, STOP_AND_CANCEL,
            id="a marketplace request waiting for the seller is a request too"),
        # a split order: another seller may invoice its part at any moment, and VTEX then refuses
        # the cancel; VTEX is asked first so the store's part is never stopped for nothing
        pytest.param("split-requested", "packed", NO_LEDGER, CANCEL_AND_STOP,
            id="a request for a split order cancels on VTEX, then stops the ERP"),
        pytest.param("split-requested", "new", NO_LEDGER, CANCEL_AND_STOP,
            id="a request for a new split order cancels on VTEX first"),
        pytest.param("split-requested", "packed-released", NO_LEDGER, STOP_AND_CANCEL,
            id="a released split shipment is stopped first: the carrier may take it any moment"),
        pytest.param("split-requested", "cancelled", NO_LEDGER, CANCEL,
            id="a split order the ERP already stopped is confirmed on VTEX"),
        # past the point of no return: deny, once per request
        pytest.param("requested", "dispatched", NO_LEDGER, DENY_1,
            id="a request for an order with the carrier is denied"),
        pytest.param("requested", "dispatched", frozenset(DENY_1), NOTHING,
            id="a request already denied is not denied twice"),
        pytest.param("invoiced-then-requested", "packed", NO_LEDGER, DENY_1,
            id="a request for an invoiced order is denied"),
        pytest.param("invoiced-then-requested", "not-imported", NO_LEDGER, DENY_1,
            id="a request for an invoiced order the ERP lacks is denied"),
        pytest.param("invoiced-then-requested", "packed", frozenset(DENY_1), NOTHING,
            id="a request for an invoiced order already denied is left alone"),
        pytest.param("split-partly-invoiced-requested", "packed", NO_LEDGER, DENY_1,
            id="a request for a partly invoiced split order is denied"),
        pytest.param("denied-then-requested-again", "dispatched", frozenset(DENY_1), DENY_2,
            id="a new request after a denial is answered on its own"),
        pytest.param("denied-then-requested-again", "new", NO_LEDGER, STOP_AND_CANCEL,
            id="a new request in time after a denial stops and cancels"),
        # cancelled on VTEX: the ERP must never ship it
        pytest.param("canceled", "not-imported", NO_LEDGER, NOTHING,
            id="a cancelled order the ERP never had needs nothing"),
        pytest.param("canceled", "new", NO_LEDGER, ("erp.cancel",),
            id="a cancelled new order is stopped in the ERP"),
        pytest.param("canceled", "picking", NO_LEDGER, ("erp.cancel",),
            id="a cancelled order being picked is stopped in the ERP"),
        pytest.param("canceled", "packed", NO_LEDGER, ("erp.cancel",),
            id="a cancelled packed order is stopped in the ERP"),
        pytest.param("canceled", "held", NO_LEDGER, ("erp.cancel",),
            id="a cancelled held shipment is stopped in the ERP"),
        pytest.param("canceled", "packed-released", NO_LEDGER, ("erp.cancel",),
            id="a cancelled released shipment not yet dispatched is stopped"),
        pytest.param("canceled", "cancelled", NO_LEDGER, NOTHING,
            id="a cancelled order already stopped needs nothing"),
        pytest.param("canceled", "cancelled", frozenset({"erp.cancel"}), NOTHING,
            id="a cancelled order recorded as stopped needs nothing"),
        pytest.param("canceled", "dispatched", NO_LEDGER, NOTHING,
            id="a cancelled order with the carrier is left to an operator"),
        # no request to answer
        pytest.param("ready", "not-imported", NO_LEDGER, NOTHING,
            id="a ready order without a request needs no cancellation work"),
        pytest.param("handling", "picking", NO_LEDGER, NOTHING,
            id="an order in handling without a request needs nothing"),
        pytest.param("denied", "picking", NO_LEDGER, NOTHING,
            id="a denied request is not answered again"),
        pytest.param("invoiced", "dispatched", NO_LEDGER, NOTHING,
            id="an invoiced order without a request needs nothing"),
        pytest.param("replaced", "new", NO_LEDGER, NOTHING,
            id="an unknown status without a request needs nothing"),
    ],
)  # fmt: skip
def test_cancellation_stops_and_cancels_in_time_and_denies_past_the_point_of_no_return(
    order: str, erp_state: str, done: Set[str], expected: tuple[str, ...]
) -> None:
    decision = decide_cancelation(vtex(order), erp(erp_state), done)
    assert keys(decision) == expected
    assert decision.reason


@pytest.mark.parametrize(
    ("order", "erp_state", "reason"),
    [
        pytest.param("requested", "dispatched", DENY_CARRIER, id="with the carrier"),
        pytest.param("invoiced-then-requested", "packed", DENY_INVOICED, id="invoiced"),
        pytest.param("invoiced-then-requested", "dispatched", DENY_INVOICED, id="both"),
        pytest.param("split-partly-invoiced-requested", "new", DENY_INVOICED, id="partly invoiced"),
    ],
)
def test_a_denial_names_the_open_request_and_says_why(
    order: str, erp_state: str, reason: str
) -> None:
    decision = decide_cancelation(vtex(order), erp(erp_state), NO_LEDGER)
    assert decision.actions == (DenyCancellation("req-1", reason),)


def test_a_cancellation_on_vtex_carries_the_shoppers_reason() -> None:
    decision = decide_cancelation(vtex("requested"), erp("new"), NO_LEDGER)
    assert decision.actions == (StopInErp(), CancelOnVtex("Ordered twice"))


def test_a_cancellation_without_a_reason_gets_a_default_one() -> None:
    order = vtex_order(REQUESTED, requests=[cancellation_request("req-9", reason="")])
    decision = decide_cancelation(VtexOrder.model_validate(order), None, NO_LEDGER)
    (action,) = decision.actions
    assert isinstance(action, CancelOnVtex)
    assert action.reason


# -- invoices --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "erp_state", "done", "expected"),
    [
        pytest.param("handling", "packed", NO_LEDGER, POST_NF,
            id="an ERP invoice VTEX lacks is posted"),
        pytest.param("handling", "packed", frozenset(POST_NF), NOTHING,
            id="an ERP invoice recorded as posted is not posted again"),
        pytest.param("invoiced", "dispatched", NO_LEDGER, NOTHING,
            id="invoices in step need nothing, even with a wiped ledger"),
        pytest.param("split-store-part-missing", "split-packed", NO_LEDGER, POST_NF,
            id="only the numbers VTEX lacks are posted"),
        pytest.param("split-partly-invoiced", "split-packed-store-part", NO_LEDGER,
            POST_NF + RECORD_SELLERB,
            id="a split order posts the ERP's invoice and records the other seller's"),
        pytest.param("split-partly-invoiced", "picking", NO_LEDGER, RECORD_SELLERB,
            id="a VTEX invoice the ERP lacks is recorded"),
        pytest.param("split-partly-invoiced", "picking", frozenset(RECORD_SELLERB), NOTHING,
            id="a VTEX invoice recorded in the ERP is not recorded again"),
        pytest.param("split-partly-invoiced", "picking-sellerb-recorded", NO_LEDGER, NOTHING,
            id="a VTEX invoice the ERP holds is not recorded, even with a wiped ledger"),
        pytest.param("split-partly-invoiced", "not-imported", NO_LEDGER, NOTHING,
            id="an order the ERP lacks has no invoices to sync"),
        pytest.param("canceled", "packed", NO_LEDGER, NOTHING,
            id="a cancelled order is never invoiced"),
        pytest.param("requested", "packed", NO_LEDGER, NOTHING,
            id="no invoice is posted while a cancellation request waits"),
        pytest.param("split-partly-invoiced-requested", "split-packed-store-part", NO_LEDGER,
            RECORD_SELLERB,
            id="while a request waits, VTEX's invoices are still recorded"),
        pytest.param("requested-answer-not-shown-yet", "packed", NO_LEDGER, NOTHING,
            id="no invoice is posted while the status still says requested"),
        pytest.param("requested-no-entry-yet", "packed", NO_LEDGER, NOTHING,
            id="no invoice is posted in a request status without a request entry"),
        pytest.param("denied", "packed", NO_LEDGER, POST_NF,
            id="after a denial the ERP's invoice is posted"),
        pytest.param("handling", "cancelled-after-packing", NO_LEDGER, NOTHING,
            id="an order the ERP stopped is never invoiced on VTEX"),
    ],
)  # fmt: skip
def test_invoices_are_posted_and_recorded_once_per_number_and_never_on_a_cancelled_order(
    order: str, erp_state: str, done: Set[str], expected: tuple[str, ...]
) -> None:
    decision = decide_invoices(vtex(order), erp(erp_state), done)
    assert keys(decision) == expected
    assert decision.reason


def test_the_posted_invoice_is_the_one_the_erp_issued() -> None:
    decision = decide_invoices(vtex("handling"), erp("packed"), NO_LEDGER)
    (action,) = decision.actions
    assert isinstance(action, PostInvoice)
    assert action.invoice.number == "NF123456789012301"
    assert action.invoice.value == 10_000
    assert [(i.id, i.price, i.quantity) for i in action.invoice.items] == [("1001", 10_000, 1)]


def test_the_recorded_invoice_is_the_one_vtex_holds() -> None:
    decision = decide_invoices(vtex("split-partly-invoiced"), erp("picking"), NO_LEDGER)
    (action,) = decision.actions
    assert isinstance(action, RecordInvoiceInErp)
    assert (action.invoice.number, action.invoice.value) == ("SELLERB-0042", 5_000)
    assert action.invoice.seller == "sellerb"


# -- pre-ship recheck ------------------------------------------------------------------------------

POST_THEN_RELEASE = POST_NF + RELEASE


@pytest.mark.parametrize(
    ("order", "erp_state", "done", "expected"),
    [
        # a shipment still wanted: its invoices on VTEX first, then the release
        pytest.param("handling", "packed", NO_LEDGER, POST_THEN_RELEASE,
            id="a clean packed shipment gets its invoice posted, then is released"),
        pytest.param("invoiced", "packed", NO_LEDGER, RELEASE,
            id="a packed shipment already invoiced on VTEX is released"),
        pytest.param("handling", "packed", frozenset(POST_NF), RELEASE,
            id="a packed shipment whose invoice is recorded as posted is released"),
        pytest.param("denied", "held", NO_LEDGER, POST_THEN_RELEASE,
            id="a held shipment whose request was denied is invoiced, then released"),
        pytest.param("denied", "held", frozenset(HOLD), POST_THEN_RELEASE,
            id="a hold in the ledger does not stop the release once the request is denied"),
        pytest.param("split-partly-invoiced", "packed", NO_LEDGER,
            POST_NF + RECORD_SELLERB + RELEASE,
            id="a split shipment syncs both ways before its release"),
        pytest.param("replaced", "packed", NO_LEDGER, POST_THEN_RELEASE,
            id="an unknown status is not a reason to hold"),
        # a contested shipment is held, once
        pytest.param("canceled", "packed", NO_LEDGER, HOLD,
            id="a cancelled order's shipment is held"),
        pytest.param("requested", "packed", NO_LEDGER, HOLD,
            id="a shipment with an open cancellation request is held"),
        pytest.param("requested-marketplace", "packed", NO_LEDGER, HOLD,
            id="a shipment with a marketplace request waiting is held"),
        pytest.param("requested-no-entry-yet", "packed", NO_LEDGER, HOLD,
            id="a shipment in a request status without a request entry is held"),
        pytest.param("invoiced-then-requested", "packed", NO_LEDGER, HOLD,
            id="an invoiced order's shipment is held while its request waits"),
        pytest.param("denied-then-requested-again", "packed", NO_LEDGER, HOLD,
            id="a new request after a denial holds the shipment"),
        pytest.param("requested", "held", NO_LEDGER, NOTHING,
            id="a held shipment stays held while the request waits"),
        pytest.param("canceled", "held", frozenset(HOLD), NOTHING,
            id="a held shipment of a cancelled order is not held twice"),
        # nothing waits for release
        pytest.param("handling", "not-imported", NO_LEDGER, NOTHING,
            id="an order the ERP lacks has no shipment"),
        pytest.param("handling", "new", NO_LEDGER, NOTHING, id="a new order has no shipment yet"),
        pytest.param("handling", "picking", NO_LEDGER, NOTHING,
            id="an order being picked has no shipment yet"),
        pytest.param("handling", "packed-released", NO_LEDGER, NOTHING,
            id="a released shipment is not released twice"),
        pytest.param("requested", "packed-released", NO_LEDGER, NOTHING,
            id="a released shipment cannot be held"),
        pytest.param("invoiced", "dispatched", NO_LEDGER, NOTHING,
            id="a dispatched shipment needs nothing"),
        pytest.param("canceled", "cancelled", NO_LEDGER, NOTHING,
            id="a stopped order has no shipment"),
    ],
)  # fmt: skip
def test_preship_holds_a_contested_shipment_and_releases_a_clean_one_after_its_invoices(
    order: str, erp_state: str, done: Set[str], expected: tuple[str, ...]
) -> None:
    decision = decide_preship(vtex(order), erp(erp_state), done)
    assert keys(decision) == expected
    assert decision.reason


def test_preship_takes_the_request_statuses_from_its_setting() -> None:
    # given a store whose cancellation requests show as a custom status
    order = VtexOrder.model_validate(vtex_order("pedido-cancelamento"))
    # when the recheck decides with and without that status configured
    custom = decide_preship(order, erp("packed"), NO_LEDGER, frozenset({"pedido-cancelamento"}))
    default = decide_preship(order, erp("packed"), NO_LEDGER)
    # then only the configured status holds the shipment
    assert keys(custom) == HOLD
    assert keys(default)[-1] == "erp.release"


# -- which work a feed event calls for -------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "work"),
    [
        pytest.param("ready-for-handling", "accept", id="ready-for-handling is accepted"),
        pytest.param("cancellation-requested", "cancel-check",
            id="a seller-side request is checked"),
        pytest.param("cancelation-request", "cancel-check",
            id="the FAQ's request spelling is checked"),
        pytest.param("request-cancel", "cancel-check", id="a marketplace request is checked"),
        pytest.param("waiting-for-seller-decision", "cancel-check",
            id="a request awaiting the seller is checked"),
        pytest.param("canceled", "cancel-check", id="a cancellation is checked"),
        pytest.param("invoiced", "invoice",
            id="an invoice, also one seller's of a split order, is synced"),
        pytest.param("order-created", None, id="order-created needs nothing"),
        pytest.param("payment-approved", None, id="payment-approved needs nothing"),
        pytest.param("window-to-cancel", None, id="window-to-cancel needs nothing"),
        pytest.param("start-handling", None, id="start-handling needs nothing"),
        pytest.param("handling", None, id="handling needs nothing"),
        pytest.param("invoice", None, id="the transient invoice status needs nothing"),
        pytest.param("cancel", None, id="the transient cancel status needs nothing"),
        pytest.param("replaced", None, id="an unknown status like replaced needs nothing"),
    ],
)  # fmt: skip
def test_each_feed_state_calls_for_its_work(state: str, work: str | None) -> None:
    assert work_for_state(state) == work


def test_the_request_statuses_are_a_setting() -> None:
    custom = frozenset({"pedido-cancelamento"})
    assert work_for_state("pedido-cancelamento", custom) == "cancel-check"
    assert work_for_state("cancellation-requested", custom) is None
    assert work_for_state("canceled", custom) == "cancel-check"


# -- Semantics 4 (Safety) and 2 (once), over every combination -------------------------------------

COMBINATIONS = list(itertools.product(VTEX, ERP, LEDGERS))
ONCE_PER_KEY = ("vtex.deny:", "vtex.invoice:", "erp.invoice:")


def _combination_ids() -> list[str]:
    return [f"{v}/{e}/{ledger}" for v, e, ledger in COMBINATIONS]


def _decisions(order: VtexOrder, erp_record: ErpOrder | None, done: Set[str]) -> list[Decision]:
    return [
        decide_accept(order, erp_record, done),
        decide_cancelation(order, erp_record, done),
        decide_invoices(order, erp_record, done),
        decide_preship(order, erp_record, done),
    ]


@pytest.mark.parametrize(("order", "erp_state", "ledger"), COMBINATIONS, ids=_combination_ids())
def test_no_decision_breaks_a_safety_rule(order: str, erp_state: str, ledger: str) -> None:
    v, e, done = vtex(order), erp(erp_state), LEDGERS[ledger]
    past_no_return = v.invoiced or (e is not None and e.dispatched)
    contested = (
        v.status == CANCELED
        or v.open_cancellation_request() is not None
        or v.status in DEFAULT_REQUEST_STATUSES
    )
    for decision in _decisions(v, e, done):
        kinds = [type(a) for a in decision.actions]
        # never cancel what the ERP handed to the carrier or what VTEX invoiced: deny instead
        if past_no_return:
            assert CancelOnVtex not in kinds, decision
            assert StopInErp not in kinds, decision
        # never release a shipment of a cancelled or contested order; never invoice it either
        if contested:
            assert ReleaseShipment not in kinds, decision
            assert PostInvoice not in kinds, decision
        if e is not None and e.state is FulfilmentState.CANCELLED:
            assert PostInvoice not in kinds, decision
        # a denial always answers the open request, with a reason
        for action in decision.actions:
            if isinstance(action, DenyCancellation):
                request = v.open_cancellation_request()
                assert request is not None and action.request_id == request.id
                assert action.reason
        # an effect appears once per decision, and the release comes last
        assert len(set(keys(decision))) == len(decision.actions), decision
        if ReleaseShipment in kinds:
            assert kinds[-1] is ReleaseShipment
        # a denial and an invoice number are never done twice
        repeated = [k for k in keys(decision) if k.startswith(ONCE_PER_KEY) and k in done]
        assert not repeated, decision


@pytest.mark.parametrize(("order", "erp_state", "ledger"), COMBINATIONS, ids=_combination_ids())
def test_every_open_cancellation_request_gets_an_answer(
    order: str, erp_state: str, ledger: str
) -> None:
    # given any order, ERP record and ledger
    v, e, done = vtex(order), erp(erp_state), LEDGERS[ledger]
    request = v.open_cancellation_request()
    # when the cancellation is checked
    decision = decide_cancelation(v, e, done)
    # then an open request is confirmed in time, or denied past the point of no return, unless
    # the ledger says it was denied already
    if request is None:
        assert not any(isinstance(a, (CancelOnVtex, DenyCancellation)) for a in decision.actions)
    elif v.invoiced or (e is not None and e.dispatched):
        denied = f"vtex.deny:{request.id}" in done
        assert keys(decision) == (() if denied else (f"vtex.deny:{request.id}",))
    else:
        assert "vtex.cancel" in keys(decision)
