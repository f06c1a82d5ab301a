"""Feed items judged at the boundary: order ids, states and dates."""

from __future__ import annotations

import pytest

from bridge.domain.feed import plan_item

GOOD = {
    "eventId": "ED423DDED4C1AE580CADAC1A4D02DA3F",
    "handle": "AQEB-opaque",
    "domain": "Fulfillment",
    "state": "ready-for-handling",
    "lastState": "window-to-cancel",
    "orderId": "1234567890123-01",
    "lastChange": "2019-08-12T20:54:23.7153839Z",
    "currentChange": "2019-08-12T20:54:24.6524315Z",
}


@pytest.mark.parametrize(
    "order_id",
    ["1234567890123-01", "v70530116str-01", "SCP-880102018018-01", "DFG-v7731485plzv-01"],
)
def test_vtex_and_marketplace_order_ids_are_accepted(order_id: str) -> None:
    planned = plan_item({**GOOD, "orderId": order_id})
    assert planned.event is not None and planned.work == "accept"


@pytest.mark.parametrize(
    "order_id", ["../../api", "1' OR '1'='1", "a b-01", "x" * 300, "1234-1", "-01", "A--B-01"]
)
def test_hostile_order_ids_are_refused_with_a_reason_that_does_not_echo_them(order_id: str) -> None:
    planned = plan_item({**GOOD, "orderId": order_id})
    assert planned.event is None
    assert planned.problem and order_id not in planned.problem
