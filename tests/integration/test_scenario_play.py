"""A scenario played to its end by a consumer that follows the rules settles with no violation;
a consumer that breaks one is caught by the sandbox's ledger."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sandbox.scenario import ScenarioConfig
from tests.integration.model_consumer import ModelConsumer
from tests.sandbox_client import SandboxClient

Make = Callable[..., SandboxClient]


def test_a_rule_following_consumer_settles_every_order_without_violations(
    make_sandbox: Make,
) -> None:
    # given a scenario with split orders, cancellations inside and after the window, duplicates,
    # partial reads and shuffled delivery
    box = make_sandbox(
        scenario=ScenarioConfig(
            orders=40,
            seed=11,
            split_share=0.4,
            cancel_in_window_share=0.15,
            cancel_after_window_share=0.3,
        ),
        duplicate_share=0.2,
        partial_share=0.1,
    )
    box.configure_feed()

    # when the model consumer plays it to the end
    report = ModelConsumer(box).play()

    # then every order is finished, every event committed, and the ledger is clean
    assert report["violations"] == []
    assert report["settled"], report["orders"]
    assert report["events"]["waiting"] == 0 and report["events"]["in_flight"] == 0
    statuses = report["orders"]["by_status"]
    assert set(statuses) <= {"canceled", "invoiced"}
    assert statuses.get("canceled", 0) > 0 and statuses.get("invoiced", 0) > 0
    assert report["effects"].get("vtex.deny", 0) + report["effects"].get("vtex.cancel", 0) > 0


def test_posting_invoices_without_checking_vtex_first_is_caught(make_sandbox: Make) -> None:
    box = make_sandbox(scenario=ScenarioConfig(orders=6, seed=3, cancel_after_window_share=0))
    box.configure_feed()

    report = ModelConsumer(box, post_invoices_twice=True).play()

    rules = {v["rule"] for v in report["violations"]}
    assert "effect-repeated" in rules
    assert any("vtex.invoice" in v["detail"] for v in report["violations"])


def test_committing_before_the_work_is_done_loses_orders_when_work_fails(
    make_sandbox: Make,
) -> None:
    # given start-handling fails every time (the ERP side is down, say)
    box = make_sandbox(
        scenario=ScenarioConfig(
            orders=5, seed=5, cancel_in_window_share=0, cancel_after_window_share=0
        ),
        faults="start_handling:503=100%",
        ready_deadline=600.0,
    )
    box.configure_feed()
    consumer = ModelConsumer(box, commit_before_work=True)
    box.advance(4000, feed_seconds=1)

    # when the consumer commits its batch first and its work then fails
    with pytest.raises(AssertionError, match="503"):
        consumer.round()

    # then nothing brings the event back: the orders sit in ready-for-handling past the deadline
    assert box.report()["events"]["waiting"] == 0
    box.advance(700)
    rules = {v["rule"] for v in box.report()["violations"]}
    assert "stuck-in-ready-for-handling" in rules
