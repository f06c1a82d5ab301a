"""The ERP port over the REST contract in the README ("The ERP contract").

One :class:`requests.Session` per adapter, explicit ``(connect, read)`` timeouts, no retries
here: a failure raises an error of :mod:`bridge.erp.errors` and the task decides whether to retry.
Order ids are validated before they reach a URL; answers are validated into the domain's models.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from pydantic import SecretStr, ValidationError

from bridge.domain.fencing import ensure_still_held, token_for
from bridge.domain.models import ORDER_ID_PATTERN, ErpOrder, Invoice, VtexOrder
from bridge.erp.errors import ErpBadResponse, ErpTransientError, error_for
from bridge.erp.loader import ErpConfig

log = logging.getLogger(__name__)

_ORDER_ID = re.compile(ORDER_ID_PATTERN)
FENCE_HEADER = "X-Fencing-Token"
_OK = (200, 201)


class _BearerAuth(requests.auth.AuthBase):
    """Adds the bearer token per request, so it sits in no session state and no repr."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(token=SecretStr('**********'))"


class RestErp:
    """The store's ERP over HTTP, as :class:`~bridge.domain.ports.ErpPort` needs it.

    Every method raises :mod:`bridge.erp.errors` errors (subclasses of the domain's), and
    ``ValueError`` for an order id that is not one, before any request is made.
    """

    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        *,
        timeout: tuple[float, float] = (3.05, 10.0),
        session: requests.Session | None = None,
    ) -> None:
        self._base_url = _checked_base_url(base_url)
        if not token.get_secret_value().strip():
            raise ValueError("the ERP token is empty: set ERP_TOKEN to the ERP's bearer token")
        if len(timeout) != 2 or not all(t > 0 for t in timeout):
            raise ValueError(f"the ERP timeout must be two positive seconds, got {timeout!r}")
        self._timeout = (float(timeout[0]), float(timeout[1]))
        self._auth = _BearerAuth(token)
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()

    @classmethod
    def from_config(cls, config: ErpConfig) -> RestErp:
        return cls(config.base_url, config.token, timeout=config.timeout)

    # -- the port ---------------------------------------------------------------------------

    def get_order(self, order_id: str) -> ErpOrder | None:
        """The ERP's record of the order, or None when the ERP answers 404."""
        path = _order_path(order_id)
        # The read carries the run's token too: the ERP then refuses the writes of every holder
        # before this one, even before this run writes anything (it may write to VTEX first).
        response = self._call("GET", path, ok=(200, 404), order_id=order_id)
        if response.status_code == 404:
            return None
        data = self._json(response)
        try:
            order = ErpOrder.model_validate(data)
        except ValidationError as exc:
            raise ErpBadResponse(
                f"the ERP's answer to GET {path} is not an order as the contract describes it "
                f"({exc.error_count()} validation errors, first: {_first_error(exc)})",
                status=response.status_code,
            ) from None
        if order.order_id != order_id:
            raise ErpBadResponse(
                f"the ERP answered GET {path} with another order: check the ERP's routing",
                status=response.status_code,
            )
        return order

    def import_order(self, order: VtexOrder) -> None:
        """Import the order with its items (the ERP answers 201 when new, 200 when there)."""
        body = {
            "items": [
                {"id": i.id, "quantity": i.quantity, "price": i.price, "seller": i.seller}
                for i in order.items
            ]
        }
        self._call("PUT", _order_path(order.order_id), json=body, order_id=order.order_id)

    def cancel_order(self, order_id: str) -> None:
        """Stop the order; :class:`~bridge.erp.errors.ErpConflict` once it is dispatched."""
        self._call("POST", _order_path(order_id, "cancel"), order_id=order_id)

    def hold_shipment(self, order_id: str) -> None:
        self._call("POST", _order_path(order_id, "hold"), order_id=order_id)

    def release_shipment(self, order_id: str) -> None:
        self._call("POST", _order_path(order_id, "release"), order_id=order_id)

    def pending_shipments(self) -> list[str]:
        """Order ids packed (or held) and waiting for release; ids that are not ids are dropped."""
        path = "/shipments/pending"
        data = self._json(self._call("GET", path))
        ids = data.get("orderIds") if isinstance(data, dict) else None
        if not isinstance(ids, list):
            raise ErpBadResponse(f"the ERP's answer to GET {path} has no orderIds list")
        valid = [i for i in ids if isinstance(i, str) and _ORDER_ID.fullmatch(i)]
        if len(valid) != len(ids):
            # Not logged by value: what is not an order id must not reach a log either.
            log.warning(
                "the ERP listed %d pending shipment(s) whose id is not an order id; ignored",
                len(ids) - len(valid),
            )
        return valid

    def record_invoice(self, order_id: str, invoice: Invoice) -> None:
        """Record an invoice VTEX holds (idempotent by number on the ERP side)."""
        items: list[dict[str, Any]] = []
        for item in invoice.items:
            line: dict[str, Any] = {"id": item.id, "price": item.price, "quantity": item.quantity}
            if item.item_index is not None:
                line["itemIndex"] = item.item_index
            items.append(line)
        body = {
            "invoiceNumber": invoice.number,
            "invoiceValue": invoice.value,
            "seller": invoice.seller,
            "issuanceDate": invoice.issuance_date,
            "items": items,
        }
        self._call("POST", _order_path(order_id, "invoices"), json=body, order_id=order_id)

    # -- operations -------------------------------------------------------------------------

    def health(self) -> bool:
        """Whether the ERP answers ``GET /health`` with ``{"status": "ok"}``; never raises."""
        try:
            response = self._session.get(
                self._base_url + "/health", timeout=self._timeout, allow_redirects=False
            )
            body = response.json() if response.status_code == 200 else None
        except (requests.RequestException, ValueError) as exc:
            log.info("ERP health check failed: %s", type(exc).__name__)
            return False
        return isinstance(body, dict) and body.get("status") == "ok"

    def close(self) -> None:
        """Close the session, unless the caller passed it in (then it is the caller's)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> RestErp:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RestErp(base_url={self._base_url!r}, timeout={self._timeout!r})"

    # -- plumbing ---------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        ok: tuple[int, ...] = _OK,
        order_id: str | None = None,
    ) -> requests.Response:
        started = time.monotonic()
        headers = {}
        token = token_for(order_id) if order_id is not None else None
        if token is not None:
            # The run's fencing token: the ERP refuses a write from a holder older than one
            # it has already seen for this order.
            headers[FENCE_HEADER] = str(token)
            if method != "GET":
                # The token is refused only once a newer holder has written to the ERP; a newer
                # holder that wrote to VTEX alone so far is caught by the lease check.
                ensure_still_held()
        try:
            # No redirects: a redirect is a misconfigured base URL, and must not carry the token.
            response = self._session.request(
                method,
                self._base_url + path,
                json=json,
                headers=headers,
                auth=self._auth,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise ErpTransientError(
                f"the ERP did not answer {method} {path} within {self._timeout[0]:g}s to "
                f"connect / {self._timeout[1]:g}s to read ({type(exc).__name__}); retry later"
            ) from exc
        except requests.RequestException as exc:
            # Connection refused or dropped, possibly after the ERP acted: the caller re-reads
            # the ERP's record before acting again.
            raise ErpTransientError(
                f"no answer from the ERP to {method} {path} ({type(exc).__name__}); "
                "check the ERP is up and reachable, then retry"
            ) from exc
        elapsed_ms = (time.monotonic() - started) * 1000
        log.debug("ERP %s %s -> %d in %.0f ms", method, path, response.status_code, elapsed_ms)
        if response.status_code not in ok:
            raise error_for(response)
        return response

    @staticmethod
    def _json(response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            where = f"{response.request.method} {response.request.path_url}"
            raise ErpBadResponse(
                f"the ERP's answer to {where} is not JSON: check ERP_BASE_URL points at the "
                "ERP and not at a proxy or web page",
                status=response.status_code,
            ) from None


def _order_path(order_id: str, action: str | None = None) -> str:
    if not isinstance(order_id, str) or not _ORDER_ID.fullmatch(order_id):
        raise ValueError("not an order id (expected digits/letters, a dash, two digits)")
    path = f"/orders/{quote(order_id, safe='')}"
    return f"{path}/{action}" if action else path


def _checked_base_url(base_url: str) -> str:
    """The base URL without a trailing slash; http(s) only; credentials in it are refused."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("ERP_BASE_URL must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("ERP_BASE_URL must not carry credentials: set ERP_TOKEN instead")
    if parts.query or parts.fragment:
        raise ValueError("ERP_BASE_URL must not have a query or a fragment")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in error["loc"]) or "body"
    return f"{where}: {error['msg']}"
