"""The reference ERP over HTTP: the contract a store implements on its ERP side.

Bearer-token auth (401 without a token, 403 with a wrong one). Errors are
``{"error": {"code", "message"}}``. See the README for the contract with examples.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, TypeGuard

from sandbox.erp import ErpError, ErpInvoice
from sandbox.httpcore import HttpError, Request, Response, Router
from sandbox.oms_api import guarded
from sandbox.world import World

Handler = Callable[[Request], Response]
ORDER = "/orders/{orderId}"


def erp_error(status: int, code: str, message: str) -> HttpError:
    return HttpError(status, {"error": {"code": code, "message": message}})


def authenticate(world: World) -> Callable[[Request], Response | None]:
    expected = f"Bearer {world.config.erp_token}".encode()

    def before(request: Request) -> Response | None:
        if request.route == "erp_health":
            return None
        got = request.headers.get("authorization")
        if not got:
            raise HttpError(
                401,
                {"error": {"code": "unauthenticated", "message": "missing bearer token"}},
                {"WWW-Authenticate": 'Bearer realm="erp"'},
            )
        if not hmac.compare_digest(got.encode(), expected):
            raise erp_error(403, "forbidden", "the bearer token is not allowed")
        world.tick_if_due()
        return None

    return before


WRITES = frozenset({"erp_import", "erp_cancel", "erp_hold", "erp_release", "erp_invoice"})


def _erp_guarded(world: World, endpoint: str, handler: Handler) -> Handler:
    def run(request: Request) -> Response:
        try:
            # The fence check and the write are one step: no other holder's request between.
            with world.lock:
                if endpoint in WRITES:
                    _check_fence(world, request)
                elif endpoint == "erp_get":
                    _note_fence(world, request)
                return handler(request)
        except ErpError as exc:
            raise HttpError(exc.status, exc.body()) from None

    return guarded(world, endpoint, run)


def _check_fence(world: World, request: Request) -> None:
    """The contract's fencing: a write carrying a token lower than the highest one seen for the
    order comes from a holder whose lease expired, and is refused (409 stale-token)."""
    raw = request.headers.get("x-fencing-token")
    if raw is None:
        return
    if not raw.isdigit() or len(raw) > 30:
        raise erp_error(400, "invalid", "X-Fencing-Token must be a non-negative integer")
    world.erp_fence(request.params["orderId"], int(raw))


def _note_fence(world: World, request: Request) -> None:
    """A read carrying a token is never refused, but raises the order's highest token: a holder
    that has only read the order so far already fences off the holders before it."""
    raw = request.headers.get("x-fencing-token")
    if raw is None:
        return
    if not raw.isdigit() or len(raw) > 30:
        raise erp_error(400, "invalid", "X-Fencing-Token must be a non-negative integer")
    world.erp_fence(request.params["orderId"], int(raw), refuse=False)


def _is_int(value: object) -> TypeGuard[int]:
    """A JSON integer: ``true``/``false`` are bools, which Python counts as ints."""
    return isinstance(value, int) and not isinstance(value, bool)


def _items(body: Any) -> list[dict[str, Any]]:
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise erp_error(400, "invalid", "items must be a non-empty list")
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise erp_error(400, "invalid", "each item needs an id, quantity and price")
        quantity, price = item.get("quantity"), item.get("price")
        if not _is_int(quantity) or not _is_int(price) or quantity <= 0 or price < 0:
            raise erp_error(
                400,
                "invalid",
                "quantity must be a positive integer and price an integer >= 0 (cents)",
            )
        out.append(
            {
                "id": item["id"],
                "quantity": quantity,
                "price": price,
                "seller": str(item.get("seller", "1")),
            }
        )
    return out


def routes(world: World) -> Router:
    r = Router()

    def add(method: str, pattern: str, endpoint: str, handler: Handler) -> None:
        r.add(method, pattern, endpoint, _erp_guarded(world, endpoint, handler))

    def order_json(order_id: str) -> dict[str, Any]:
        with world.lock:
            return world.erp.get(order_id).to_json()

    def import_order(request: Request) -> Response:
        order_id = request.params["orderId"]
        body = request.json()
        if isinstance(body, dict) and body.get("orderId") not in (None, order_id):
            raise erp_error(400, "invalid", "orderId in the body differs from the path")
        created = world.erp_import(order_id, _items(body))
        return Response.json(order_json(order_id), 201 if created else 200)

    def get_order(request: Request) -> Response:
        return Response.json(order_json(request.params["orderId"]))

    def action(do: Callable[[str], None]) -> Handler:
        def handler(request: Request) -> Response:
            order_id = request.params["orderId"]
            do(order_id)
            return Response.json(order_json(order_id))

        return handler

    def pending(_: Request) -> Response:
        with world.lock:
            return Response.json({"orderIds": world.erp.packed_waiting()})

    def record_invoice(request: Request) -> Response:
        order_id = request.params["orderId"]
        body = request.json()
        number = body.get("invoiceNumber") if isinstance(body, dict) else None
        if not isinstance(number, str) or not number.strip():
            raise erp_error(400, "invalid", "invoiceNumber is required")
        value = body.get("invoiceValue")
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise erp_error(400, "invalid", "invoiceValue must be a positive number of cents")
        lines = body.get("items") or []
        if not isinstance(lines, list):
            raise erp_error(400, "invalid", "items must be a list")
        invoice = ErpInvoice(
            number=number,
            seller=str(body.get("seller", "")),
            value=value,
            items=lines,
            issued_at=str(body.get("issuanceDate", "")),
            source="vtex",
        )
        with world.lock:  # check and record at once: two racing posts get one 201
            exists = world.erp.get(order_id).invoice(number) is not None
            world.erp_record_invoice(order_id, invoice)
            return Response.json(order_json(order_id), 200 if exists else 201)

    def health(_: Request) -> Response:
        return Response.json({"status": "ok"})

    add("PUT", ORDER, "erp_import", import_order)
    add("GET", ORDER, "erp_get", get_order)
    add("POST", ORDER + "/cancel", "erp_cancel", action(world.erp_cancel))
    add("POST", ORDER + "/hold", "erp_hold", action(world.erp_hold))
    add("POST", ORDER + "/release", "erp_release", action(world.erp_release))
    add("GET", "/shipments/pending", "erp_packed", pending)
    add("POST", ORDER + "/invoices", "erp_invoice", record_invoice)
    r.add("GET", "/health", "erp_health", health)
    return r
