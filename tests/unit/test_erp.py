"""The reference ERP's contract: import, fulfilment on the store clock, invoices, hold/release."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sandbox.erp import Erp, ErpError, ErpInvoice, ErpTimings

T0 = 1_700_000_000.0
TIMINGS = ErpTimings(picking=300.0, packing=600.0, dispatch=120.0)
ORDER = "1234567890123-01"
ITEMS: list[dict[str, Any]] = [
    {"id": "1000", "quantity": 2, "price": 1_500, "seller": "1"},
    {"id": "1100", "quantity": 1, "price": 2_000, "seller": "sellerb"},
    {"id": "1001", "quantity": 3, "price": 100, "seller": "1"},
]


class Stage:
    """Brings a freshly imported order to one of the ERP's stages, tracking the store time."""

    def __init__(self) -> None:
        self.erp = Erp(TIMINGS)
        self.now = T0
        self.erp.import_order(ORDER, ITEMS, self.now)

    def wait(self, seconds: float) -> list[tuple[str, str]]:
        self.now += seconds
        return [(step, order.order_id) for step, order in self.erp.progress(self.now)]

    def new(self) -> Stage:
        return self

    def picking(self) -> Stage:
        self.wait(TIMINGS.picking)
        return self

    def packed(self) -> Stage:
        self.picking().wait(TIMINGS.packing)
        return self

    def held(self) -> Stage:
        self.packed().erp.hold(ORDER, self.now)
        return self

    def released(self) -> Stage:
        self.packed().erp.release(ORDER, self.now)
        return self

    def dispatched(self) -> Stage:
        self.released().wait(TIMINGS.dispatch)
        return self

    def cancelled(self) -> Stage:
        self.erp.cancel(ORDER, self.now)
        return self

    @property
    def state(self) -> str:
        return self.erp.get(ORDER).state


STAGES: dict[str, Callable[[Stage], Stage]] = {
    "new": Stage.new,
    "picking": Stage.picking,
    "packed": Stage.packed,
    "held": Stage.held,
    "released": Stage.released,
    "dispatched": Stage.dispatched,
    "cancelled": Stage.cancelled,
}


def at(stage: str) -> Stage:
    return STAGES[stage](Stage())


# -- import ------------------------------------------------------------------------------------


def test_importing_an_order_twice_keeps_the_first_import() -> None:
    # given an imported order
    erp = Erp(TIMINGS)
    assert erp.import_order(ORDER, ITEMS, T0) is True
    # when it is imported again with other items
    again = erp.import_order(ORDER, ITEMS[:1], T0 + 50)
    # then the ERP says it already had it and changes nothing
    assert again is False
    order = erp.get(ORDER)
    assert order.items == ITEMS
    assert order.value == 2 * 1_500 + 2_000 + 3 * 100
    assert order.imported_at == T0
    assert order.state == "new"


def test_an_unknown_order_is_answered_with_404() -> None:
    with pytest.raises(ErpError) as refused:
        Erp(TIMINGS).get(ORDER)
    assert (refused.value.status, refused.value.code) == (404, "not-found")


# -- fulfilment --------------------------------------------------------------------------------


def test_an_imported_order_is_picked_then_packed_after_the_configured_timings() -> None:
    # given an order imported at T0
    stage = Stage()
    # then it waits in new until picking time has passed
    assert stage.wait(TIMINGS.picking - 1) == []
    assert stage.wait(1) == [("picking", ORDER)]
    assert stage.state == "picking"
    # and it is packed once packing time has passed since picking began
    assert stage.wait(TIMINGS.packing - 1) == []
    assert stage.erp.get(ORDER).invoices == []
    assert stage.wait(1) == [("packed", ORDER)]
    assert stage.state == "packed"
    # and it does not go further without a release
    assert stage.wait(10 * TIMINGS.dispatch) == []
    assert stage.state == "packed"


def test_after_a_clock_jump_an_order_catches_up_through_every_step_due() -> None:
    # given an order imported at T0, nobody looking for a long while
    erp = Erp(TIMINGS)
    erp.import_order(ORDER, ITEMS, T0)
    # when the ERP is next looked at well after picking and packing were due
    steps = erp.progress(T0 + TIMINGS.picking + TIMINGS.packing + 50)
    # then both steps happened, each at the time it was due
    assert [step for step, _ in steps] == ["picking", "packed"]
    order = erp.get(ORDER)
    assert order.state == "packed"
    assert order.state_since == T0 + TIMINGS.picking + TIMINGS.packing
    # and a release dispatches exactly the dispatch timing after it, however late the look
    erp.release(ORDER, T0 + 2_000)
    assert [step for step, _ in erp.progress(T0 + 5_000)] == ["dispatched"]
    assert erp.get(ORDER).state_since == T0 + 2_000 + TIMINGS.dispatch


def test_packing_issues_one_invoice_per_seller_worth_that_sellers_lines() -> None:
    # given an order with lines of two sellers
    stage = Stage()
    # when it is packed
    stage.packed()
    # then there is one ERP invoice per seller, numbered after the order
    invoices = stage.erp.get(ORDER).invoices
    assert [(i.number, i.seller, i.value, i.source) for i in invoices] == [
        ("NF123456789012301", "1", 2 * 1_500 + 3 * 100, "erp"),
        ("NF123456789012302", "sellerb", 2_000, "erp"),
    ]
    assert invoices[0].items == [
        {"id": "1000", "price": 1_500, "quantity": 2},
        {"id": "1001", "price": 100, "quantity": 3},
    ]
    assert invoices[1].items == [{"id": "1100", "price": 2_000, "quantity": 1}]
    assert sum(i.value for i in invoices) == stage.erp.get(ORDER).value


def test_a_released_shipment_is_dispatched_after_the_dispatch_timing() -> None:
    # given a packed shipment released at some time
    stage = at("released")
    assert stage.erp.get(ORDER).released is True
    # when less than the dispatch timing has passed / then it waits
    assert stage.wait(TIMINGS.dispatch - 1) == []
    assert stage.state == "packed"
    # when the dispatch timing has passed / then it is with the carrier
    assert stage.wait(1) == [("dispatched", ORDER)]
    assert stage.state == "dispatched"


def test_a_held_shipment_is_never_dispatched() -> None:
    stage = at("held")
    assert stage.wait(100 * TIMINGS.dispatch) == []
    assert stage.state == "held"


# -- cancel ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage_name", ["new", "picking", "packed", "held", "released"])
def test_an_order_can_be_cancelled_until_it_is_dispatched(stage_name: str) -> None:
    # given an order not yet with the carrier
    stage = at(stage_name)
    # when it is cancelled
    cancelled = stage.erp.cancel(ORDER, stage.now)
    # then it is cancelled and never moves again
    assert cancelled is True
    assert stage.state == "cancelled"
    assert stage.wait(10_000) == []
    assert stage.state == "cancelled"


def test_cancelling_a_dispatched_order_is_refused_with_409() -> None:
    stage = at("dispatched")
    with pytest.raises(ErpError) as refused:
        stage.erp.cancel(ORDER, stage.now)
    assert (refused.value.status, refused.value.code) == (409, "dispatched")
    assert stage.state == "dispatched"


def test_cancelling_a_cancelled_order_again_reports_no_new_effect() -> None:
    stage = at("cancelled")
    assert stage.erp.cancel(ORDER, stage.now + 1) is False
    assert stage.state == "cancelled"


# -- hold and release --------------------------------------------------------------------------


def test_a_packed_shipment_waiting_for_release_can_be_held_once() -> None:
    # given a packed shipment
    stage = at("packed")
    # when it is held / then it is held
    assert stage.erp.hold(ORDER, stage.now) is True
    assert stage.state == "held"
    # when it is held again / then nothing new happens
    assert stage.erp.hold(ORDER, stage.now) is False
    assert stage.state == "held"


@pytest.mark.parametrize("stage_name", ["new", "picking", "released", "dispatched", "cancelled"])
def test_hold_is_refused_with_409_unless_the_shipment_is_packed_and_unreleased(
    stage_name: str,
) -> None:
    stage = at(stage_name)
    before = stage.state
    with pytest.raises(ErpError) as refused:
        stage.erp.hold(ORDER, stage.now)
    assert (refused.value.status, refused.value.code) == (409, "not-packed")
    assert stage.state == before


@pytest.mark.parametrize("stage_name", ["packed", "held"])
def test_a_packed_or_held_shipment_can_be_released_once(stage_name: str) -> None:
    # given a packed or held shipment
    stage = at(stage_name)
    # when it is released / then it waits for the carrier, released
    assert stage.erp.release(ORDER, stage.now) is True
    order = stage.erp.get(ORDER)
    assert (order.state, order.released, order.released_at) == ("packed", True, stage.now)
    # when it is released again / then nothing new happens
    assert stage.erp.release(ORDER, stage.now + 5) is False
    assert stage.erp.get(ORDER).released_at == stage.now


@pytest.mark.parametrize("stage_name", ["new", "picking", "cancelled"])
def test_release_is_refused_with_409_unless_the_shipment_is_packed_or_held(
    stage_name: str,
) -> None:
    stage = at(stage_name)
    before = stage.state
    with pytest.raises(ErpError) as refused:
        stage.erp.release(ORDER, stage.now)
    assert refused.value.status == 409
    assert stage.state == before
    assert stage.erp.get(ORDER).released is False


def test_shipments_pending_lists_packed_and_held_orders_not_yet_released() -> None:
    # given one order at each stage of one ERP
    erp = Erp(TIMINGS)
    for name in ("packed", "held", "released", "dispatched", "cancelled"):
        erp.import_order(f"{name}-01", ITEMS, T0)
    erp.progress(T0 + 300)
    erp.import_order("picking-01", ITEMS, T0 + 600)
    erp.progress(T0 + 900)
    erp.import_order("new-01", ITEMS, T0 + 900)
    erp.hold("held-01", T0 + 900)
    erp.release("dispatched-01", T0 + 900)
    erp.cancel("cancelled-01", T0 + 900)
    erp.release("released-01", T0 + 1000)
    erp.progress(T0 + 1020)
    assert {o.order_id: (o.state, o.released) for o in erp.orders.values()} == {
        "packed-01": ("packed", False),
        "held-01": ("held", False),
        "released-01": ("packed", True),
        "dispatched-01": ("dispatched", True),
        "cancelled-01": ("cancelled", False),
        "picking-01": ("picking", False),
        "new-01": ("new", False),
    }
    # when asked which shipments wait for the bridge / then only packed and held ones, sorted
    assert erp.packed_waiting() == ["held-01", "packed-01"]


def test_shipments_pending_drops_an_order_once_released() -> None:
    stage = at("packed")
    assert stage.erp.packed_waiting() == [ORDER]
    stage.erp.release(ORDER, stage.now)
    assert stage.erp.packed_waiting() == []


# -- invoices recorded from VTEX ---------------------------------------------------------------


def test_recording_an_invoice_number_twice_keeps_the_first() -> None:
    # given a VTEX invoice recorded in the ERP
    stage = at("new")
    first = ErpInvoice("NF-V1", "1", 3_000, [], "2024-01-01T00:00:00.0000000Z", "vtex")
    assert stage.erp.record_invoice(ORDER, first) is True
    # when the same number is recorded again with another value
    again = ErpInvoice("NF-V1", "1", 9_999, [], "2024-01-02T00:00:00.0000000Z", "vtex")
    # then the ERP says it had it and keeps the first
    assert stage.erp.record_invoice(ORDER, again) is False
    assert [(i.number, i.value) for i in stage.erp.get(ORDER).invoices] == [("NF-V1", 3_000)]


def test_recording_a_number_the_erp_issued_itself_adds_nothing() -> None:
    stage = at("packed")
    own = stage.erp.get(ORDER).invoices[0]
    copy = ErpInvoice(own.number, own.seller, own.value, [], own.issued_at, "vtex")
    assert stage.erp.record_invoice(ORDER, copy) is False
    assert len(stage.erp.get(ORDER).invoices) == 2
