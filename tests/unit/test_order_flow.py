"""VTEX's order flow as the sandbox plays it: OrderFlow's transitions, refusals, change reports."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sandbox.oms import (
    BEFORE_HANDLING,
    CANCEL_REQUESTED,
    CANCELED,
    HANDLING,
    INVOICED,
    READY,
    CancellationRequest,
    Invoice,
    Item,
    OmsError,
    Order,
    OrderFlow,
)
from sandbox.world import CANCEL_REQUEST_STATUSES

T0 = 1_700_000_000.0
ALL_STATUSES = (*BEFORE_HANDLING, READY, HANDLING, CANCEL_REQUESTED, INVOICED, CANCELED)

Change = tuple[str, str, str, float]  # order id, state, last state, last change


@dataclass
class Recorder:
    """The on_change listener: keeps every reported change in order."""

    changes: list[Change] = field(default_factory=list)

    def __call__(self, order: Order, state: str, last_state: str, last_change: float) -> None:
        self.changes.append((order.order_id, state, last_state, last_change))

    def states(self) -> list[str]:
        return [change[1] for change in self.changes]


def make_flow() -> tuple[OrderFlow, Recorder]:
    recorder = Recorder()
    return OrderFlow(recorder, CANCEL_REQUEST_STATUSES), recorder


def make_order(status: str, *, split: bool = False) -> Order:
    """An order of 10000 cents (5000 per seller when split), sitting in ``status`` since T0."""
    if split:
        items = [Item("1001", "Kettle", 1, 5_000, "1"), Item("1002", "Scale", 1, 5_000, "sellerb")]
        sellers = ["1", "sellerb"]
    else:
        items = [Item("1001", "Kettle", 2, 5_000, "1")]
        sellers = ["1"]
    return Order(
        "1234567890123-01",
        "567890123",
        T0,
        items,
        sellers,
        status=status,
        last_change=T0,
        status_since=T0,
    )


def invoice(number: str, value: int, kind: str = "Output") -> Invoice:
    return Invoice(number, value, kind, "2024-01-01T00:00:00.0000000Z", [])


def open_a_request(order: Order, request_id: str = "req-1") -> None:
    """Put a shopper's open cancellation request on an order, leaving its status as it is."""
    order.cancellation_requests.append(CancellationRequest(request_id, "no longer needed", "", T0))


# -- start handling ----------------------------------------------------------------------------


def test_start_handling_moves_a_ready_order_through_start_handling_to_handling() -> None:
    # given an order in ready-for-handling
    flow, recorder = make_flow()
    order = make_order(READY)
    # when the seller starts handling it
    flow.start_handling(order, T0 + 10)
    # then it is in handling, after a start-handling step, both reported
    assert order.status == HANDLING
    assert order.status_since == T0 + 10
    assert recorder.states() == ["start-handling", HANDLING]


@pytest.mark.parametrize("status", [s for s in ALL_STATUSES if s != READY])
def test_start_handling_is_refused_with_oms003_outside_ready_for_handling(status: str) -> None:
    # given an order in any status but ready-for-handling
    flow, recorder = make_flow()
    order = make_order(status)
    # when the seller starts handling it
    with pytest.raises(OmsError) as refused:
        flow.start_handling(order, T0 + 10)
    # then VTEX answers 409 OMS003 and nothing changes
    assert (refused.value.status, refused.value.code) == (409, "OMS003")
    assert order.status == status
    assert recorder.changes == []


# -- seller cancel -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", BEFORE_HANDLING)
def test_seller_cancel_before_handling_cancels_the_order_at_once(status: str) -> None:
    # given an order not yet ready for handling
    flow, recorder = make_flow()
    order = make_order(status)
    # when the seller cancels it
    effect = flow.cancel(order, "out of stock", T0 + 5)
    # then it is canceled in one call, marked as the seller's doing
    assert effect == "cancel"
    assert order.status == CANCELED
    assert recorder.states() == ["cancel", CANCELED]
    assert order.cancellation is not None
    assert order.cancellation["RequestedByUser"] is False
    assert order.cancellation["Reason"] == "out of stock"


@pytest.mark.parametrize("status", [READY, HANDLING])
def test_seller_cancel_in_handling_takes_a_request_then_a_confirmation(status: str) -> None:
    # given an order ready for handling or in handling
    flow, recorder = make_flow()
    order = make_order(status)
    # when the seller cancels it once
    first = flow.cancel(order, "out of stock", T0 + 5)
    # then the order only moves to cancellation-requested
    assert first == "cancel_request"
    assert order.status == CANCEL_REQUESTED
    assert recorder.states() == [CANCEL_REQUESTED]
    # when the seller cancels it again
    second = flow.cancel(order, "out of stock", T0 + 6)
    # then the cancel is confirmed
    assert second == "cancel"
    assert order.status == CANCELED
    assert recorder.states() == [CANCEL_REQUESTED, "cancel", CANCELED]


def test_seller_cancel_of_a_canceled_order_changes_nothing() -> None:
    # given a canceled order
    flow, recorder = make_flow()
    order = make_order(CANCELED)
    # when the seller cancels it again
    effect = flow.cancel(order, "again", T0 + 5)
    # then it answers as a cancel but reports no change
    assert effect == "cancel"
    assert order.status == CANCELED
    assert recorder.changes == []


@pytest.mark.parametrize("status", [HANDLING, CANCEL_REQUESTED, INVOICED])
def test_seller_cancel_is_refused_once_an_output_invoice_is_on_the_order(status: str) -> None:
    # given an order carrying an Output invoice (partial or full)
    flow, recorder = make_flow()
    order = make_order(status)
    order.packages.append(invoice("NF1", 4_000))
    # when the seller cancels it
    with pytest.raises(OmsError) as refused:
        flow.cancel(order, "too late", T0 + 5)
    # then VTEX refuses with 409 and the order stays as it was
    assert refused.value.status == 409
    assert order.status == status
    assert recorder.changes == []


def test_seller_cancel_is_allowed_when_only_a_return_invoice_is_on_the_order() -> None:
    # given an order in window-to-cancel with an Input (return) invoice only
    flow, _ = make_flow()
    order = make_order("window-to-cancel")
    order.packages.append(invoice("RET1", 10_000, kind="Input"))
    # when the seller cancels it / then nothing refuses it
    assert flow.cancel(order, "returned", T0 + 5) == "cancel"
    assert order.status == CANCELED


# -- the shopper -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", BEFORE_HANDLING)
def test_a_shopper_cancel_inside_the_window_cancels_the_order(status: str) -> None:
    # given an order still inside the cancellation window
    flow, recorder = make_flow()
    order = make_order(status)
    # when the shopper cancels
    result = flow.shopper_cancels(order, "changed my mind", "req-1", T0 + 5)
    # then the order is canceled without asking the store, as the shopper's doing
    assert result == "canceled"
    assert order.status == CANCELED
    assert order.cancellation_requests == []
    assert order.cancellation is not None
    assert order.cancellation["RequestedByUser"] is True
    assert recorder.states() == ["cancel", CANCELED]


@pytest.mark.parametrize("status", [READY, HANDLING, INVOICED])
def test_a_shopper_cancel_after_the_window_opens_a_request_for_the_store(status: str) -> None:
    # given an order past its window
    flow, recorder = make_flow()
    order = make_order(status)
    # when the shopper cancels
    result = flow.shopper_cancels(order, "found it cheaper", "req-1", T0 + 5)
    # then a request waits for the seller, the order in cancellation-requested
    assert result == "requested"
    assert order.status == CANCEL_REQUESTED
    assert order.status_before_request == status
    assert order.open_request is not None
    assert order.open_request.id == "req-1"
    assert order.open_request.reason == "found it cheaper"
    assert order.open_request.created == T0 + 5
    assert recorder.changes == [(order.order_id, CANCEL_REQUESTED, status, T0)]


@pytest.mark.parametrize("status", [CANCEL_REQUESTED, INVOICED])
def test_a_shopper_cancel_is_ignored_while_a_request_is_already_open(status: str) -> None:
    # given an order with an open cancellation request
    flow, recorder = make_flow()
    order = make_order(status)
    open_a_request(order)
    # when the shopper cancels again
    result = flow.shopper_cancels(order, "really", "req-2", T0 + 5)
    # then nothing happens
    assert result == "ignored"
    assert [r.id for r in order.cancellation_requests] == ["req-1"]
    assert order.status == status
    assert recorder.changes == []


def test_a_shopper_cancel_of_a_canceled_order_is_ignored() -> None:
    flow, recorder = make_flow()
    order = make_order(CANCELED)
    assert flow.shopper_cancels(order, "again", "req-1", T0 + 5) == "ignored"
    assert order.cancellation_requests == []
    assert recorder.changes == []


# -- deny --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [READY, HANDLING, INVOICED])
def test_deny_returns_the_order_to_the_status_it_had_before_the_request(status: str) -> None:
    # given a shopper's request on an order that was in ``status``
    flow, recorder = make_flow()
    order = make_order(status)
    flow.shopper_cancels(order, "found it cheaper", "req-1", T0 + 5)
    # when the seller denies it
    flow.deny(order, "req-1", "already shipped", T0 + 9)
    # then the order is back where it was and the request carries the denial
    assert order.status == status
    assert order.open_request is None
    [request] = order.cancellation_requests
    assert request.denied_by_seller is True
    assert request.deny_reason == "already shipped"
    assert recorder.changes[-1] == (order.order_id, status, CANCEL_REQUESTED, T0 + 5)


def test_deny_of_an_unknown_request_id_is_refused_with_400() -> None:
    flow, recorder = make_flow()
    order = make_order(HANDLING)
    flow.shopper_cancels(order, "found it cheaper", "req-1", T0 + 5)
    changes = len(recorder.changes)
    with pytest.raises(OmsError) as refused:
        flow.deny(order, "no-such-request", "no", T0 + 9)
    assert refused.value.status == 400
    assert len(recorder.changes) == changes
    assert order.status == CANCEL_REQUESTED
    assert order.cancellation_requests[0].denied_by_seller is False


def test_deny_on_a_canceled_order_is_refused_with_400() -> None:
    # given a request whose order was then canceled
    flow, _ = make_flow()
    order = make_order(HANDLING)
    flow.shopper_cancels(order, "found it cheaper", "req-1", T0 + 5)
    flow.cancel(order, "as the shopper asked", T0 + 6)
    assert order.status == CANCELED
    # when the seller denies the request
    with pytest.raises(OmsError) as refused:
        flow.deny(order, "req-1", "no", T0 + 9)
    # then VTEX refuses it
    assert refused.value.status == 400
    assert order.status == CANCELED


def test_deny_of_an_order_not_awaiting_a_decision_is_refused_with_400() -> None:
    # given a known request id on an order that is back in handling (the request was denied)
    flow, recorder = make_flow()
    order = make_order(HANDLING)
    flow.shopper_cancels(order, "found it cheaper", "req-1", T0 + 5)
    flow.deny(order, "req-1", "no", T0 + 9)
    changes = len(recorder.changes)
    # when the seller denies it again
    with pytest.raises(OmsError) as refused:
        flow.deny(order, "req-1", "no", T0 + 10)
    # then VTEX refuses it and nothing changes
    assert refused.value.status == 400
    assert order.status == HANDLING
    assert len(recorder.changes) == changes


def test_deny_of_an_already_denied_request_leaves_a_newer_open_request_alone() -> None:
    # given a first request denied, then a second request from the shopper
    flow, recorder = make_flow()
    order = make_order(HANDLING)
    flow.shopper_cancels(order, "found it cheaper", "req-1", T0 + 5)
    flow.deny(order, "req-1", "no", T0 + 9)
    flow.shopper_cancels(order, "please", "req-2", T0 + 20)
    changes = len(recorder.changes)
    # when the seller denies the first (already denied) request again
    with pytest.raises(OmsError) as refused:
        flow.deny(order, "req-1", "no", T0 + 30)
    # then it is refused: the second request still awaits its answer
    assert refused.value.status == 400
    assert order.status == CANCEL_REQUESTED
    assert order.open_request is not None and order.open_request.id == "req-2"
    assert len(recorder.changes) == changes


# -- invoices ----------------------------------------------------------------------------------


def test_an_invoice_for_the_full_value_makes_the_order_invoiced() -> None:
    # given an order in handling
    flow, recorder = make_flow()
    order = make_order(HANDLING)
    # when an Output invoice for its whole value is posted
    receipt, applied = flow.post_invoice(order, invoice("NF1", 10_000), T0 + 5)
    # then it goes through invoice to invoiced
    assert applied is True
    assert receipt
    assert order.status == INVOICED
    assert recorder.changes == [
        (order.order_id, "invoice", HANDLING, T0),
        (order.order_id, INVOICED, "invoice", T0 + 5),
    ]
    assert [p.number for p in order.packages] == ["NF1"]


def test_partial_invoices_add_up_and_only_the_last_one_makes_the_order_invoiced() -> None:
    # given a single-seller order in handling
    flow, recorder = make_flow()
    order = make_order(HANDLING)
    # when a partial invoice is posted
    flow.post_invoice(order, invoice("NF1", 4_000), T0 + 5)
    # then the status does not change and nothing is reported
    assert order.status == HANDLING
    assert recorder.changes == []
    # when the rest is invoiced
    flow.post_invoice(order, invoice("NF2", 6_000), T0 + 6)
    # then the order is invoiced
    assert order.status == INVOICED
    assert order.output_invoiced == 10_000
    assert recorder.states() == ["invoice", INVOICED]


def test_a_return_invoice_does_not_count_towards_the_order_value() -> None:
    flow, recorder = make_flow()
    order = make_order(HANDLING)
    flow.post_invoice(order, invoice("RET1", 10_000, kind="Input"), T0 + 5)
    assert order.status == HANDLING
    assert order.output_invoiced == 0
    assert recorder.changes == []


def test_a_partial_invoice_of_a_split_order_reports_invoiced_without_changing_status() -> None:
    # given a two-seller order in handling
    flow, recorder = make_flow()
    order = make_order(HANDLING, split=True)
    # when one seller's part is invoiced
    flow.post_invoice(order, invoice("NF1", 5_000), T0 + 5)
    # then an invoiced change is reported for that package, the order stays in handling
    assert recorder.changes == [(order.order_id, INVOICED, HANDLING, T0)]
    assert order.status == HANDLING
    # when the other seller's part is invoiced
    flow.post_invoice(order, invoice("NF2", 5_000), T0 + 6)
    # then the order is invoiced
    assert order.status == INVOICED
    assert recorder.states() == [INVOICED, "invoice", INVOICED]


def test_posting_the_same_invoice_number_again_returns_a_new_receipt_and_changes_nothing() -> None:
    # given an order with a partial invoice NF1
    flow, recorder = make_flow()
    order = make_order(HANDLING)
    first_receipt, _ = flow.post_invoice(order, invoice("NF1", 4_000), T0 + 5)
    # when NF1 is posted again, even with another value
    receipt, applied = flow.post_invoice(order, invoice("NF1", 10_000), T0 + 6)
    # then VTEX answers with a new receipt but applies nothing
    assert applied is False
    assert receipt != first_receipt
    assert [(p.number, p.value) for p in order.packages] == [("NF1", 4_000)]
    assert order.status == HANDLING
    assert recorder.changes == []


def test_an_extra_invoice_on_an_invoiced_order_does_not_replay_the_invoice_statuses() -> None:
    # given an order fully invoiced
    flow, recorder = make_flow()
    order = make_order(HANDLING)
    flow.post_invoice(order, invoice("NF1", 10_000), T0 + 5)
    changes = list(recorder.changes)
    # when another Output invoice is posted
    _, applied = flow.post_invoice(order, invoice("NF2", 1_000), T0 + 6)
    # then it is kept, but the order does not go through invoice/invoiced again
    assert applied is True
    assert order.status == INVOICED
    assert recorder.changes == changes


def test_an_invoice_on_a_canceled_order_is_refused() -> None:
    flow, recorder = make_flow()
    order = make_order(CANCELED)
    with pytest.raises(OmsError) as refused:
        flow.post_invoice(order, invoice("NF1", 10_000), T0 + 5)
    assert refused.value.status == 409
    assert order.packages == []
    assert recorder.changes == []


# -- change reports ----------------------------------------------------------------------------


def test_every_status_change_is_reported_in_order_with_the_previous_state_and_its_time() -> None:
    # given a new order
    flow, recorder = make_flow()
    order = make_order("order-created")
    oid = order.order_id
    # when it walks the whole happy path at distinct times
    flow.advance_to(order, "payment-pending", T0 + 1)
    flow.advance_to(order, "payment-approved", T0 + 2)
    flow.advance_to(order, "window-to-cancel", T0 + 3)
    flow.advance_to(order, READY, T0 + 4)
    flow.start_handling(order, T0 + 5)
    flow.post_invoice(order, invoice("NF1", 10_000), T0 + 6)
    # then each change names the state left and when that state was entered
    assert recorder.changes == [
        (oid, "payment-pending", "order-created", T0),
        (oid, "payment-approved", "payment-pending", T0 + 1),
        (oid, "window-to-cancel", "payment-approved", T0 + 2),
        (oid, READY, "window-to-cancel", T0 + 3),
        (oid, "start-handling", READY, T0 + 4),
        (oid, HANDLING, "start-handling", T0 + 5),
        (oid, "invoice", HANDLING, T0 + 5),
        (oid, INVOICED, "invoice", T0 + 6),
    ]
    assert order.last_change == T0 + 6


@pytest.mark.parametrize("status", [CANCELED, HANDLING, READY])
def test_a_scenario_step_never_moves_an_order_backwards_or_off_its_branch(status: str) -> None:
    # given an order that already got to ``status``
    flow, recorder = make_flow()
    order = make_order(status)
    # when the scenario's ready step comes
    moved = flow.advance_to(order, READY, T0 + 5)
    # then the order stays where it is
    assert moved is False
    assert order.status == status
    assert recorder.changes == []


def test_an_invoice_posted_while_a_request_waits_keeps_the_request_answerable() -> None:
    # given an order in handling whose shopper asked to cancel
    changes: list[tuple[str, str]] = []
    flow = OrderFlow(
        lambda o, state, last, _: changes.append((state, last)), CANCEL_REQUEST_STATUSES
    )
    order = Order("0001000000001-01", "000000001", 0.0, [Item("1", "Kettle", 1, 1000, "1")], ["1"])
    order.status = "handling"
    flow.shopper_cancels(order, "changed my mind", "req-1", 1.0)

    # when the full invoice is posted before the answer
    flow.post_invoice(order, Invoice("NF1", 1000, "Output", "2026-01-01T00:00:00Z", []), 2.0)

    # then the order still waits for the answer, and a denial brings it back invoiced
    assert order.status == "cancellation-requested"
    flow.deny(order, "req-1", "already invoiced", 3.0)
    assert order.status == "invoiced"
    assert changes[-1] == ("invoiced", "cancellation-requested")
