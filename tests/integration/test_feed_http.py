"""VTEX Orders Feed v3 over HTTP, against the real sandbox: configuration, reads, commits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import requests

from sandbox.scenario import ScenarioConfig
from tests.sandbox_client import SandboxClient

MakeSandbox = Callable[..., SandboxClient]
FEED = "/api/orders/feed"
CONFIG = "/api/orders/feed/config"
READY = "ready-for-handling"
# Scenarios without shoppers cancelling, so every order reaches ready-for-handling.
CALM = {"cancel_in_window_share": 0.0, "cancel_after_window_share": 0.0}


def calm_sandbox(make_sandbox: MakeSandbox, orders: int = 5, **config: Any) -> SandboxClient:
    return make_sandbox(scenario=ScenarioConfig(orders=orders, seed=7, **CALM), **config)


def config_body(
    flt: dict[str, Any] | None = None, visibility: int = 30, retention: int = 345_600
) -> dict[str, Any]:
    return {
        "filter": flt if flt is not None else {"type": "FromWorkflow", "status": [READY]},
        "queue": {
            "visibilityTimeoutInSeconds": visibility,
            "MessageRetentionPeriodInSeconds": retention,
        },
    }


def assert_oms_error(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "exception"}
    assert isinstance(body["error"]["code"], str)
    assert body["error"]["message"]
    return body


def read(box: SandboxClient, maxlot: int = 10) -> list[dict[str, str]]:
    response = box.vtex("GET", f"{FEED}?maxlot={maxlot}")
    assert response.status_code == 200, response.text
    items: list[dict[str, str]] = response.json()
    return items


def commit(box: SandboxClient, handles: list[str]) -> None:
    response = box.vtex("POST", FEED, json={"handles": handles})
    assert response.status_code == 200, response.text


def ready_feed(box: SandboxClient, visibility: int = 30) -> None:
    """Given a feed of ready-for-handling events and every order having reached that state."""
    assert box.configure_feed([READY], visibility=visibility).status_code == 200
    box.advance(4000)


# -- configuration -------------------------------------------------------------------------


def test_feed_without_configuration_answers_404_with_the_oms_error_body(
    sandbox: SandboxClient,
) -> None:
    assert_oms_error(sandbox.vtex("GET", FEED), 404)
    assert_oms_error(sandbox.vtex("GET", CONFIG), 404)


def test_saved_configuration_is_read_back_with_queue_statistics(sandbox: SandboxClient) -> None:
    flt = {"type": "FromWorkflow", "status": [READY, "invoiced"]}

    saved = sandbox.vtex("POST", CONFIG, json=config_body(flt, visibility=240))
    got = sandbox.vtex("GET", CONFIG)

    assert saved.status_code == 200
    assert got.status_code == 200
    config = got.json()
    assert config["filter"] == flt
    assert config["queue"] == {
        "visibilityTimeoutInSeconds": 240,
        "MessageRetentionPeriodInSeconds": 345_600,
    }
    assert config["quantity"] == 0
    assert isinstance(config["approximateAgeOfOldestMessageInSeconds"], int | float)


def test_configuration_quantity_counts_waiting_and_in_flight_events(
    make_sandbox: MakeSandbox,
) -> None:
    box = calm_sandbox(make_sandbox)
    ready_feed(box)
    read(box, maxlot=2)  # two in flight, three waiting

    config = box.vtex("GET", CONFIG).json()

    assert config["quantity"] == 5


@pytest.mark.parametrize(
    "flt",
    [
        {"type": "FromWorkflow", "status": [READY], "expression": 'status = "invoiced"'},
        {"type": "FromOrders", "expression": 'status = "invoiced"', "status": [READY]},
    ],
    ids=["workflow-with-expression", "orders-with-status"],
)
def test_a_filter_mixing_both_types_is_refused_with_409(
    sandbox: SandboxClient, flt: dict[str, Any]
) -> None:
    response = sandbox.vtex("POST", CONFIG, json=config_body(flt))

    assert_oms_error(response, 409)
    assert_oms_error(sandbox.vtex("GET", CONFIG), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"queue": {"visibilityTimeoutInSeconds": 30, "MessageRetentionPeriodInSeconds": 345_600}},
        config_body(visibility=0),
        config_body(visibility=43_201),
        config_body(retention=345_599),
        config_body(retention=1_209_601),
        config_body({"type": "FromWorkflow", "status": "ready-for-handling"}),
        config_body({"type": "Bogus", "status": [READY]}),
        {**config_body(), "queue": {"visibilityTimeoutInSeconds": True}},
        {**config_body(), "queue": []},
    ],
    ids=[
        "missing-filter",
        "visibility-0",
        "visibility-43201",
        "retention-too-short",
        "retention-too-long",
        "status-not-a-list",
        "unknown-filter-type",
        "visibility-boolean",
        "queue-not-an-object",
    ],
)
def test_a_bad_configuration_body_is_refused_with_400(
    sandbox: SandboxClient, body: dict[str, Any]
) -> None:
    response = sandbox.vtex("POST", CONFIG, json=body)

    assert_oms_error(response, 400)
    assert_oms_error(sandbox.vtex("GET", CONFIG), 404)


@pytest.mark.parametrize(("visibility", "retention"), [(1, 345_600), (43_200, 1_209_600)])
def test_configuration_limits_themselves_are_accepted(
    sandbox: SandboxClient, visibility: int, retention: int
) -> None:
    response = sandbox.vtex(
        "POST", CONFIG, json=config_body(visibility=visibility, retention=retention)
    )

    assert response.status_code == 200, response.text
    assert sandbox.vtex("GET", CONFIG).json()["queue"] == {
        "visibilityTimeoutInSeconds": visibility,
        "MessageRetentionPeriodInSeconds": retention,
    }


def test_deleted_configuration_is_gone_and_the_feed_answers_404(sandbox: SandboxClient) -> None:
    sandbox.configure_feed()

    deleted = sandbox.vtex("DELETE", CONFIG)

    assert deleted.status_code == 200
    assert_oms_error(sandbox.vtex("GET", CONFIG), 404)
    assert_oms_error(sandbox.vtex("GET", FEED), 404)
    assert_oms_error(sandbox.vtex("DELETE", CONFIG), 404)


# -- reading -------------------------------------------------------------------------------


def test_omitted_maxlot_returns_at_most_ten_items(make_sandbox: MakeSandbox) -> None:
    box = calm_sandbox(make_sandbox, orders=12)
    ready_feed(box)

    unlimited = box.vtex("GET", FEED)
    rest = box.vtex("GET", f"{FEED}?maxlot=3")

    assert unlimited.status_code == 200
    assert len(unlimited.json()) == 10
    assert len(rest.json()) == 2  # the twelve events less the ten in flight


@pytest.mark.parametrize("maxlot", ["0", "11", "abc", "-1"])
def test_maxlot_outside_one_to_ten_is_refused_with_400(sandbox: SandboxClient, maxlot: str) -> None:
    sandbox.configure_feed()

    assert_oms_error(sandbox.vtex("GET", f"{FEED}?maxlot={maxlot}"), 400)


def test_only_statuses_in_the_filter_produce_events(make_sandbox: MakeSandbox) -> None:
    box = calm_sandbox(make_sandbox)
    box.configure_feed([READY])

    box.advance(4000)  # created, payment, window-to-cancel, ready-for-handling
    events = box.drain_feed()

    assert {e["state"] for e in events} == {READY}
    assert sorted(e["orderId"] for e in events) == sorted(box.order_ids())


def test_feed_items_carry_every_documented_field_as_a_string(make_sandbox: MakeSandbox) -> None:
    box = calm_sandbox(make_sandbox)
    ready_feed(box)

    items = read(box)

    fields = {"eventId", "handle", "domain", "state", "lastState", "orderId"}
    fields |= {"lastChange", "currentChange"}
    assert items
    for item in items:
        assert set(item) == fields
        assert all(isinstance(v, str) and v for v in item.values())
        assert item["lastState"] == "window-to-cancel"


def test_a_new_feed_only_sees_changes_made_after_it_exists(make_sandbox: MakeSandbox) -> None:
    box = calm_sandbox(make_sandbox)
    assert box.vtex("POST", "/_sandbox/start").status_code == 200
    box.advance(4000)  # every order reaches ready-for-handling while no feed exists
    first, second = box.order_ids()[:2]
    assert box.order(first)["status"] == READY

    box.configure_feed([READY, "handling"])
    before = read(box)
    assert box.vtex("POST", f"/api/oms/pvt/orders/{second}/start-handling").status_code == 204
    after = box.drain_feed()

    assert before == []
    assert [(e["orderId"], e["state"]) for e in after] == [(second, "handling")]


# -- visibility and commits ------------------------------------------------------------------


def test_an_uncommitted_item_reappears_after_the_visibility_timeout_with_a_new_handle(
    make_sandbox: MakeSandbox,
) -> None:
    box = calm_sandbox(make_sandbox, orders=1)
    ready_feed(box, visibility=60)
    (first,) = read(box)

    hidden = read(box)
    box.advance(feed_seconds=61)
    (again,) = read(box)

    assert hidden == []
    assert again["eventId"] == first["eventId"]
    assert again["handle"] != first["handle"]


def test_an_item_stays_hidden_until_its_visibility_timeout_has_passed(
    make_sandbox: MakeSandbox,
) -> None:
    box = calm_sandbox(make_sandbox, orders=1)
    ready_feed(box, visibility=60)
    read(box)

    box.advance(feed_seconds=50)

    assert read(box) == []


def test_stale_handle_does_not_delete_the_item(make_sandbox: MakeSandbox) -> None:
    box = calm_sandbox(make_sandbox, orders=1)
    ready_feed(box, visibility=30)
    (first,) = read(box)
    box.advance(feed_seconds=31)
    (second,) = read(box)

    commit(box, [first["handle"]])  # answers 200 but deletes nothing
    box.advance(feed_seconds=31)
    (third,) = read(box)

    assert third["eventId"] == first["eventId"]
    assert len({first["handle"], second["handle"], third["handle"]}) == 3


def test_latest_handle_removes_the_item_for_good(make_sandbox: MakeSandbox) -> None:
    box = calm_sandbox(make_sandbox, orders=1)
    ready_feed(box, visibility=30)
    (first,) = read(box)
    box.advance(feed_seconds=31)
    (latest,) = read(box)

    commit(box, [latest["handle"]])
    box.advance(feed_seconds=31)

    assert latest["eventId"] == first["eventId"]
    assert read(box) == []
    assert box.vtex("GET", CONFIG).json()["quantity"] == 0


def test_committing_unknown_or_used_handles_answers_200(make_sandbox: MakeSandbox) -> None:
    box = calm_sandbox(make_sandbox, orders=1)
    ready_feed(box)
    (item,) = read(box)
    commit(box, [item["handle"]])

    commit(box, ["not-a-handle", item["handle"]])
    commit(box, [])

    assert box.report()["events"]["committed"] == 1


@pytest.mark.parametrize(
    "body",
    [{}, {"handles": "abc"}, {"handles": [1, 2]}, {"handles": None}, ["abc"]],
    ids=["no-handles", "string", "numbers", "null", "bare-list"],
)
def test_commit_body_must_be_a_list_of_handle_strings(sandbox: SandboxClient, body: Any) -> None:
    sandbox.configure_feed()

    assert_oms_error(sandbox.vtex("POST", FEED, json=body), 400)


def test_commit_with_invalid_json_is_refused_with_400(sandbox: SandboxClient) -> None:
    sandbox.configure_feed()

    response = sandbox.vtex(
        "POST", FEED, data=b"{handles", headers={"Content-Type": "application/json"}
    )

    assert_oms_error(response, 400)


def test_committed_items_are_counted_in_the_report(make_sandbox: MakeSandbox) -> None:
    box = calm_sandbox(make_sandbox)
    ready_feed(box)
    items = read(box, maxlot=3)

    commit(box, [i["handle"] for i in items])

    events = box.report()["events"]
    assert events["committed"] == 3
    assert events["waiting"] == 2
    assert events["in_flight"] == 0


# -- SQS behaviour: duplicates and short reads --------------------------------------------


def test_with_duplicates_on_every_event_arrives_twice_with_the_same_event_id(
    make_sandbox: MakeSandbox,
) -> None:
    box = calm_sandbox(make_sandbox, duplicate_share=1.0)
    ready_feed(box)

    events = box.drain_feed()

    by_event = Counter(e["eventId"] for e in events)
    assert len(by_event) == 5
    assert set(by_event.values()) == {2}
    assert len({e["handle"] for e in events}) == 10
    assert box.report()["events"]["duplicated"] == 5


def test_with_partial_reads_on_a_read_returns_fewer_items_than_are_waiting(
    make_sandbox: MakeSandbox,
) -> None:
    box = calm_sandbox(make_sandbox, partial_share=1.0)
    ready_feed(box)
    waiting = box.vtex("GET", CONFIG).json()["quantity"]

    got = []
    for _ in range(5):
        got.append(len(read(box)))
        box.advance(feed_seconds=31)  # whatever was read is visible again: five wait each time

    assert waiting == 5
    assert all(n < 5 for n in got)
    assert max(got) > 0


# -- authentication --------------------------------------------------------------------------


def test_feed_call_without_credentials_answers_401(sandbox: SandboxClient) -> None:
    sandbox.configure_feed()

    response = requests.get(sandbox.vtex_url + FEED, timeout=10)

    assert_oms_error(response, 401)


def test_feed_call_with_a_wrong_token_answers_403(sandbox: SandboxClient) -> None:
    sandbox.configure_feed()

    response = sandbox.vtex("GET", FEED, headers={"X-VTEX-API-AppToken": "wrong"})
    config = sandbox.vtex("POST", CONFIG, json=config_body(), headers={"X-VTEX-API-AppKey": "x"})

    assert_oms_error(response, 403)
    assert_oms_error(config, 403)
