"""The errors the domain knows, split by what the caller does next.

- :class:`TransientError`: try again later (timeouts, connection errors, 429, 5xx); carries the
  ``retry_after`` the other side asked for, when it asked.
- :class:`PermanentError`: retrying the same call cannot help (a 4xx); the work goes to quarantine.
- :class:`AuthenticationError`: credentials are missing or refused; an operator must act.
- :class:`StaleLockError`: this worker's lease on the order was lost; it must stop writing.

Adapters (VTEX client, ERP adapters, Redis state) raise subclasses of these, so services and
tasks never look at HTTP status codes.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class TransientError(BridgeError):
    """A failure that may pass: retry with backoff, not before ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(BridgeError):
    """The other side refused the call as made; retrying it unchanged cannot help."""


class AuthenticationError(PermanentError):
    """Credentials missing or refused (HTTP 401/403): fix the configuration."""


class NotFoundError(PermanentError):
    """The thing asked for does not exist."""


class ConflictError(PermanentError):
    """The call conflicts with the current state (e.g. an ERP cancel after dispatch)."""


class StaleLockError(BridgeError):
    """The order's lease expired and another worker holds it: a stale holder must not write."""
