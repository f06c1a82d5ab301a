"""The world's checker: quiet for a correct consumer, and catching every rule a consumer can break.

The world is driven directly (no HTTP) on a frozen store clock that only ``advance`` moves.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sandbox.clock import StoreClock
from sandbox.erp import ErpInvoice, ErpTimings
from sandbox.oms import CANCELED, HANDLING, READY, Invoice, OmsError
from sandbox.scenario import ScenarioConfig
from sandbox.world import SandboxConfig, World

T0 = 1_700_000_000.0
TIMINGS = ErpTimings(picking=300.0, packing=600.0, dispatch=120.0)
ALL_READY = 3_200.0  # created <= 1200, approved <= +90, ready 1800 later: all ready by then


def make_world(
    *,
    orders: int = 1,
    split_share: float = 0.0,
    ready_deadline: float = 900.0,
    request_deadline: float = 1_800.0,
) -> World:
    """A started world whose scenario has no shopper cancels of its own."""
    scenario = ScenarioConfig(
        orders=orders,
        seed=5,
        split_share=split_share,
        cancel_in_window_share=0.0,
        cancel_after_window_share=0.0,
    )
    config = SandboxConfig(
        scenario=scenario,
        erp=TIMINGS,
        duplicate_share=0.0,
        partial_share=0.0,
        ready_deadline=ready_deadline,
        request_deadline=request_deadline,
    )
    world = World(config, StoreClock(0, epoch=T0))
    world.start()
    return world


def advance(world: World, store_seconds: float) -> None:
    world.clock.advance(store_seconds, real_seconds=1.0)
    world.tick()


def ready_order(world: World) -> str:
    """Play the scenario until its (first) order is in ready-for-handling; return its id."""
    advance(world, ALL_READY)
    order_id = world.scenario.orders[0].order_id
    assert world.order(order_id).status == READY
    return order_id


def import_in_erp(world: World, order_id: str) -> None:
    items = [
        {"id": i.sku, "quantity": i.quantity, "price": i.price, "seller": i.seller}
        for i in world.order(order_id).items
    ]
    world.erp_import(order_id, items)


def accept(world: World, order_id: str) -> None:
    """What the bridge does on ready-for-handling: ERP import, then start handling."""
    import_in_erp(world, order_id)
    world.start_handling(order_id)


def pack(world: World, order_id: str) -> None:
    advance(world, TIMINGS.picking + TIMINGS.packing)
    assert world.erp.get(order_id).state == "packed"


def post_erp_invoices(world: World, order_id: str) -> None:
    for inv in world.erp.get(order_id).invoices:
        world.post_invoice(
            order_id, Invoice(inv.number, inv.value, "Output", inv.issued_at, list(inv.items))
        )


def dispatch(world: World, order_id: str) -> None:
    advance(world, TIMINGS.dispatch)
    assert world.erp.get(order_id).state == "dispatched"


def cancel_on_vtex(world: World, order_id: str) -> None:
    """Seller cancel of an order in ready-for-handling/handling: request, then confirm."""
    world.cancel(order_id, "out of stock")
    world.cancel(order_id, "out of stock")
    assert world.order(order_id).status == CANCELED


def ship(world: World, order_id: str) -> None:
    """What the bridge does for an accepted order: invoice on VTEX what the ERP issued, release."""
    pack(world, order_id)
    post_erp_invoices(world, order_id)
    world.erp_release(order_id)
    dispatch(world, order_id)


def play_correctly(world: World, order_id: str) -> None:
    accept(world, order_id)
    ship(world, order_id)


def violations(world: World) -> list[tuple[str, str]]:
    return [(v.rule, v.order_id) for v in world.ledger.violations]


def drain_feed(world: World) -> int:
    """Read and commit everything in the feed; returns how many items were read."""
    read = 0
    while batch := world.read_feed(10, junk=False):
        read += len(batch)
        world.commit_feed([item["handle"] for item in batch])
    return read


# -- a correct consumer ------------------------------------------------------------------------


@pytest.mark.parametrize("split_share", [0.0, 1.0], ids=["one-seller", "split"])
def test_a_correct_consumer_path_finishes_the_order_without_any_violation(
    split_share: float,
) -> None:
    # given an order in ready-for-handling, not finished yet
    world = make_world(split_share=split_share)
    order_id = ready_order(world)
    assert order_id in world.unfinished()
    # when the consumer imports it, starts handling, invoices what the ERP issued and releases it
    play_correctly(world, order_id)
    # then the order is invoiced on VTEX, with the carrier, finished, and nothing was broken
    assert world.order(order_id).status == "invoiced"
    assert len(world.order(order_id).packages) == (2 if split_share else 1)
    assert order_id not in world.unfinished()
    assert world.ledger.violations == []
    assert world.report()["violations"] == []


# -- effects that must happen once -------------------------------------------------------------


def test_a_second_start_handling_is_refused_and_not_recorded_as_an_effect() -> None:
    # given an order already in handling
    world = make_world()
    order_id = ready_order(world)
    accept(world, order_id)
    # when start-handling is called again
    with pytest.raises(OmsError) as refused:
        world.start_handling(order_id)
    # then VTEX refuses it, the ledger holds the first one only, and nothing is violated
    assert (refused.value.status, refused.value.code) == (409, "OMS003")
    assert world.order(order_id).status == HANDLING
    assert world.ledger.times("vtex.start_handling", order_id) == 1
    assert world.ledger.violations == []


def test_posting_an_invoice_number_twice_is_an_effect_repeated() -> None:
    # given an order whose ERP invoice is on VTEX
    world = make_world()
    order_id = ready_order(world)
    accept(world, order_id)
    pack(world, order_id)
    post_erp_invoices(world, order_id)
    assert world.ledger.violations == []
    # when the same invoice number is posted again
    post_erp_invoices(world, order_id)
    # then VTEX keeps one package and the checker reports the repeat once
    assert len(world.order(order_id).packages) == 1
    assert violations(world) == [("effect-repeated", order_id)]


def test_importing_an_order_twice_in_the_erp_is_an_effect_repeated() -> None:
    world = make_world()
    order_id = ready_order(world)
    import_in_erp(world, order_id)
    assert world.ledger.violations == []
    import_in_erp(world, order_id)
    assert violations(world) == [("effect-repeated", order_id)]


def _erp_cancel_twice(world: World, order_id: str) -> None:
    world.erp_cancel(order_id)
    world.erp_cancel(order_id)


def _erp_hold_twice(world: World, order_id: str) -> None:
    pack(world, order_id)
    world.erp_hold(order_id)
    world.erp_hold(order_id)


def _erp_release_twice(world: World, order_id: str) -> None:
    pack(world, order_id)
    world.erp_release(order_id)
    world.erp_release(order_id)


def _erp_record_vtex_invoice_twice(world: World, order_id: str) -> None:
    invoice = ErpInvoice("VTEX-1", "1", 100, [], "2024-01-01T00:00:00.0000000Z", "vtex")
    world.erp_record_invoice(order_id, invoice)
    world.erp_record_invoice(order_id, invoice)


@pytest.mark.parametrize(
    "repeat",
    [_erp_cancel_twice, _erp_hold_twice, _erp_release_twice, _erp_record_vtex_invoice_twice],
    ids=["cancel", "hold", "release", "record-invoice"],
)
def test_an_erp_effect_applied_twice_is_an_effect_repeated(
    repeat: Callable[[World, str], None],
) -> None:
    # given an order the consumer accepted
    world = make_world()
    order_id = ready_order(world)
    accept(world, order_id)
    # when an ERP effect is applied twice
    repeat(world, order_id)
    # then the checker reports the repeat, once
    assert violations(world) == [("effect-repeated", order_id)]


def test_cancelling_a_cancelled_order_again_on_vtex_is_an_effect_repeated() -> None:
    # given an order the seller cancelled on VTEX (request, then confirmation)
    world = make_world()
    order_id = ready_order(world)
    accept(world, order_id)
    world.erp_cancel(order_id)
    cancel_on_vtex(world, order_id)
    assert world.ledger.violations == []
    # when the seller cancels it once more
    world.cancel(order_id, "out of stock")
    # then the repeat is reported, once
    assert violations(world) == [("effect-repeated", order_id)]


def test_a_seller_cancel_of_an_order_the_shopper_cancelled_is_an_effect_repeated() -> None:
    # given an order the shopper cancelled inside the window
    world = make_world()
    advance(world, 1_300.0)  # every order created and approved, none ready yet
    order_id = world.scenario.orders[0].order_id
    assert world.shopper_cancel(order_id, "changed my mind") == "canceled"
    # when the seller cancels it on VTEX
    world.cancel(order_id, "as asked")
    # then it was a cancel with no effect, reported once
    assert violations(world) == [("effect-repeated", order_id)]


def test_denying_an_already_denied_request_is_refused_and_not_an_effect() -> None:
    # given a shopper's request the seller denied
    world = make_world()
    order_id = ready_order(world)
    accept(world, order_id)
    assert world.shopper_cancel(order_id, "found it cheaper") == "requested"
    request_id = world.order(order_id).cancellation_requests[0].id
    world.deny(order_id, request_id, "already packed")
    assert world.ledger.violations == []
    # when the seller denies it again
    with pytest.raises(OmsError) as refused:
        world.deny(order_id, request_id, "already packed")
    # then VTEX refuses it: like a second start-handling, a refused call is no second effect
    assert refused.value.status == 400
    assert violations(world) == []
    assert world.ledger.times("vtex.deny", order_id, request_id) == 1
    assert world.order(order_id).status == HANDLING


# -- safety ------------------------------------------------------------------------------------


def test_an_invoice_posted_on_a_cancelled_order_is_refused_and_reported() -> None:
    # given an order cancelled on VTEX
    world = make_world()
    order_id = ready_order(world)
    accept(world, order_id)
    world.erp_cancel(order_id)
    cancel_on_vtex(world, order_id)
    # when an invoice is posted on it
    with pytest.raises(OmsError) as refused:
        world.post_invoice(order_id, Invoice("NF1", 100, "Output", "", []))
    # then VTEX refuses it, nothing is applied, and the checker reports the attempt
    assert refused.value.status == 409
    assert world.order(order_id).packages == []
    assert world.ledger.times("vtex.invoice", order_id, "NF1") == 0
    assert violations(world) == [("invoice-on-cancelled", order_id)]


def test_a_vtex_cancel_of_an_order_the_erp_dispatched_is_a_cancel_dispatched() -> None:
    # given an order released before it was invoiced, now with the carrier, not invoiced on VTEX
    world = make_world()
    order_id = ready_order(world)
    accept(world, order_id)
    pack(world, order_id)
    world.erp_release(order_id)
    dispatch(world, order_id)
    assert world.order(order_id).packages == []
    assert world.ledger.violations == []
    # when the seller cancels it on VTEX (request, then confirmation)
    cancel_on_vtex(world, order_id)
    # then the checker reports a cancel of a shipped order
    assert violations(world) == [("cancel-dispatched", order_id)]


def _shopper_request(world: World, order_id: str) -> None:
    assert world.shopper_cancel(order_id, "found it cheaper") == "requested"


@pytest.mark.parametrize(
    "cancellation",
    [_shopper_request, cancel_on_vtex],
    ids=["open-request", "cancelled-on-vtex"],
)
def test_releasing_a_shipment_whose_order_is_being_cancelled_is_reported(
    cancellation: Callable[[World, str], None],
) -> None:
    # given a packed shipment whose VTEX order has an open request, or is cancelled
    world = make_world()
    order_id = ready_order(world)
    accept(world, order_id)
    pack(world, order_id)
    cancellation(world, order_id)
    assert world.ledger.violations == []
    # when the consumer re-reads the order and releases the shipment all the same
    world.read_order(order_id)
    world.erp_release(order_id)
    # then the checker reports it
    assert violations(world) == [("released-while-cancelled", order_id)]


def test_a_request_made_after_the_consumers_last_read_is_not_held_against_its_release() -> None:
    # given a packed shipment the consumer has just re-read: no cancellation then
    world = make_world()
    order_id = ready_order(world)
    accept(world, order_id)
    pack(world, order_id)
    world.read_order(order_id)
    # when the shopper asks to cancel in the instant before the release
    _shopper_request(world, order_id)
    world.erp_release(order_id)
    # then nothing could have been known: no violation
    assert violations(world) == []


def test_a_request_older_than_the_grace_is_held_against_a_release_without_a_recheck() -> None:
    # given a packed shipment with a cancellation request the consumer never re-read
    world = make_world()
    order_id = ready_order(world)
    accept(world, order_id)
    pack(world, order_id)
    world.read_order(order_id)
    _shopper_request(world, order_id)
    # the grace is release_grace_real wall seconds: none at all on a frozen clock
    advance(world, 60)
    # when the shipment is released on that stale view
    world.erp_release(order_id)
    # then the checker reports it
    assert violations(world) == [("released-while-cancelled", order_id)]


def test_releasing_after_the_sellers_first_cancel_step_is_reported() -> None:
    # given a packed shipment whose order the seller asked VTEX to cancel (first of two steps)
    world = make_world()
    order_id = ready_order(world)
    accept(world, order_id)
    pack(world, order_id)
    assert world.cancel(order_id, "out of stock")
    assert world.orders[order_id].status == "cancellation-requested"
    # when the shipment is released
    world.erp_release(order_id)
    # then the checker reports it
    assert violations(world) == [("released-while-cancelled", order_id)]


def test_a_cancelled_order_dispatched_by_the_erp_is_reported_as_shipped() -> None:
    # given a released shipment whose order is then cancelled on VTEX, not in the ERP
    world = make_world()
    order_id = ready_order(world)
    accept(world, order_id)
    pack(world, order_id)
    world.erp_release(order_id)
    cancel_on_vtex(world, order_id)
    assert world.ledger.violations == []
    # when the ERP hands it to the carrier
    dispatch(world, order_id)
    # then the checker reports a cancelled order shipped
    assert violations(world) == [("cancelled-order-shipped", order_id)]


# -- liveness and order of work ----------------------------------------------------------------


def test_an_order_left_in_ready_for_handling_past_the_deadline_is_reported_once() -> None:
    # given an order that just reached ready-for-handling and nobody handles
    world = make_world(ready_deadline=900.0)
    order_id = ready_order(world)
    # when exactly the deadline passes / then it is still fine
    advance(world, 900.0)
    assert world.ledger.violations == []
    # when it passes the deadline
    advance(world, 1.0)
    # then it is reported, and only once however many ticks follow
    assert violations(world) == [("stuck-in-ready-for-handling", order_id)]
    for _ in range(5):
        advance(world, 600.0)
    assert violations(world) == [("stuck-in-ready-for-handling", order_id)]


def test_an_order_made_slow_on_purpose_has_its_deadline_counted_from_the_end_of_it() -> None:
    # given an order in ready-for-handling whose every read hangs (the chaos suite's poison)
    world = make_world(ready_deadline=900.0)
    order_id = ready_order(world)
    world.slow_down(order_id, 12.0, 60.0)
    # when far more than the deadline passes while it hangs / then that is not held against it
    advance(world, 5_000.0)
    assert world.ledger.violations == []
    # when the window ends, the deadline counts from there
    world.clock.advance(real_seconds=61.0)
    advance(world, 900.0)
    assert world.ledger.violations == []
    advance(world, 1.0)
    assert violations(world) == [("stuck-in-ready-for-handling", order_id)]


def test_a_cancellation_request_left_unanswered_past_the_deadline_is_reported_once() -> None:
    # given an order in handling with a shopper's request nobody answers
    world = make_world(request_deadline=1_800.0)
    order_id = ready_order(world)
    accept(world, order_id)
    _shopper_request(world, order_id)
    # when exactly the deadline passes / then it is still fine
    advance(world, 1_800.0)
    assert world.ledger.violations == []
    # when it passes the deadline
    advance(world, 1.0)
    # then it is reported, and only once
    assert violations(world) == [("cancellation-request-unanswered", order_id)]
    for _ in range(5):
        advance(world, 600.0)
    assert violations(world) == [("cancellation-request-unanswered", order_id)]


def test_start_handling_before_the_erp_import_is_reported() -> None:
    # given an order in ready-for-handling that the ERP does not have
    world = make_world()
    order_id = ready_order(world)
    # when handling starts
    world.start_handling(order_id)
    # then VTEX accepts it, but the checker reports the order of work
    assert world.order(order_id).status == HANDLING
    assert violations(world) == [("handled-before-erp-import", order_id)]


# -- settling ----------------------------------------------------------------------------------


def test_the_run_settles_only_when_every_order_is_finished_and_the_feed_is_empty() -> None:
    # given a two-order scenario with a feed, every order in ready-for-handling
    world = make_world(orders=2)
    world.configure_feed({"filter": {"type": "FromOrders", "expression": "true"}})
    advance(world, ALL_READY)
    first, second = (o.order_id for o in world.scenario.orders)
    assert world.report()["settled"] is False
    # when both are accepted, only the first is shipped, and the feed is drained
    accept(world, first)
    accept(world, second)
    ship(world, first)
    assert drain_feed(world) > 0
    # then the run is not settled: the second order is unfinished
    assert list(world.unfinished()) == [second]
    assert world.report()["settled"] is False
    # when the second order is shipped too, its events still waiting in the feed
    ship(world, second)
    assert world.unfinished() == {}
    # then it is still not settled
    assert world.report()["settled"] is False
    # when the events are read but not committed yet / then still not settled
    batch = world.read_feed(10, junk=False)
    assert batch
    assert world.report()["settled"] is False
    # when they are committed and the feed is empty
    world.commit_feed([item["handle"] for item in batch])
    drain_feed(world)
    # then the run is settled
    assert world.report()["settled"] is True
    assert world.report()["violations"] == []


def test_asking_vtex_to_cancel_an_invoiced_order_is_refused_and_reported() -> None:
    # given an order whose invoices are on VTEX
    world = make_world()
    order_id = ready_order(world)
    accept(world, order_id)
    pack(world, order_id)
    post_erp_invoices(world, order_id)
    # when the consumer asks VTEX to cancel it
    with pytest.raises(OmsError) as refused:
        world.cancel(order_id, "out of stock")
    # then VTEX refuses and the checker reports the attempt
    assert refused.value.status == 409
    assert violations(world) == [("cancel-invoiced", order_id)]
