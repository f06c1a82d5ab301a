"""The VTEX OMS adapter: :class:`VtexClient`, its models and its error tree."""

from bridge.vtex.client import OrderPage, OrderSummary, VtexClient
from bridge.vtex.errors import (
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
    VtexTransientError,
    error_for,
)
from bridge.vtex.feed import FeedConfig

__all__ = [
    "FeedConfig",
    "OrderPage",
    "OrderSummary",
    "RateLimited",
    "VtexAuthError",
    "VtexBadRequest",
    "VtexBadResponse",
    "VtexClient",
    "VtexConflict",
    "VtexConnectionError",
    "VtexError",
    "VtexNotFound",
    "VtexPermanentError",
    "VtexServerError",
    "VtexTimeout",
    "VtexTransientError",
    "error_for",
]
