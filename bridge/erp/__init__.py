"""ERP adapters: the implementations of :class:`~bridge.domain.ports.ErpPort`.

- :mod:`bridge.erp.rest`: :class:`RestErp`, the REST contract in the README (the default).
- :mod:`bridge.erp.loader`: :class:`ErpConfig` and :func:`load_erp`, which builds the adapter
  ``ERP_ADAPTER`` names (``"module:Class"``), so a store can plug in its own.
- :mod:`bridge.erp.errors`: the adapter's error tree, subclasses of the domain's.
"""

from bridge.erp.errors import (
    ErpAuthError,
    ErpBadRequest,
    ErpBadResponse,
    ErpConflict,
    ErpError,
    ErpNotFound,
    ErpTransientError,
    error_for,
)
from bridge.erp.loader import DEFAULT_ADAPTER, ErpAdapterError, ErpConfig, load_erp
from bridge.erp.rest import RestErp

__all__ = [
    "DEFAULT_ADAPTER",
    "ErpAdapterError",
    "ErpAuthError",
    "ErpBadRequest",
    "ErpBadResponse",
    "ErpConfig",
    "ErpConflict",
    "ErpError",
    "ErpNotFound",
    "ErpTransientError",
    "RestErp",
    "error_for",
    "load_erp",
]
