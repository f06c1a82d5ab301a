"""The scenario generator: a seeded, reproducible plan of orders and of what shoppers do."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sandbox.scenario import Scenario, ScenarioConfig, Step, generate


def plan_of(scenario: Scenario) -> dict[str, Any]:
    """Everything a scenario plans, in a comparable form."""
    return {
        "orders": [
            (
                o.order_id,
                o.sequence,
                o.sellers,
                [(i.sku, i.name, i.quantity, i.price, i.seller) for i in o.items],
            )
            for o in scenario.orders
        ],
        "steps": [(s.at, s.action, s.order_id, s.reason) for s in sorted(scenario.steps)],
    }


def steps_by_order(scenario: Scenario) -> dict[str, dict[str, Step]]:
    out: dict[str, dict[str, Step]] = {}
    for step in scenario.steps:
        out.setdefault(step.order_id, {})[step.action] = step
    return out


def test_the_same_seed_plans_the_same_scenario() -> None:
    config = ScenarioConfig(orders=200, seed=42)
    assert plan_of(generate(config)) == plan_of(generate(config))


def test_different_seeds_plan_different_orders_and_times() -> None:
    first = plan_of(generate(ScenarioConfig(orders=50, seed=1)))
    second = plan_of(generate(ScenarioConfig(orders=50, seed=2)))
    # not only the ids (which carry the seed) but the contents and the timing differ
    assert [o[3] for o in first["orders"]] != [o[3] for o in second["orders"]]
    assert [s[0] for s in first["steps"]] != [s[0] for s in second["steps"]]


def test_a_split_share_of_one_gives_every_order_two_sellers_with_lines_each() -> None:
    scenario = generate(ScenarioConfig(orders=100, seed=3, split_share=1.0))
    for order in scenario.orders:
        assert order.sellers == ["1", "sellerb"]
        assert {i.seller for i in order.items} == {"1", "sellerb"}


def test_a_split_share_of_zero_gives_every_order_one_seller() -> None:
    scenario = generate(ScenarioConfig(orders=100, seed=3, split_share=0.0))
    assert all(order.sellers == ["1"] for order in scenario.orders)
    assert all(i.seller == "1" for order in scenario.orders for i in order.items)


def test_every_order_is_created_then_approved_then_ready_after_the_window() -> None:
    config = ScenarioConfig(orders=300, seed=5)
    scenario = generate(config)
    planned = steps_by_order(scenario)
    assert set(planned) == {o.order_id for o in scenario.orders}
    for steps in planned.values():
        create, approve, ready = steps["create"], steps["approve"], steps["ready"]
        assert 0 <= create.at <= config.arrival
        assert create.at < approve.at < ready.at
        assert ready.at - approve.at == pytest.approx(config.window)


def test_cancel_shares_inside_and_after_the_window_are_about_as_configured() -> None:
    # given 2,000 orders, 10% cancelled inside the window and 20% asked to cancel later
    config = ScenarioConfig(
        orders=2_000, seed=11, cancel_in_window_share=0.10, cancel_after_window_share=0.20
    )
    planned = steps_by_order(generate(config))
    inside = after = 0
    for steps in planned.values():
        cancel = steps.get("shopper-cancel")
        if cancel is None:
            continue
        if steps["approve"].at <= cancel.at < steps["ready"].at:
            inside += 1
        else:
            assert steps["ready"].at <= cancel.at <= steps["ready"].at + config.late_request_span
            after += 1
    # then the shares are right within a few standard deviations
    assert inside / 2_000 == pytest.approx(0.10, abs=0.025)
    assert after / 2_000 == pytest.approx(0.20, abs=0.03)


def test_no_shopper_cancels_when_both_cancel_shares_are_zero() -> None:
    config = ScenarioConfig(
        orders=300, seed=2, cancel_in_window_share=0.0, cancel_after_window_share=0.0
    )
    assert not [s for s in generate(config).steps if s.action == "shopper-cancel"]


def test_order_ids_look_like_vtex_order_ids() -> None:
    scenario = generate(ScenarioConfig(orders=300, seed=123_456))
    ids = [o.order_id for o in scenario.orders]
    assert all(re.fullmatch(r"\d{13}-01", order_id) for order_id in ids)
    assert len(set(ids)) == len(ids)
    for order in scenario.orders:
        assert order.order_id.startswith("3456")
        assert order.order_id[4:13] == order.sequence


def test_due_hands_out_steps_in_time_order_and_only_once() -> None:
    scenario = generate(ScenarioConfig(orders=50, seed=9))
    total = scenario.remaining
    first = scenario.due(1_000.0)
    rest = scenario.due(1e9)
    assert all(s.at <= 1_000.0 for s in first)
    assert all(s.at > 1_000.0 for s in rest)
    times = [s.at for s in first + rest]
    assert times == sorted(times)
    assert len(first) + len(rest) == total
    assert scenario.remaining == 0
    assert scenario.due(1e9) == []
