"""error_for and transport_error: every VTEX answer and failure maps to the error that tells the
caller what to do next (retry later, quarantine, or fix the configuration)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from urllib3.exceptions import ReadTimeoutError

from bridge.domain.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from bridge.vtex.errors import (
    DEFAULT_RETRY_AFTER,
    MAX_RETRY_AFTER,
    RateLimited,
    VtexAuthError,
    VtexBadRequest,
    VtexBadResponse,
    VtexConflict,
    VtexConnectionError,
    VtexError,
    VtexNotFound,
    VtexPermanentError,
    VtexServerError,
    VtexTimeout,
    error_for,
    retry_after_seconds,
    transport_error,
)

URL = "https://store.vtexcommercestable.com.br/api/oms/pvt/orders/1234567890123-01?an=thing"
PATH = "/api/oms/pvt/orders/1234567890123-01"


def response(
    status: int,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    raw: bytes | None = None,
) -> requests.Response:
    """A response as requests builds it, for a call to URL."""
    answer = requests.Response()
    answer.status_code = status
    answer.headers.update(headers or {})
    answer._content = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
    answer.url = URL
    answer.request = requests.Request(
        method, URL, headers={"X-VTEX-API-AppToken": "tok-SECRET"}
    ).prepare()
    return answer


def oms_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "exception": None}}


@pytest.mark.parametrize(
    ("status", "kind", "domain_kind"),
    [
        (400, VtexBadRequest, PermanentError),
        (401, VtexAuthError, AuthenticationError),
        (403, VtexAuthError, AuthenticationError),
        (404, VtexNotFound, NotFoundError),
        (409, VtexConflict, ConflictError),
        (410, VtexPermanentError, PermanentError),
        (422, VtexPermanentError, PermanentError),
        (301, VtexPermanentError, PermanentError),
        (408, VtexTimeout, TransientError),
        (429, RateLimited, TransientError),
        (500, VtexServerError, TransientError),
        (502, VtexServerError, TransientError),
        (503, VtexServerError, TransientError),
        (200, VtexBadResponse, TransientError),
    ],
)
def test_each_status_maps_to_the_error_that_says_what_to_do_next(
    status: int, kind: type[VtexError], domain_kind: type[Exception]
) -> None:
    error = error_for(response(status))

    assert type(error) is kind
    assert isinstance(error, domain_kind)
    assert error.status == status


def test_4xx_errors_are_permanent_and_never_transient() -> None:
    for status in (400, 401, 403, 404, 409, 418):
        error = error_for(response(status))
        assert isinstance(error, PermanentError) and not isinstance(error, TransientError)


def test_a_refused_key_says_which_settings_to_check_and_never_shows_the_token() -> None:
    error = error_for(response(403, oms_error("1", "the appKey/appToken pair is not allowed")))

    text = str(error)
    assert text.startswith("VTEX refused the appKey/appToken (403)")
    assert "VTEX_APP_KEY" in text and "VTEX_APP_TOKEN" in text and "permissions" in text
    assert "tok-SECRET" not in text + repr(error)


def test_an_error_carries_the_oms_code_method_and_path_but_not_host_or_query() -> None:
    body = oms_error("OMS003", "Order status should be ready-for-handling to perform this action")

    error = error_for(response(409, body, method="POST"))

    assert (error.code, error.method, error.path) == ("OMS003", "POST", PATH)
    assert error.vtex_message == body["error"]["message"]
    assert "POST " + PATH in str(error) and "OMS003" in str(error)
    assert "an=thing" not in str(error) and "vtexcommercestable" not in str(error)


@pytest.mark.parametrize(
    "raw",
    [b"<html>Bad gateway</html>", b"[1, 2]", b'{"error": "text"}', b'{"error": {"code": 7}}', b""],
)
def test_a_body_without_vtex_error_shape_leaves_the_code_empty(raw: bytes) -> None:
    error = error_for(response(502, raw=raw))

    assert isinstance(error, VtexServerError)
    assert error.code is None and error.vtex_message is None


def test_a_huge_vtex_message_is_cut_short() -> None:
    error = error_for(response(400, oms_error("1", "x" * 10_000)))

    assert error.vtex_message is not None and len(error.vtex_message) <= 300
    assert len(str(error)) < 1000


def test_a_429_takes_retry_after_in_seconds() -> None:
    error = error_for(response(429, headers={"Retry-After": "3"}))

    assert isinstance(error, RateLimited)
    assert error.retry_after == 3.0
    assert "3 s" in str(error)


def test_a_429_takes_retry_after_as_an_http_date() -> None:
    later = datetime.now(UTC) + timedelta(seconds=120)

    error = error_for(response(429, headers={"Retry-After": format_datetime(later, usegmt=True)}))

    assert isinstance(error, RateLimited)
    assert 115 <= error.retry_after <= 121


def test_a_429_without_retry_after_backs_off_about_a_minute() -> None:
    error = error_for(response(429))

    assert isinstance(error, RateLimited)
    assert error.retry_after == DEFAULT_RETRY_AFTER == 60.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("1.5", 1.5),
        (" 7 ", 7.0),
        ("-5", 0.0),
        ("soon", DEFAULT_RETRY_AFTER),
        ("nan", DEFAULT_RETRY_AFTER),
        ("", DEFAULT_RETRY_AFTER),
        ("99999999", MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: now
    ],
)
def test_retry_after_values_are_read_safely(header: str, seconds: float) -> None:
    assert retry_after_seconds(header) == seconds


def test_a_retry_after_date_is_measured_from_now() -> None:
    now = datetime(2024, 2, 12, 12, 0, tzinfo=UTC).timestamp()

    assert retry_after_seconds("Mon, 12 Feb 2024 12:00:42 GMT", now=now) == 42.0


def test_a_redirect_tells_to_check_the_base_url() -> None:
    error = error_for(response(302, headers={"Location": "https://elsewhere.example/"}))

    assert isinstance(error, VtexPermanentError)
    assert "VTEX_BASE_URL" in str(error)


def test_a_response_without_its_request_still_maps() -> None:
    answer = requests.Response()
    answer.status_code = 404
    answer._content = b""

    error = error_for(answer)

    assert isinstance(error, VtexNotFound) and error.method == "" and error.path == ""


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (requests.ReadTimeout("read timed out"), VtexTimeout),
        (requests.ConnectTimeout("connect timed out"), VtexTimeout),
        (requests.ConnectionError(ReadTimeoutError(None, "/", "read timed out")), VtexTimeout),
        (requests.ConnectionError("connection reset by peer"), VtexConnectionError),
        (requests.exceptions.ChunkedEncodingError("connection broken"), VtexConnectionError),
        (requests.exceptions.ContentDecodingError("bad gzip"), VtexBadResponse),
        (requests.exceptions.InvalidURL("bad url"), VtexPermanentError),
    ],
)
def test_transport_failures_map_to_their_errors(
    exc: requests.RequestException, kind: type[VtexError]
) -> None:
    error = transport_error(exc, "POST", "/api/oms/pvt/orders/1234567890123-01/cancel")

    assert type(error) is kind
    assert error.status is None and error.method == "POST"
    assert "/cancel" in str(error)


def test_timeouts_and_dropped_connections_are_transient_and_warn_of_a_possible_effect() -> None:
    for exc in (requests.ReadTimeout("t"), requests.ConnectionError("reset")):
        error = transport_error(exc, "POST", "/api/oms/pvt/orders/1234567890123-01/cancel")
        assert isinstance(error, TransientError)
        assert "may have taken effect" in str(error)
