"""VTEX's OMS over HTTP: the feed, the hook configuration, orders, and the sandbox's own controls.

Routes carry fault names (see :mod:`sandbox.faults`); :func:`guarded` applies the fault plan
around each handler: latency, a 429/500/503 instead of the work, or the work done and the answer
lost. Authentication is VTEX's: ``X-VTEX-API-AppKey`` / ``X-VTEX-API-AppToken``, 401 when missing,
403 when wrong.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from typing import Any, TypeGuard

from sandbox import documents
from sandbox.faults import FaultPlan
from sandbox.hooks import PingFailed, ping
from sandbox.httpcore import DropConnection, HttpError, Request, Response, Router, error_body
from sandbox.oms import Invoice, OmsError
from sandbox.world import HookConfig, World

Handler = Callable[[Request], Response]
MAX_HANDLES = 10_000  # VTEX documents no limit; this only bounds one request body
MAX_PAGES = 30


def bad_request(message: str) -> HttpError:
    return HttpError(400, error_body("1", message))


def _is_int(value: object) -> TypeGuard[int]:
    """A JSON integer (``true`` is not one, although Python's bool is an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seconds(value: object) -> TypeGuard[float]:
    """A finite JSON number: a NaN or infinite advance would wreck the clock for good."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def guarded(world: World, endpoint: str, handler: Handler) -> Handler:
    """Apply the world's fault plan for ``endpoint`` around ``handler``."""

    def run(request: Request) -> Response:
        with world.lock:
            decision = world.faults.decide(endpoint, world.rng)
            if decision.status is not None:
                world.events[f"fault.{decision.status}"] += 1
            elif decision.drop_after_effect:
                world.events["fault.drop"] += 1
        if decision.delay > 0:
            time.sleep(decision.delay)  # injected latency, the fault being simulated
        if decision.status is not None:
            headers = {}
            if decision.status == 429 and decision.retry_after is not None:
                headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
            raise HttpError(
                decision.status,
                error_body(str(decision.status), f"sandbox fault on {endpoint}"),
                headers,
            )
        try:
            response = handler(request)
        except OmsError as exc:
            raise HttpError(exc.status, exc.body()) from None
        if decision.drop_after_effect:
            raise DropConnection
        return response

    return run


def authenticate(world: World) -> Callable[[Request], Response | None]:
    key = world.config.app_key.encode()
    token = world.config.app_token.encode()

    def before(request: Request) -> Response | None:
        if request.route == "health":
            return None
        got_key = request.headers.get("x-vtex-api-appkey")
        got_token = request.headers.get("x-vtex-api-apptoken")
        if not got_key or not got_token:
            raise HttpError(
                401, error_body("1", "missing X-VTEX-API-AppKey or X-VTEX-API-AppToken header")
            )
        if not (
            hmac.compare_digest(got_key.encode(), key)
            and hmac.compare_digest(got_token.encode(), token)
        ):
            raise HttpError(403, error_body("1", "the appKey/appToken pair is not allowed"))
        world.tick_if_due()
        return None

    return before


def _feed_filter(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("filter"), dict):
        raise bad_request("body must be an object with 'filter' and 'queue'")
    flt = body["filter"]
    kind = flt.get("type")
    if kind not in ("FromWorkflow", "FromOrders"):
        raise bad_request("filter.type must be FromWorkflow or FromOrders")
    has_status, has_expression = "status" in flt, "expression" in flt
    if (kind == "FromWorkflow" and has_expression) or (kind == "FromOrders" and has_status):
        raise HttpError(
            409,
            error_body("1", "a filter cannot mix FromWorkflow status and FromOrders expression"),
        )
    if kind == "FromWorkflow" and not (
        isinstance(flt.get("status"), list) and all(isinstance(s, str) for s in flt["status"])
    ):
        raise bad_request("filter.status must be a list of status strings")
    if kind == "FromOrders" and not isinstance(flt.get("expression"), str):
        raise bad_request("filter.expression must be a JSONata expression string")
    return dict(flt)


def routes(world: World) -> Router:
    r = Router()

    def add(method: str, pattern: str, endpoint: str, handler: Handler) -> None:
        r.add(method, pattern, endpoint, guarded(world, endpoint, handler))

    # -- feed ------------------------------------------------------------------------------

    def get_feed_config(_: Request) -> Response:
        status = world.feed_status()
        if status is None:
            raise HttpError(404, error_body("OMS007", "no feed configuration for this appKey"))
        return Response.json(status)

    def post_feed_config(request: Request) -> Response:
        body = request.json()
        flt = _feed_filter(body)
        queue = body.get("queue")
        queue = {} if queue is None else queue
        if not isinstance(queue, dict):
            raise bad_request("queue must be an object")
        visibility = queue.get("visibilityTimeoutInSeconds", 30)
        retention = queue.get("MessageRetentionPeriodInSeconds", 345_600)
        if not _is_int(visibility) or not 0 < visibility <= 43_200:
            raise bad_request("queue.visibilityTimeoutInSeconds must be an integer 1..43200")
        if not _is_int(retention) or not 345_600 <= retention <= 1_209_600:
            raise bad_request(
                "queue.MessageRetentionPeriodInSeconds must be an integer 345600..1209600"
            )
        world.configure_feed(
            {
                "filter": flt,
                "queue": {
                    "visibilityTimeoutInSeconds": visibility,
                    "MessageRetentionPeriodInSeconds": retention,
                },
            }
        )
        world.on_consumer_configured()
        return Response.empty(200)

    def delete_feed_config(_: Request) -> Response:
        if not world.delete_feed():
            raise HttpError(404, error_body("OMS007", "no feed configuration for this appKey"))
        return Response.empty(200)

    def get_feed(request: Request) -> Response:
        raw = request.arg("maxlot")
        try:
            maxlot = 10 if raw is None else int(raw)
        except ValueError:
            raise bad_request("maxlot must be an integer from 1 to 10") from None
        if not 1 <= maxlot <= 10:
            raise bad_request("maxlot must be an integer from 1 to 10")
        if world.feed_config is None:
            raise HttpError(404, error_body("OMS007", "no feed configuration for this appKey"))
        with world.lock:
            junk = world.faults.malformed(world.rng)
        return Response.json(world.read_feed(maxlot, junk))

    def commit_feed(request: Request) -> Response:
        body = request.json()
        handles = body.get("handles") if isinstance(body, dict) else None
        if not isinstance(handles, list) or not all(isinstance(h, str) for h in handles):
            raise bad_request('body must be {"handles": ["..."]}')
        if len(handles) > MAX_HANDLES:
            raise bad_request(f"at most {MAX_HANDLES} handles per commit")
        world.commit_feed(handles)
        return Response.empty(200)

    add("GET", "/api/orders/feed/config", "feed_config", get_feed_config)
    add("POST", "/api/orders/feed/config", "feed_config", post_feed_config)
    add("DELETE", "/api/orders/feed/config", "feed_config", delete_feed_config)
    add("GET", "/api/orders/feed", "feed_get", get_feed)
    add("POST", "/api/orders/feed", "feed_commit", commit_feed)

    # -- hook ------------------------------------------------------------------------------

    def hook_json(hook: HookConfig) -> dict[str, Any]:
        return {"filter": hook.filter, "hook": {"url": hook.url, "headers": hook.headers}}

    def get_hook(_: Request) -> Response:
        hook = world.hook_config
        if hook is None:
            raise HttpError(404, error_body("OMS008", "no hook configuration for this appKey"))
        return Response.json(hook_json(hook))

    def post_hook(request: Request) -> Response:
        body = request.json()
        flt = _feed_filter(
            body
            if isinstance(body, dict) and "queue" in body
            else {**(body if isinstance(body, dict) else {}), "queue": {}}
        )
        hook = body.get("hook")
        if not isinstance(hook, dict) or not isinstance(hook.get("url"), str):
            raise bad_request("hook.url is required")
        headers = hook.get("headers") or {}
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise bad_request("hook.headers must map header names to strings")
        if not hook["url"].startswith(("http://", "https://")):
            raise bad_request("hook.url must be an http(s) URL")
        try:
            ping(hook["url"], headers, world.config.hook_timeout_real)
        except PingFailed as exc:
            raise bad_request(f"hook ping failed: {exc}") from None
        config = HookConfig(hook["url"], headers, flt)
        world.set_hook(config)
        world.on_consumer_configured()
        # VTEX's OpenAPI file types this answer as a notification body; the real API answers the
        # saved configuration's acceptance with an empty 200, and so do we.
        return Response.empty(200)

    def delete_hook(_: Request) -> Response:
        if world.hook_config is None:
            raise HttpError(404, error_body("OMS008", "no hook configuration for this appKey"))
        world.set_hook(None)
        return Response.empty(200)

    add("GET", "/api/orders/hook/config", "hook_config", get_hook)
    add("POST", "/api/orders/hook/config", "hook_config", post_hook)
    add("DELETE", "/api/orders/hook/config", "hook_config", delete_hook)

    # -- orders ----------------------------------------------------------------------------

    def get_order(request: Request) -> Response:
        delay = world.read_delay(request.params["orderId"])
        if delay:
            time.sleep(delay)  # an order made slow on purpose (POST /_sandbox/orders/{id}/slow)
        return Response.json(world.read_order(request.params["orderId"]))

    def list_orders(request: Request) -> Response:
        raw_status = request.arg("f_status")
        statuses = {s for s in raw_status.split(",") if s} if raw_status else None
        try:
            page = int(request.arg("page") or 1)
            per_page = int(request.arg("per_page") or 15)
        except ValueError:
            raise bad_request("page and per_page must be integers") from None
        if not 1 <= per_page <= 100:
            raise bad_request("per_page must be from 1 to 100")
        if not 1 <= page <= MAX_PAGES:
            raise bad_request(f"page must be from 1 to {MAX_PAGES}")
        found = world.list_orders(statuses)
        chunk = found[(page - 1) * per_page : page * per_page]
        with world.lock:
            listed = [documents.list_item_json(o) for o in chunk]
            page_json = documents.list_page(found, listed, page, per_page)
        return Response.json(page_json)

    def start_handling(request: Request) -> Response:
        world.start_handling(request.params["orderId"])
        return Response.empty(204)

    def cancel(request: Request) -> Response:
        body = request.json() if request.body else {}
        if not isinstance(body, dict):
            raise bad_request("body must be an object")
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise bad_request("reason must be a string")
        order_id = request.params["orderId"]
        receipt = world.cancel(order_id, reason)
        return Response.json(receipt_json(world, order_id, receipt))

    def deny(request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("cancellationRequestId"), str):
            raise bad_request("cancellationRequestId is required")
        reason = body.get("denyReason", "")
        if not isinstance(reason, str) or not reason:
            raise bad_request("denyReason is required")
        world.deny(request.params["orderId"], body["cancellationRequestId"], reason)
        return Response.empty(200)

    def invoice(request: Request) -> Response:
        order_id = request.params["orderId"]
        receipt = world.post_invoice(order_id, parse_invoice(request.json(), world.now()))
        return Response.json(receipt_json(world, order_id, receipt))

    def tracking(request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not all(
            isinstance(v, str) or v is None for v in body.values()
        ):
            raise bad_request("tracking fields must be strings or null")
        if not isinstance(body.get("trackingNumber"), str):
            raise bad_request("trackingNumber is required")
        body = {k: v for k, v in body.items() if v is not None}
        order_id = request.params["orderId"]
        receipt = world.track(order_id, request.params["invoiceNumber"], body)
        return Response.json(receipt_json(world, order_id, receipt))

    order = "/api/oms/pvt/orders/{orderId}"
    add("GET", order, "get_order", get_order)
    add("GET", "/api/oms/pvt/orders", "list_orders", list_orders)
    add("POST", order + "/start-handling", "start_handling", start_handling)
    add("POST", order + "/cancel", "cancel", cancel)
    add("POST", "/api/orders/pvt/document/{orderId}/deny-cancellation-request", "deny", deny)
    add("POST", order + "/invoice", "invoice", invoice)
    add("PATCH", order + "/invoice/{invoiceNumber}", "tracking", tracking)

    # -- the sandbox's own controls ---------------------------------------------------------

    def health(_: Request) -> Response:
        return Response.json({"status": "ok", "started": world.started_at is not None})

    def report(_: Request) -> Response:
        return Response.json(world.report())

    def get_faults(_: Request) -> Response:
        return Response.json(world.faults.to_json())

    def set_faults(request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise bad_request('body must be {"spec": "..."} or {"rules": {...}}')
        try:
            plan = FaultPlan.from_json(body)
        except (ValueError, TypeError) as exc:
            raise bad_request(str(exc)) from None
        with world.lock:
            world.faults = plan
        return Response.json(plan.to_json())

    def start(_: Request) -> Response:
        return Response.json({"started": world.start()})

    def clock(request: Request) -> Response:
        body = request.json()
        store = body.get("advance", 0) if isinstance(body, dict) else None
        feed = body.get("advance_feed", 0) if isinstance(body, dict) else None
        if not _is_seconds(store) or not _is_seconds(feed):
            raise bad_request("advance and advance_feed must be numbers of seconds")
        if store < 0 or feed < 0:
            raise bad_request("time only moves forward")
        world.clock.advance(store, real_seconds=feed)
        world.tick()
        return Response.json({"now": world.now()})

    def shopper_cancel(request: Request) -> Response:
        body = request.json() if request.body else {}
        reason = body.get("reason", "shopper request") if isinstance(body, dict) else ""
        if not isinstance(reason, str):
            raise bad_request("reason must be a string")
        try:
            result = world.shopper_cancel(request.params["orderId"], reason)
        except OmsError as exc:
            raise HttpError(exc.status, exc.body()) from None
        return Response.json({"result": result})

    def ledger(request: Request) -> Response:
        return Response.json({"effects": world.effects_of(request.arg("orderId"))})

    r.add("GET", "/_sandbox/health", "health", health)
    r.add("GET", "/_sandbox/report", "report", report)
    r.add("GET", "/_sandbox/faults", "faults", get_faults)
    r.add("POST", "/_sandbox/faults", "faults", set_faults)
    r.add("POST", "/_sandbox/start", "start", start)
    r.add("POST", "/_sandbox/clock", "clock", clock)
    r.add("POST", "/_sandbox/orders/{orderId}/shopper-cancel", "shopper_cancel", shopper_cancel)

    def slow(request: Request) -> Response:
        body = request.json()
        seconds = body.get("seconds") if isinstance(body, dict) else None
        duration = body.get("for") if isinstance(body, dict) else None
        numbers = (seconds, duration)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
            raise bad_request('body must be {"seconds": N, "for": N}')
        if not (0 <= seconds <= 60 and 0 <= duration <= 3600):  # type: ignore[operator]
            raise bad_request("seconds must be 0..60 and for 0..3600")
        try:
            world.slow_down(request.params["orderId"], float(seconds), float(duration))  # type: ignore[arg-type]
        except OmsError as exc:
            raise HttpError(exc.status, exc.body()) from None
        return Response.json({"orderId": request.params["orderId"], "seconds": seconds})

    r.add("POST", "/_sandbox/orders/{orderId}/slow", "slow", slow)
    r.add("GET", "/_sandbox/ledger", "ledger", ledger)
    return r


def receipt_json(world: World, order_id: str, receipt: str) -> dict[str, str]:
    return {"date": documents.iso(world.now()), "orderId": order_id, "receipt": receipt}


def parse_invoice(body: Any, now: float) -> Invoice:
    """Validate an invoice notification as VTEX does; invoiceValue may be a string or a number."""
    if not isinstance(body, dict):
        raise bad_request("body must be an invoice object")
    kind = body.get("type")
    if kind not in ("Output", "Input"):
        raise bad_request("type must be Output or Input")
    number = body.get("invoiceNumber")
    if not isinstance(number, str) or not number.strip() or len(number) > 100:
        raise bad_request("invoiceNumber must be a non-empty string")
    raw_value = body.get("invoiceValue")
    try:
        value = int(raw_value) if isinstance(raw_value, int | str) else -1
    except ValueError:
        value = -1
    if value <= 0 or isinstance(raw_value, bool):
        raise bad_request("invoiceValue must be a positive number of cents")
    issuance = body.get("issuanceDate")
    if not isinstance(issuance, str) or not issuance:
        raise bad_request("issuanceDate is required")
    items = body.get("items")
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("id"), str) for i in items
    ):
        raise bad_request("items must be a list of {id, price, quantity}")
    if not all(
        isinstance(i.get("price"), int) and isinstance(i.get("quantity"), int) for i in items
    ):
        raise bad_request("each invoice item needs an integer price (cents) and quantity")
    lines = [{"id": i["id"], "price": i["price"], "quantity": i["quantity"]} for i in items]
    return Invoice(
        number=number,
        value=value,
        kind=kind,
        issuance_date=issuance,
        items=lines,
        courier=str(body.get("courier") or ""),
        tracking_number=str(body.get("trackingNumber") or ""),
        tracking_url=str(body.get("trackingUrl") or ""),
        invoice_key=body.get("invoiceKey") if isinstance(body.get("invoiceKey"), str) else None,
        invoice_url=str(body.get("invoiceUrl") or ""),
    )
