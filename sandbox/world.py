"""The sandbox world: VTEX's OMS, its feed and hook, the reference ERP and the ledger, in one place.

Every public method takes the world's lock, so the HTTP threads, the ticker and the hook sender see
one consistent state. The world knows both systems, which is what lets the ledger judge
cross-system rules: a VTEX cancel of an order the ERP already handed to the carrier, a shipment
released while VTEX shows the order cancelled or with an open cancellation request.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox import documents
from sandbox.clock import StoreClock, iso
from sandbox.erp import Erp, ErpError, ErpInvoice, ErpTimings
from sandbox.faults import FaultPlan
from sandbox.feedqueue import FeedQueue
from sandbox.ledger import Ledger
from sandbox.oms import (
    CANCELED,
    INVOICED,
    READY,
    Invoice,
    OmsError,
    Order,
    OrderFlow,
    moment,
)
from sandbox.scenario import Scenario, ScenarioConfig, generate

CANCEL_REQUEST_STATUSES = frozenset(
    {
        "cancellation-requested",
        "cancelation-request",
        "request-cancel",
        "waiting-for-seller-decision",
    }
)


@dataclass(frozen=True)
class SandboxConfig:
    """Everything a sandbox run is made of. Durations are store seconds unless named real."""

    app_key: str = "vtexappkey-sandbox-BRIDGE"
    app_token: str = "sandbox-app-token"
    erp_token: str = "sandbox-erp-token"
    account: str = "sandbox"
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    erp: ErpTimings = field(default_factory=ErpTimings)
    duplicate_share: float = 0.10
    partial_share: float = 0.10
    shuffle_window: int = 20
    ready_deadline: float = 3600.0  # longest an order may sit in ready-for-handling
    request_deadline: float = 7200.0  # longest a cancellation request may wait for an answer
    release_grace_real: float = 2.0  # how stale a consumer's view may be when it releases
    hook_timeout_real: float = 5.0
    hook_retry_base_real: float = 1.0
    hook_max_attempts: int = 10
    start_on_config: bool = True  # the scenario starts when a consumer configures feed or hook


@dataclass
class HookConfig:
    url: str
    headers: dict[str, str]
    filter: dict[str, Any]


HookSink = Callable[[HookConfig, dict[str, Any]], None]


class World:
    def __init__(self, config: SandboxConfig, clock: StoreClock) -> None:
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.rng = random.Random(config.scenario.seed)
        self.ledger = Ledger()
        self.erp = Erp(config.erp)
        self.flow = OrderFlow(self._on_change, CANCEL_REQUEST_STATUSES)
        self.queue = FeedQueue(
            clock=clock.real,
            rng=random.Random(config.scenario.seed + 1),
            duplicate_share=config.duplicate_share,
            partial_share=config.partial_share,
            shuffle_window=config.shuffle_window,
        )
        self.faults = FaultPlan.parse("")
        self.orders: dict[str, Order] = {}
        self.feed_config: dict[str, Any] | None = None
        self.hook_config: HookConfig | None = None
        self.hook_sink: HookSink | None = None
        self.scenario: Scenario = generate(config.scenario)
        self._planned = {p.order_id: p for p in self.scenario.orders}
        self.started_at: float | None = None
        self.events = Counter[str]()
        self._last_event_real = clock.real()
        self._event_seq = 0
        self._request_seq = 0
        self._last_tick = 0.0
        self.last_shopper_result = ""
        self.slow_orders: dict[str, tuple[float, float]] = {}
        # The store moment up to which an order was made slow on purpose: its deadlines count
        # from there (nobody can handle an order whose every read hangs).
        self.sabotaged_until: dict[str, float] = {}
        self.erp_fences: dict[str, int] = {}

    # -- time -------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def start(self) -> bool:
        """Start the scenario's clock; returns False when it was already running."""
        with self.lock:
            if self.started_at is not None:
                return False
            self.started_at = self.now()
            return True

    def on_consumer_configured(self) -> None:
        if self.config.start_on_config:
            self.start()

    def tick_if_due(self, every: float = 0.02) -> None:
        """Tick unless a tick ran in the last ``every`` real seconds (keeps requests cheap)."""
        if self.clock.real() - self._last_tick >= every:
            self.tick()

    def tick(self) -> None:
        """Play what is due: scenario steps, the ERP's progress, deadlines, feed retention."""
        with self.lock:
            self._last_tick = self.clock.real()
            now = self.now()
            if self.started_at is not None:
                for step in self.scenario.due(now - self.started_at):
                    self._play(step.action, step.order_id, step.reason, now)
            for what, erp_order in self.erp.progress(now):
                self.ledger.record(f"erp.{what}", erp_order.order_id, iso(now))
                if what == "dispatched":
                    self._check_dispatch(erp_order.order_id, now)
            self._check_deadlines(now)
            self._expire_feed()

    def _play(self, action: str, order_id: str, reason: str, now: float) -> None:
        if action == "create":
            planned = self._planned[order_id]
            order = Order(
                order_id,
                planned.sequence,
                now,
                planned.items,
                planned.sellers,
                last_change=now,
                status_since=now,
            )
            self.orders[order_id] = order
            self._on_change(order, order.status, "", now)
            self.flow.set_status(order, "on-order-completed", now)
            self.flow.set_status(order, "payment-pending", now)
        elif action == "approve":
            order = self.orders[order_id]
            if self.flow.advance_to(order, "payment-approved", now):
                self.flow.set_status(order, "window-to-cancel", now)
        elif action == "ready":
            self.flow.advance_to(self.orders[order_id], READY, now)
        elif action == "shopper-cancel":
            self._request_seq += 1
            request_id = f"{self._request_seq:08x}-cr"
            what = self.flow.shopper_cancels(self.orders[order_id], reason, request_id, now)
            self.events[f"shopper.{what}"] += 1
            self.last_shopper_result = what

    def slow_down(self, order_id: str, seconds: float, duration: float) -> None:
        """For ``duration`` real seconds, Get order of this order answers ``seconds`` late: work
        on it outlasts whatever kills workers (the chaos suite's poison). The order's deadlines
        count from the end of that window."""
        with self.lock:
            self.order(order_id)
            self.slow_orders[order_id] = (seconds, self.clock.real() + duration)
            self.sabotaged_until[order_id] = self.now()

    def read_delay(self, order_id: str) -> float:
        slow = self.slow_orders.get(order_id)
        if slow is None or self.clock.real() >= slow[1]:
            return 0.0
        return slow[0]

    def shopper_cancel(self, order_id: str, reason: str) -> str:
        """A shopper asks to cancel now (outside the plan): canceled, requested or ignored."""
        with self.lock:
            self.order(order_id)
            self._play("shopper-cancel", order_id, reason, self.now())
            return self.last_shopper_result

    def effects_of(self, order_id: str | None) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.ledger.log if order_id is None or e["orderId"] == order_id]

    # -- events -----------------------------------------------------------------------------

    def _on_change(self, order: Order, state: str, last_state: str, last_change: float) -> None:
        self.events["changes"] += 1
        self._event_seq += 1
        event = {
            "eventId": f"{self.config.scenario.seed:04d}{self._event_seq:012d}",
            "domain": "Fulfillment",
            "state": state,
            "lastState": last_state,
            "orderId": order.order_id,
            "lastChange": iso(last_change),
            "currentChange": iso(order.last_change if state == order.status else self.now()),
        }
        if self.feed_config is not None and _matches(self.feed_config["filter"], state):
            copies = self.queue.enqueue(event)
            self.events["emitted"] += 1
            self.events["duplicated"] += copies - 1
            self._last_event_real = self.clock.real()
        hook = self.hook_config
        if hook is not None and self.hook_sink is not None and _matches(hook.filter, state):
            self.events["hook_notifications"] += 1
            self.hook_sink(hook, _hook_body(event, self.config))

    # -- feed -------------------------------------------------------------------------------

    def configure_feed(self, body: dict[str, Any]) -> None:
        with self.lock:
            queue = body.get("queue") or {}
            visibility = float(queue.get("visibilityTimeoutInSeconds", 30))
            retention = float(queue.get("MessageRetentionPeriodInSeconds", 345_600))
            self.queue.configure(visibility_timeout=visibility, retention=retention)
            self.feed_config = {
                "filter": body["filter"],
                "queue": {
                    "visibilityTimeoutInSeconds": int(visibility),
                    "MessageRetentionPeriodInSeconds": int(retention),
                },
            }
            self._last_event_real = self.clock.real()

    def delete_feed(self) -> bool:
        with self.lock:
            existed = self.feed_config is not None
            self.feed_config = None
            self.queue.clear()
            return existed

    def feed_status(self) -> dict[str, Any] | None:
        with self.lock:
            if self.feed_config is None:
                return None
            stats = self.queue.stats()
            return {
                **self.feed_config,
                "quantity": stats.waiting + stats.in_flight,
                "approximateAgeOfOldestMessageInSeconds": round(stats.oldest_age, 3),
            }

    def read_feed(self, maxlot: int, junk: bool) -> list[dict[str, str]]:
        with self.lock:
            if junk:
                self._inject_junk()
            return self.queue.receive(maxlot)

    def commit_feed(self, handles: list[str]) -> int:
        with self.lock:
            deleted = self.queue.commit(handles)
            self.events["committed"] += deleted
            return deleted

    def _inject_junk(self) -> None:
        """A malformed item, as a broken producer or a hostile party would put in the feed."""
        self._event_seq += 1
        now = iso(self.now())
        junk = {
            "eventId": f"junk{self._event_seq:012d}",
            "domain": "Fulfillment",
            "state": "ready-for-handling",
            "lastState": "window-to-cancel",
            "orderId": "0000000000001-01",
            "lastChange": now,
            "currentChange": now,
        }
        kind = self.rng.choice(("date", "order-id", "state", "oversized"))
        if kind == "date":
            junk["currentChange"] = "31/12/2019 25:61"
        elif kind == "order-id":
            junk["orderId"] = self.rng.choice(
                ("../../api/oms/pvt/orders", "1' OR '1'='1", "x" * 300, "a b\r\nX-Injected: 1")
            )
        elif kind == "state":
            junk["state"] = "<script>alert(1)</script>"
        else:
            junk["lastState"] = "x" * 200_000
        self.queue.enqueue(junk)
        self.events["malformed_injected"] += 1

    def _expire_feed(self) -> None:
        if self.feed_config is None:
            return
        retention = self.feed_config["queue"]["MessageRetentionPeriodInSeconds"]
        if self.clock.real() - self._last_event_real > retention:
            # VTEX deletes a feed that received nothing for a whole retention period.
            self.feed_config = None
            self.queue.clear()
            self.events["feed_config_expired"] += 1

    # -- hook -------------------------------------------------------------------------------

    def set_hook(self, hook: HookConfig | None) -> None:
        with self.lock:
            self.hook_config = hook

    # -- orders -----------------------------------------------------------------------------

    def read_order(self, order_id: str) -> dict[str, Any]:
        """Get order as VTEX answers it; notes when the consumer last saw the order."""
        with self.lock:
            order = self.order(order_id)
            order.last_read = moment()
            return documents.order_json(order)

    def order(self, order_id: str) -> Order:
        order = self.orders.get(order_id)
        if order is None:
            raise OmsError(404, "OMS001", f"Order {order_id} not found")
        return order

    def start_handling(self, order_id: str) -> None:
        with self.lock:
            order = self.order(order_id)
            now = self.now()
            self.flow.start_handling(order, now)
            self.ledger.record("vtex.start_handling", order_id, iso(now))
            if order_id not in self.erp.orders:
                self.ledger.violate(
                    "handled-before-erp-import",
                    order_id,
                    "start-handling was called before the ERP imported the order",
                    iso(now),
                )

    def cancel(self, order_id: str, reason: str) -> str:
        with self.lock:
            order = self.order(order_id)
            now = self.now()
            erp_order = self.erp.orders.get(order_id)
            was_canceled = order.status == CANCELED
            if any(p.kind == "Output" for p in order.packages):
                self.ledger.violate(
                    "cancel-invoiced", order_id, "VTEX cancel asked for an invoiced order", iso(now)
                )
            effect = self.flow.cancel(order, reason, now)
            count = self.ledger.record(f"vtex.{effect}", order_id, iso(now))
            if was_canceled and count == 1:
                self.ledger.violate(
                    "effect-repeated",
                    order_id,
                    "vtex.cancel of an order already cancelled",
                    iso(now),
                )
            if effect == "cancel" and erp_order is not None and erp_order.state == "dispatched":
                self.ledger.violate(
                    "cancel-dispatched",
                    order_id,
                    "VTEX cancel of an order the ERP already handed to the carrier",
                    iso(now),
                )
            return order.next_receipt()

    def deny(self, order_id: str, request_id: str, reason: str) -> None:
        with self.lock:
            order = self.order(order_id)
            now = self.now()
            self.flow.deny(order, request_id, reason, now)
            self.ledger.record("vtex.deny", order_id, iso(now), key=request_id)

    def post_invoice(self, order_id: str, invoice: Invoice) -> str:
        with self.lock:
            order = self.order(order_id)
            now = self.now()
            if order.status == CANCELED:
                self.ledger.violate(
                    "invoice-on-cancelled",
                    order_id,
                    f"invoice {invoice.number} posted on a cancelled order",
                    iso(now),
                )
            receipt, applied = self.flow.post_invoice(order, invoice, now)
            self.ledger.record("vtex.invoice", order_id, iso(now), key=invoice.number)
            if not applied:
                self.events["invoice_reposted"] += 1
            return receipt

    def track(self, order_id: str, number: str, fields: dict[str, str]) -> str:
        with self.lock:
            order = self.order(order_id)
            invoice = order.invoice(number)
            if invoice is None:
                raise OmsError(404, "OMS004", f"Invoice {number} not found on order {order_id}")
            invoice.courier = fields.get("courier", invoice.courier)
            invoice.tracking_number = fields.get("trackingNumber", invoice.tracking_number)
            invoice.tracking_url = fields.get("trackingUrl", invoice.tracking_url)
            self.ledger.record("vtex.tracking", order_id, iso(self.now()), key=number)
            return order.next_receipt()

    def list_orders(self, status: set[str] | None) -> list[Order]:
        with self.lock:
            found = [o for o in self.orders.values() if status is None or o.status in status]
            return sorted(found, key=lambda o: o.created, reverse=True)

    # -- the reference ERP ------------------------------------------------------------------

    def erp_fence(self, order_id: str, token: int, *, refuse: bool = True) -> None:
        """Refuse a write whose fencing token is older than one already seen for the order (a
        read, ``refuse=False``, only raises the highest token)."""
        with self.lock:
            highest = self.erp_fences.get(order_id, 0)
            if token < highest and not refuse:
                return
            if token < highest:
                self.events["erp.stale_writes_refused"] += 1
                raise ErpError(
                    409,
                    "stale-token",
                    f"order {order_id}: fencing token {token} is older than {highest}; "
                    "another holder acts on this order now",
                )
            self.erp_fences[order_id] = token

    def erp_import(self, order_id: str, items: list[dict[str, Any]]) -> bool:
        with self.lock:
            now = self.now()
            self.ledger.record("erp.import", order_id, iso(now))
            return self.erp.import_order(order_id, items, now)

    def erp_cancel(self, order_id: str) -> None:
        with self.lock:
            now = self.now()
            self.erp.cancel(order_id, now)
            self.ledger.record("erp.cancel", order_id, iso(now))

    def erp_hold(self, order_id: str) -> None:
        with self.lock:
            now = self.now()
            self.erp.hold(order_id, now)
            self.ledger.record("erp.hold", order_id, iso(now))

    def erp_release(self, order_id: str) -> None:
        with self.lock:
            now = self.now()
            self.erp.release(order_id, now)
            self.ledger.record("erp.release", order_id, iso(now))
            order = self.orders.get(order_id)
            if order is not None and self._could_know_of_cancellation(order, now):
                why = "cancelled" if order.status == CANCELED else "awaiting a cancellation answer"
                self.ledger.violate(
                    "released-while-cancelled",
                    order_id,
                    f"shipment released while the VTEX order was {why}",
                    iso(now),
                )

    def erp_record_invoice(self, order_id: str, invoice: ErpInvoice) -> None:
        with self.lock:
            now = self.now()
            self.erp.record_invoice(order_id, invoice)
            self.ledger.record("erp.invoice_recorded", order_id, iso(now), key=invoice.number)

    def _could_know_of_cancellation(self, order: Order, now: float) -> bool:
        """Whether the order was cancelled, or had a cancellation request the consumer saw or
        had time to see. A request made between the consumer's last read and its release (within
        the grace) is a race nobody can close, and is not held against it."""
        if order.status == CANCELED:
            return True
        request = order.open_request
        if request is None:
            # The seller's own first cancel step leaves no request entry: the consumer asked.
            return order.status in CANCEL_REQUEST_STATUSES
        grace = self.config.release_grace_real * self.clock.scale
        return request.moment < order.last_read or now - request.created > grace

    def _check_dispatch(self, order_id: str, now: float) -> None:
        order = self.orders.get(order_id)
        if order is not None and order.status == CANCELED:
            self.ledger.violate(
                "cancelled-order-shipped",
                order_id,
                "the ERP handed a cancelled order to the carrier",
                iso(now),
            )

    # -- rules over time --------------------------------------------------------------------

    def _check_deadlines(self, now: float) -> None:
        ready_deadline = self.config.ready_deadline
        request_deadline = self.config.request_deadline
        for order_id in self.sabotaged_until:
            if self.read_delay(order_id) > 0:
                self.sabotaged_until[order_id] = now
        for order in self.orders.values():
            since = self.sabotaged_until.get(order.order_id, 0.0)
            if order.status == READY and now - max(order.status_since, since) > ready_deadline:
                self.ledger.violate(
                    "stuck-in-ready-for-handling",
                    order.order_id,
                    f"in ready-for-handling for over {ready_deadline:.0f} store seconds",
                    iso(now),
                    once=True,
                )
            req = order.open_request
            if req is not None and now - max(req.created, since) > request_deadline:
                self.ledger.violate(
                    "cancellation-request-unanswered",
                    order.order_id,
                    f"cancellation request {req.id} unanswered for over "
                    f"{request_deadline:.0f} store seconds",
                    iso(now),
                    once=True,
                )

    # -- the report -------------------------------------------------------------------------

    def unfinished(self) -> dict[str, str]:
        """Orders not yet at the end their events call for, with what is missing."""
        with self.lock:
            out: dict[str, str] = {}
            for planned in self.scenario.orders:
                order = self.orders.get(planned.order_id)
                why = "not created yet" if order is None else self._missing(order)
                if why:
                    out[planned.order_id] = why
            return out

    def _missing(self, order: Order) -> str:
        erp_order = self.erp.orders.get(order.order_id)
        if order.status == CANCELED:
            if erp_order is not None and erp_order.state not in ("cancelled", "dispatched"):
                return f"cancelled on VTEX but {erp_order.state} in the ERP"
            return ""
        if order.open_request is not None:
            return "cancellation request awaiting an answer"
        if order.status != INVOICED:
            return f"{order.status} on VTEX"
        if erp_order is None:
            return "invoiced on VTEX but never imported by the ERP"
        if erp_order.state != "dispatched":
            return f"invoiced on VTEX, {erp_order.state} in the ERP"
        vtex_numbers = {p.number for p in order.packages}
        erp_numbers = {i.number for i in erp_order.invoices}
        if erp_numbers - vtex_numbers:
            return f"ERP invoices missing on VTEX: {sorted(erp_numbers - vtex_numbers)}"
        if vtex_numbers - erp_numbers:
            return f"VTEX invoices missing in the ERP: {sorted(vtex_numbers - erp_numbers)}"
        return ""

    def report(self) -> dict[str, Any]:
        with self.lock:
            self.tick()
            stats = self.queue.stats()
            unfinished = self.unfinished()
            by_status = Counter(o.status for o in self.orders.values())
            erp_states = Counter(o.state for o in self.erp.orders.values())
            waiting = stats.waiting + stats.in_flight
            return {
                "scenario": {
                    "seed": self.config.scenario.seed,
                    "orders": self.config.scenario.orders,
                    "started": self.started_at is not None,
                    "steps_remaining": self.scenario.remaining,
                },
                "orders": {
                    "created": len(self.orders),
                    "by_status": dict(sorted(by_status.items())),
                    "erp_by_state": dict(sorted(erp_states.items())),
                    "unfinished": len(unfinished),
                    "unfinished_sample": dict(list(unfinished.items())[:20]),
                },
                "events": {
                    "emitted": self.events["emitted"],
                    "duplicated": self.events["duplicated"],
                    "malformed_injected": self.events["malformed_injected"],
                    "delivered": stats.delivered,
                    "committed": stats.committed,
                    "waiting": stats.waiting,
                    "in_flight": stats.in_flight,
                    "expired": stats.expired,
                    "hook_notifications": self.events["hook_notifications"],
                    "erp_stale_writes_refused": self.events["erp.stale_writes_refused"],
                },
                "effects": dict(sorted(self.ledger.effects.items())),
                "faults": {
                    k.removeprefix("fault."): v
                    for k, v in sorted(self.events.items())
                    if k.startswith("fault.")
                },
                "violations": [v.to_json() for v in self.ledger.violations],
                "settled": self.started_at is not None
                and self.scenario.remaining == 0
                and not unfinished
                and waiting == 0,
            }


def _matches(filter_: dict[str, Any], state: str) -> bool:
    if filter_.get("type") == "FromOrders":
        return True  # JSONata expressions are not evaluated: every change passes
    return state in (filter_.get("status") or [])


def _hook_body(event: dict[str, str], config: SandboxConfig) -> dict[str, Any]:
    return {
        "Domain": event["domain"],
        "OrderId": event["orderId"],
        "State": event["state"],
        "LastState": event["lastState"],
        "LastChange": event["lastChange"],
        "CurrentChange": event["currentChange"],
        "Origin": {"Account": config.account, "Key": config.app_key},
    }
