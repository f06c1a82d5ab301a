"""The one way the VTEX client talks HTTP: the rate budget, the request, the error mapping.

:class:`VtexTransport` holds the ``requests.Session``, the credentials (as secrets) and the
(connect, read) timeouts; :meth:`VtexTransport._call` makes one call. It never retries: the
tasks own retries, and a VTEX write whose answer was lost must be re-checked against the order,
not blindly repeated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import requests
from pydantic import SecretStr, ValidationError

from bridge.domain.fencing import ensure_still_held
from bridge.domain.ports import RateBudget
from bridge.vtex.errors import RateLimited, VtexBadResponse, error_for, transport_error

log = logging.getLogger("bridge.vtex.client")

MAX_BODY_BYTES = 8 * 1024 * 1024  # far above any real order; a bigger answer is not read at all


class VtexTransport:
    """Session, credentials, timeouts and the shared rate budget of one VTEX appKey.

    ``budget``: the account's shared rate budget; a wait it asks for up to ``max_budget_wait``
    seconds in all is slept here, a longer one raises :class:`RateLimited` for the task to retry
    later. After a 429 the budget is paused for the ``Retry-After`` VTEX asked for.
    """

    def __init__(
        self,
        base_url: str,
        app_key: str,
        app_token: SecretStr,
        *,
        timeout: tuple[float, float] = (3.05, 10.0),
        budget: RateBudget | None = None,
        max_budget_wait: float = 2.0,
        session: requests.Session | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or parts.query
            or parts.fragment
        ):
            raise ValueError(
                "base_url must be an http(s) URL without credentials or query, e.g. "
                "https://{account}.vtexcommercestable.com.br"
            )
        if not app_key or not isinstance(app_token, SecretStr):
            raise ValueError("app_key must be set and app_token must be a pydantic SecretStr")
        self.base_url = base_url.rstrip("/")
        self._app_key = SecretStr(app_key)  # an appKey is a credential too: kept out of reprs
        self._app_token = app_token
        self.timeout = timeout
        self._budget = budget
        self._max_budget_wait = max_budget_wait
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, timeout={self.timeout!r})"

    def close(self) -> None:
        """Close the session (only one this client made itself)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(
        self,
        method: str,
        template: str,
        segments: Mapping[str, str] | None = None,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        ok: Collection[int] = (200, 201, 204),
    ) -> requests.Response:
        """One VTEX call. ``segments`` fill the path ``template`` (URL-quoted); the log names the
        template, never the URL."""
        path = template.format_map({k: quote(v, safe="") for k, v in (segments or {}).items()})
        self._wait_for_budget(method, path)
        if method != "GET":
            # VTEX takes no fencing token: check the run's lease once more, after the wait for
            # the budget, right before the write leaves.
            ensure_still_held()
        headers = {
            "X-VTEX-API-AppKey": self._app_key.get_secret_value(),
            "X-VTEX-API-AppToken": self._app_token.get_secret_value(),
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        started = time.monotonic()
        try:
            # Redirects are not followed: requests would carry the appToken header to any host.
            response = self._session.request(
                method,
                self.base_url + path,
                params=params,
                json=body,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )
            _read_capped(response)
        except requests.RequestException as exc:
            elapsed = (time.monotonic() - started) * 1000
            log.debug("VTEX %s %s: %s after %.0f ms", method, template, type(exc).__name__, elapsed)
            raise transport_error(exc, method, path) from exc
        elapsed = (time.monotonic() - started) * 1000
        log.debug("VTEX %s %s -> %d in %.0f ms", method, template, response.status_code, elapsed)
        if response.status_code in ok:
            return response
        error = error_for(response)
        if isinstance(error, RateLimited) and self._budget is not None:
            self._budget.pause(error.retry_after)
        raise error

    def _wait_for_budget(self, method: str, path: str) -> None:
        if self._budget is None:
            return
        waited = 0.0
        while (wait := self._budget.acquire()) > 0:
            if waited + wait > self._max_budget_wait:
                raise RateLimited(
                    f"the shared VTEX rate budget allows no call to {method} {path} for "
                    f"{wait:.3g} s (spent, or a 429 pause is in force): retry later",
                    retry_after=wait,
                    method=method,
                    path=path,
                )
            time.sleep(wait)  # rate limiting: the budget said when the next call is allowed
            waited += wait


def json_body(response: requests.Response, kind: type[Any], what: str) -> Any:
    """The answer's JSON, which must be a ``kind`` (VtexBadResponse otherwise)."""
    try:
        body = response.json()
    except ValueError:
        raise bad_response(response, f"VTEX's answer is not JSON; expected {what}") from None
    if not isinstance(body, kind):
        raise bad_response(
            response, f"VTEX's answer is a JSON {type(body).__name__}; expected {what}"
        )
    return body


def bad_response(response: requests.Response, message: str) -> VtexBadResponse:
    request = response.request
    method = (request.method or "") if request is not None else ""
    path = urlsplit((request.url or "") if request is not None else "").path
    return VtexBadResponse(
        f"{message} ({method} {path}, {response.status_code}): retry later",
        method=method,
        path=path,
        status=response.status_code,
    )


def first_problem(exc: ValidationError) -> str:
    """The first validation problem, without the offending input (it may be huge or hostile)."""
    errors = exc.errors(include_input=False, include_url=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _read_capped(response: requests.Response) -> None:
    """Read the body now, refusing one larger than MAX_BODY_BYTES (it would sink the worker)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            response.close()
            raise bad_response(response, f"VTEX's answer is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    response._content = b"".join(chunks)
