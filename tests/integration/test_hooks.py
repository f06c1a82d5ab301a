"""VTEX's hook side in the sandbox: the ping on save, notifications, and retries of failures.

A small local receiver stands in for the store's hook endpoint. The sandbox's hook sender runs in
a background thread, so every expectation on what the receiver got waits with ``wait_until``.
"""

from __future__ import annotations

import json
import re
import socketserver
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sandbox.scenario import ScenarioConfig
from tests.sandbox_client import SandboxClient, wait_until
from tests.vtex_spec import validate_request, validate_response

PING = {"hookConfig": "ping"}
SECRET_HEADERS = {"key": "s3cret", "X-Our-Secret": "s3cret"}
# Every order reaches ready-for-handling: no shopper cancels.
NO_CANCELS = ScenarioConfig(orders=3, seed=1, cancel_in_window_share=0, cancel_after_window_share=0)
ONE_ORDER = ScenarioConfig(orders=1, seed=1, cancel_in_window_share=0, cancel_after_window_share=0)
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z")


@dataclass(frozen=True)
class Call:
    headers: dict[str, str]  # names in lower case
    body: Any
    status: int  # what the receiver answered (maybe after its delay)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (socket.getfqdn): skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])


class HookReceiver:
    """A hook endpoint on 127.0.0.1 that records every POST and answers as scripted.

    The ping is answered with ``ping_status``. Notifications are answered, in arrival order, with
    the ``(status, delay seconds)`` pairs of ``script``, then with 200 at once.
    """

    def __init__(self, *, ping_status: int = 200, script: Sequence[tuple[int, float]] = ()) -> None:
        self.ping_status = ping_status
        self._script = list(script)
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_port}/vtex/hook"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def notifications(self) -> list[Call]:
        return [c for c in self.calls if c.body != PING]

    def pings(self) -> list[Call]:
        return [c for c in self.calls if c.body == PING]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _answer(self, headers: dict[str, str], body: Any) -> tuple[int, float]:
        with self._lock:
            if body == PING:
                status, delay = self.ping_status, 0.0
            elif self._script:
                status, delay = self._script.pop(0)
            else:
                status, delay = 200, 0.0
            self._calls.append(Call(headers, body, status))
            return status, delay

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, delay = receiver._answer(headers, json.loads(raw or b"null"))
                if delay:
                    time.sleep(delay)  # a slow endpoint, the behaviour under test
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting and closed the connection

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def make_receiver() -> Iterator[Callable[..., HookReceiver]]:
    started: list[HookReceiver] = []

    def make(**kw: Any) -> HookReceiver:
        receiver = HookReceiver(**kw)
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


def hook_config(url: str, statuses: list[str]) -> dict[str, Any]:
    return {
        "filter": {"type": "FromWorkflow", "status": statuses},
        "hook": {"url": url, "headers": dict(SECRET_HEADERS)},
    }


def save_hook(client: SandboxClient, url: str, statuses: list[str]) -> int:
    r = client.vtex("POST", "/api/orders/hook/config", json=hook_config(url, statuses))
    return r.status_code


def has_secret_headers(call: Call) -> bool:
    return all(call.headers.get(k.lower()) == v for k, v in SECRET_HEADERS.items())


def scenario_started(client: SandboxClient) -> bool:
    started: bool = client.report()["scenario"]["started"]
    return started


# -- configuration ----------------------------------------------------------------------------


def test_saving_a_hook_pings_the_url_with_the_configured_headers_and_answers_200(
    sandbox: SandboxClient, make_receiver: Callable[..., HookReceiver]
) -> None:
    # given a receiver that accepts the ping
    receiver = make_receiver()
    # when the hook is saved
    status = save_hook(sandbox, receiver.url, ["ready-for-handling"])
    # then the receiver was pinged with the configured headers, and the save succeeded
    assert status == 200
    pings = receiver.pings()
    assert len(pings) == 1
    assert has_secret_headers(pings[0])
    assert receiver.notifications() == []
    # and saving the hook started the scenario
    assert scenario_started(sandbox)


def test_a_hook_whose_ping_is_answered_500_is_refused_with_400_and_not_saved(
    sandbox: SandboxClient, make_receiver: Callable[..., HookReceiver]
) -> None:
    # given a receiver that fails the ping
    receiver = make_receiver(ping_status=500)
    # when the hook is saved
    r = sandbox.vtex(
        "POST", "/api/orders/hook/config", json=hook_config(receiver.url, ["invoiced"])
    )
    # then the save fails because of the ping, and no hook exists
    assert r.status_code == 400, r.text
    assert "ping" in r.json()["error"]["message"]
    assert len(receiver.pings()) == 1
    assert sandbox.vtex("GET", "/api/orders/hook/config").status_code == 404
    assert not scenario_started(sandbox)


def test_a_failed_save_keeps_the_hook_saved_before(
    sandbox: SandboxClient, make_receiver: Callable[..., HookReceiver]
) -> None:
    # given a saved hook
    kept = make_receiver()
    assert save_hook(sandbox, kept.url, ["ready-for-handling"]) == 200
    # when another hook is saved whose receiver fails the ping
    failing = make_receiver(ping_status=503)
    assert save_hook(sandbox, failing.url, ["invoiced"]) == 400
    # then the hook saved before is still the configuration
    r = sandbox.vtex("GET", "/api/orders/hook/config")
    assert r.status_code == 200
    assert r.json() == hook_config(kept.url, ["ready-for-handling"])


def test_a_hook_url_where_nobody_listens_is_refused_with_400(
    sandbox: SandboxClient, make_receiver: Callable[..., HookReceiver]
) -> None:
    # given the URL of a receiver that has stopped
    gone = make_receiver()
    gone.stop()
    # when the hook is saved, then it fails and nothing is saved
    assert save_hook(sandbox, gone.url, ["invoiced"]) == 400
    assert sandbox.vtex("GET", "/api/orders/hook/config").status_code == 404


def test_the_saved_hook_configuration_is_returned_by_get(
    sandbox: SandboxClient, make_receiver: Callable[..., HookReceiver]
) -> None:
    # given a saved hook
    receiver = make_receiver()
    config = hook_config(receiver.url, ["ready-for-handling", "invoiced"])
    validate_request("POST", "/api/orders/hook/config", config)
    assert sandbox.vtex("POST", "/api/orders/hook/config", json=config).status_code == 200
    # when it is read back
    r = sandbox.vtex("GET", "/api/orders/hook/config")
    # then it is the saved filter and hook
    assert r.status_code == 200
    assert r.json() == config


def test_a_deleted_hook_configuration_is_gone_and_notifies_no_more(
    sandbox: SandboxClient, make_receiver: Callable[..., HookReceiver]
) -> None:
    # given a saved hook
    receiver = make_receiver()
    assert save_hook(sandbox, receiver.url, ["ready-for-handling"]) == 200
    # when it is deleted
    deleted = sandbox.vtex("DELETE", "/api/orders/hook/config")
    # then it is gone, a second delete finds nothing, and no change is notified any more
    assert deleted.status_code == 200
    assert sandbox.vtex("GET", "/api/orders/hook/config").status_code == 404
    assert sandbox.vtex("DELETE", "/api/orders/hook/config").status_code == 404
    sandbox.advance(4000)
    assert sandbox.report()["events"]["hook_notifications"] == 0
    assert receiver.notifications() == []


# -- notifications ----------------------------------------------------------------------------


def test_notifications_are_pascal_case_bodies_with_the_configured_headers_for_filtered_states(
    make_sandbox: Callable[..., SandboxClient], make_receiver: Callable[..., HookReceiver]
) -> None:
    # given a hook for two of the statuses every order goes through
    client = make_sandbox(scenario=NO_CANCELS)
    receiver = make_receiver()
    assert save_hook(client, receiver.url, ["payment-approved", "ready-for-handling"]) == 200
    # when every order reaches ready-for-handling
    client.advance(4000)
    # then the receiver gets exactly one notification per order and filtered status
    order_ids = client.order_ids()
    expected = len(order_ids) * 2
    assert client.report()["events"]["hook_notifications"] == expected
    wait_until(lambda: len(receiver.notifications()) >= expected, 10, "all notifications")
    calls = receiver.notifications()
    assert len(calls) == expected
    got = {(c.body["OrderId"], c.body["State"], c.body["LastState"]) for c in calls}
    assert got == {
        (order_id, state, last)
        for order_id in order_ids
        for state, last in (
            ("payment-approved", "payment-pending"),
            ("ready-for-handling", "window-to-cancel"),
        )
    }
    config = client.sandbox.world.config
    for call in calls:
        body = call.body
        validate_response("POST", "/api/orders/hook/config", 200, body)
        assert set(body) == {
            "Domain",
            "OrderId",
            "State",
            "LastState",
            "LastChange",
            "CurrentChange",
            "Origin",
        }
        assert body["Domain"] == "Fulfillment"
        assert body["Origin"] == {"Account": config.account, "Key": config.app_key}
        assert ISO.fullmatch(body["LastChange"]) and ISO.fullmatch(body["CurrentChange"])
        assert has_secret_headers(call)
        assert call.headers["content-type"].startswith("application/json")
        if body["State"] == "ready-for-handling":
            assert body["CurrentChange"] == client.order(body["OrderId"])["lastChange"]


def test_a_refused_notification_is_delivered_again_until_accepted(
    make_sandbox: Callable[..., SandboxClient], make_receiver: Callable[..., HookReceiver]
) -> None:
    # given a receiver that answers the first two notifications with 500
    client = make_sandbox(scenario=ONE_ORDER, hook_retry_base_real=0.05, hook_max_attempts=5)
    receiver = make_receiver(script=[(500, 0.0), (500, 0.0)])
    assert save_hook(client, receiver.url, ["ready-for-handling"]) == 200
    # when the order becomes ready for handling
    client.advance(4000)
    # then the same notification comes again until it is accepted
    wait_until(
        lambda: any(c.status == 200 for c in receiver.notifications()), 10, "an accepted delivery"
    )
    calls = receiver.notifications()
    assert [c.status for c in calls] == [500, 500, 200]
    assert all(c.body == calls[0].body for c in calls)
    assert calls[0].body["OrderId"] == client.order_ids()[0]
    assert calls[0].body["State"] == "ready-for-handling"
    assert all(has_secret_headers(c) for c in calls)
    validate_response("POST", "/api/orders/hook/config", 200, calls[0].body)


def test_a_notification_answered_slower_than_the_timeout_is_retried(
    make_sandbox: Callable[..., SandboxClient], make_receiver: Callable[..., HookReceiver]
) -> None:
    # given a sender that waits 0.2 s and a receiver that takes 0.5 s the first time
    client = make_sandbox(
        scenario=ONE_ORDER,
        hook_timeout_real=0.2,
        hook_retry_base_real=0.05,
        hook_max_attempts=5,
    )
    receiver = make_receiver(script=[(200, 0.5)])
    assert save_hook(client, receiver.url, ["ready-for-handling"]) == 200
    # when the order becomes ready for handling
    client.advance(4000)
    # then the slow answer counts as a failure and the notification comes again
    wait_until(lambda: len(receiver.notifications()) >= 2, 10, "a second delivery")
    first, second = receiver.notifications()[:2]
    assert first.body == second.body
    assert second.body["OrderId"] == client.order_ids()[0]
    wait_until(lambda: client.sandbox.hooks.stats.delivered == 1, 5, "the retry accepted")
    assert client.sandbox.hooks.stats.failed_attempts == 1


def test_a_notification_is_given_up_after_the_maximum_number_of_attempts(
    make_sandbox: Callable[..., SandboxClient], make_receiver: Callable[..., HookReceiver]
) -> None:
    # given a receiver that always answers 500 and a sender allowed three attempts
    client = make_sandbox(scenario=ONE_ORDER, hook_retry_base_real=0.02, hook_max_attempts=3)
    receiver = make_receiver(script=[(500, 0.0)] * 10)
    assert save_hook(client, receiver.url, ["ready-for-handling"]) == 200
    # when the order becomes ready for handling
    client.advance(4000)
    # then the notification is tried three times, then given up
    hooks = client.sandbox.hooks
    wait_until(lambda: hooks.stats.given_up == 1, 10, "the notification given up")
    assert len(receiver.notifications()) == 3
    assert hooks.pending() == 0
