"""The ERP adapter's errors, mirroring the domain's tree so services never look at HTTP statuses.

- :class:`ErpTransientError` (a :class:`~bridge.domain.errors.TransientError`): a timeout, a
  connection error, a 429 (with its ``Retry-After``) or a 5xx. Retry later.
- :class:`ErpAuthError` (an :class:`~bridge.domain.errors.AuthenticationError`): 401/403, the ERP
  refused ``ERP_TOKEN``. An operator must fix the configuration.
- :class:`ErpConflict` (a :class:`~bridge.domain.errors.ConflictError`): 409, the call conflicts
  with the order's state; ``code`` is the ERP's reason, e.g. ``"dispatched"``.
- :class:`ErpNotFound` (a :class:`~bridge.domain.errors.NotFoundError`): 404.
- :class:`ErpBadRequest` (a :class:`~bridge.domain.errors.PermanentError`): any other 4xx, the ERP
  refused the call as made.
- :class:`ErpBadResponse` (a :class:`~bridge.domain.errors.PermanentError`): the ERP answered
  outside its contract (an unexpected status, a body that is not the documented JSON).

:func:`error_for` is the one place that maps an HTTP answer to one of these. Messages say what
happened and what to do; they name the method and path, never the token or a full URL.
"""

from __future__ import annotations

import math
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

import requests

from bridge.domain.errors import (
    AuthenticationError,
    BridgeError,
    ConflictError,
    NotFoundError,
    PermanentError,
    TransientError,
)

# ERP messages are quoted into our errors and logs: keep them short and on one line.
_MAX_DETAIL = 300


class ErpError(BridgeError):
    """Base of the ERP adapter's errors: ``status`` and ``code`` as the ERP answered them."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class ErpTransientError(ErpError, TransientError):
    """The ERP could not answer now (timeout, connection, 429, 5xx): retry after ``retry_after``."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        TransientError.__init__(self, message, retry_after=retry_after)
        self.status = status
        self.code = code


class ErpAuthError(ErpError, AuthenticationError):
    """The ERP refused the bearer token (401/403): check ``ERP_TOKEN``."""


class ErpConflict(ErpError, ConflictError):
    """The call conflicts with the order's state in the ERP (409); ``code`` says why."""


class ErpNotFound(ErpError, NotFoundError):
    """The ERP does not have the order (404)."""


class ErpBadRequest(ErpError, PermanentError):
    """The ERP refused the call as made (a 4xx other than 401/403/404/409/429)."""


class ErpBadResponse(ErpError, PermanentError):
    """The ERP answered outside its contract (unexpected status or body)."""


def error_for(response: requests.Response) -> ErpError:
    """The error an ERP answer that is not a success stands for."""
    status = response.status_code
    code, detail = _error_body(response)
    where = _where(response)
    said = f" ({code}: {detail})" if detail else f" ({code})" if code else ""
    if status in (401, 403):
        return ErpAuthError(
            f"the ERP refused the credentials on {where} with HTTP {status}{said}: "
            "check ERP_TOKEN (the ERP's bearer token)",
            status=status,
            code=code,
        )
    if status == 404:
        return ErpNotFound(
            f"the ERP answered 404 on {where}{said}: the order is not in the ERP",
            status=status,
            code=code,
        )
    if status == 409:
        return ErpConflict(
            f"the ERP refused {where} with 409{said}: the order's state does not allow it; "
            "read the order again and decide afresh",
            status=status,
            code=code,
        )
    if status == 429 or status >= 500 or status in (408, 425):
        retry_after = _retry_after(response)
        wait = f"; retry after {retry_after:g}s" if retry_after is not None else "; retry later"
        return ErpTransientError(
            f"the ERP could not serve {where} (HTTP {status}){said}{wait}",
            status=status,
            code=code,
            retry_after=retry_after,
        )
    if 400 <= status < 500:
        return ErpBadRequest(
            f"the ERP refused {where} with HTTP {status}{said}: the request does not meet the "
            "ERP contract; retrying it unchanged will not help",
            status=status,
            code=code,
        )
    return ErpBadResponse(
        f"the ERP answered {where} with unexpected HTTP {status}{said}: "
        "check ERP_BASE_URL and that the ERP implements the bridge's contract",
        status=status,
        code=code,
    )


def _where(response: requests.Response) -> str:
    # Method and path only: the host is configuration, and a full URL may carry credentials.
    request = response.request
    if request is None:
        return "the request"
    return f"{request.method} {request.path_url}"


def _error_body(response: requests.Response) -> tuple[str | None, str]:
    """The ERP's ``{"error": {"code", "message"}}``, sanitised; (None, "") when absent."""
    try:
        body = response.json()
    except ValueError:
        return None, ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, ""
    code = error.get("code")
    message = error.get("message")
    return (
        _clean(code, response) if isinstance(code, str) and code else None,
        _clean(message, response) if isinstance(message, str) else "",
    )


def _clean(text: str, response: requests.Response) -> str:
    """One line, bounded, and without the bearer token should the ERP ever echo it."""
    text = " ".join(text.split())[:_MAX_DETAIL]
    request = response.request
    authorization = request.headers.get("Authorization", "") if request is not None else ""
    token = authorization.removeprefix("Bearer ").strip()
    if token and len(token) >= 4:
        text = text.replace(token, "***")
    return text


def _retry_after(response: requests.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None when absent or garbled."""
    raw = response.headers.get("Retry-After", "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
