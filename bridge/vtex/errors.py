"""What can go wrong when talking to VTEX's OMS, split by what the caller does next.

::

    VtexError                      every failure of a VTEX call (status, OMS code, method, path)
    ├── VtexTransientError         TransientError: retry later, not before ``retry_after``
    │   ├── VtexTimeout            no answer within the (connect, read) timeout, or 408
    │   ├── VtexConnectionError    connection refused, reset or dropped; the call MAY have
    │   │                          taken effect (VTEX did the work and the answer was lost)
    │   ├── RateLimited            429, or the shared rate budget is spent; ``retry_after`` set
    │   └── VtexServerError        5xx
    │       └── VtexBadResponse    an answer the client cannot read (not JSON, wrong shape)
    ├── VtexPermanentError         PermanentError: the call as made cannot succeed (other 4xx,
    │   │                          a redirect: the client never follows one)
    │   ├── VtexBadRequest         400
    │   ├── VtexNotFound           404, also a NotFoundError
    │   └── VtexConflict           409, also a ConflictError
    └── VtexAuthError              401/403, an AuthenticationError: an operator must fix the keys

:func:`error_for` is the one place a response becomes an error, and :func:`transport_error` the
one place a ``requests`` exception does: every retry decision follows from the class they pick.
Errors carry the method and the path, never the query, a header or a credential.
"""

from __future__ import annotations

import json
import math
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ReadTimeoutError

from bridge.domain.errors import (
    AuthenticationError,
    BridgeError,
    ConflictError,
    NotFoundError,
    PermanentError,
    TransientError,
)

# REFERENCE.md: after a 429 without Retry-After VTEX suggests backing off about a minute.
DEFAULT_RETRY_AFTER = 60.0
# A Retry-After beyond an hour is garbage or hostile; honouring it would stop the bridge for good.
MAX_RETRY_AFTER = 3600.0
_MAX_ERROR_BODY = 64 * 1024  # larger error bodies are not parsed for an OMS code
_MAX_VTEX_MESSAGE = 300


class VtexError(BridgeError):
    """A VTEX call failed. ``status`` is None when no answer came back; ``code`` and
    ``vtex_message`` come from VTEX's error body; ``retry_after`` is set on transient errors only.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
        code: str | None = None,
        vtex_message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.method = method
        self.path = path
        self.status = status
        self.code = code
        self.vtex_message = vtex_message


class VtexTransientError(VtexError, TransientError):
    """A failure that may pass: the task retries with backoff, not before ``retry_after``."""


class VtexTimeout(VtexTransientError):
    """VTEX did not answer in time. A write may still have taken effect: re-read before acting."""


class VtexConnectionError(VtexTransientError):
    """The connection failed or was dropped. A write may still have taken effect."""


class RateLimited(VtexTransientError):
    """VTEX answered 429, or the shared budget is spent: nobody calls before ``retry_after``."""

    retry_after: float


class VtexServerError(VtexTransientError):
    """VTEX failed on its side (5xx)."""


class VtexBadResponse(VtexServerError):
    """VTEX answered with a body the client cannot read (not JSON, or not the expected shape)."""


class VtexPermanentError(VtexError, PermanentError):
    """VTEX refused the call as made: retrying it unchanged cannot help."""


class VtexBadRequest(VtexPermanentError):
    """400: VTEX found the request invalid (or the order is not in a state that allows it)."""


class VtexNotFound(VtexPermanentError, NotFoundError):
    """404: no such order, invoice, feed or hook configuration."""


class VtexConflict(VtexPermanentError, ConflictError):
    """409: the call conflicts with the order's current state."""


class VtexAuthError(VtexError, AuthenticationError):
    """401/403: VTEX refused the appKey/appToken; an operator must fix the configuration."""


# What each answer means and what to do about it ({where} is "METHOD /path").
_BY_STATUS: dict[int, tuple[type[VtexError], str]] = {
    400: (
        VtexBadRequest,
        "VTEX refused the request as invalid (400) on {where}: retrying it unchanged will not help",
    ),
    401: (
        VtexAuthError,
        "VTEX did not accept the credentials (401) on {where}: set VTEX_APP_KEY and "
        "VTEX_APP_TOKEN to a valid appKey/appToken pair",
    ),
    403: (
        VtexAuthError,
        "VTEX refused the appKey/appToken (403) on {where}: check VTEX_APP_KEY/VTEX_APP_TOKEN "
        "and the key's role permissions (OMS and Feed resources)",
    ),
    404: (
        VtexNotFound,
        "VTEX has no such resource (404) on {where}: check the order id, or create the feed/hook "
        "configuration",
    ),
    408: (VtexTimeout, "VTEX timed out the request (408) on {where}: retry later"),
    409: (
        VtexConflict,
        "VTEX refused the call in the order's current state (409) on {where}: re-read the order "
        "before deciding again",
    ),
    429: (RateLimited, "VTEX is rate limiting (429) on {where}: no call before {wait:g} s"),
}


def error_for(response: requests.Response) -> VtexError:
    """The error a non-successful VTEX ``response`` stands for."""
    status = response.status_code
    method, path = _call_of(response)
    code, vtex_message = _oms_error(response)
    wait = retry_after_seconds(response.headers.get("Retry-After")) if status == 429 else None
    kind, text = _BY_STATUS.get(status) or _by_class(status)
    where = f"{method} {path}".strip() or "a VTEX call"
    said = f" (VTEX: {code or '-'}: {vtex_message})" if vtex_message else ""
    return kind(
        text.format(where=where, status=status, wait=wait or 0.0) + said,
        method=method,
        path=path,
        status=status,
        code=code,
        vtex_message=vtex_message,
        retry_after=wait,
    )


def _by_class(status: int) -> tuple[type[VtexError], str]:
    if status >= 500:
        return VtexServerError, "VTEX failed on its side ({status}) on {where}: retry later"
    if 300 <= status < 400:
        return VtexPermanentError, (
            "VTEX answered a redirect ({status}) on {where}: check VTEX_BASE_URL (the client "
            "never follows redirects, so the appToken cannot leak to another host)"
        )
    if 400 <= status < 500:
        return VtexPermanentError, "VTEX refused the call ({status}) on {where}"
    return VtexBadResponse, "unexpected answer {status} from VTEX on {where}"


def transport_error(exc: requests.RequestException, method: str, path: str) -> VtexError:
    """The error a ``requests`` exception (no usable answer at all) stands for."""
    where = f"{method} {path}"
    # requests reports a read timeout while the body streams in as a ConnectionError.
    timed_out = isinstance(exc, requests.Timeout) or any(
        isinstance(arg, ReadTimeoutError) for arg in exc.args
    )
    if timed_out:
        return VtexTimeout(
            f"VTEX did not answer {where} in time ({type(exc).__name__}): retry later; a write "
            f"may have taken effect, so re-read the order first",
            method=method,
            path=path,
        )
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return VtexBadResponse(
            f"VTEX's answer to {where} could not be decoded ({type(exc).__name__}): retry later",
            method=method,
            path=path,
        )
    # A body cut short (ChunkedEncodingError) is a connection dropped mid-answer.
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return VtexConnectionError(
            f"the connection to VTEX failed on {where} ({type(exc).__name__}): retry later; a "
            f"write may have taken effect, so re-read the order first",
            method=method,
            path=path,
        )
    # Anything else (an invalid URL, too many redirects...) is a configuration problem.
    return VtexPermanentError(
        f"the request {where} could not be made ({type(exc).__name__}): check VTEX_BASE_URL",
        method=method,
        path=path,
    )


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); 60 when absent or unreadable.

    Bounded to 0..3600 s: a past date means "now", an absurd value must not stop the bridge.
    """
    if value is None or not value.strip():
        return DEFAULT_RETRY_AFTER
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return DEFAULT_RETRY_AFTER
        if when.tzinfo is None:  # an HTTP date is always GMT
            return DEFAULT_RETRY_AFTER
        try:
            seconds = when.timestamp() - (time.time() if now is None else now)
        except (OverflowError, OSError):
            return DEFAULT_RETRY_AFTER
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _call_of(response: requests.Response) -> tuple[str, str]:
    """The method and the path (no host, no query) of the call that got ``response``."""
    request = response.request
    method = (request.method or "") if request is not None else ""
    url = (request.url if request is not None else None) or response.url or ""
    return method, urlsplit(url).path


def _oms_error(response: requests.Response) -> tuple[str | None, str | None]:
    """The OMS error code and message of ``{"error": {"code", "message"}}``, when present."""
    content = response.content
    if not content or len(content) > _MAX_ERROR_BODY:
        return None, None
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None, None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    code = error.get("code")
    message = error.get("message")
    return (
        code[:64] if isinstance(code, str) and code else None,
        " ".join(message.split())[:_MAX_VTEX_MESSAGE]
        if isinstance(message, str) and message
        else None,
    )
