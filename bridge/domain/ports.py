"""The ports the services use. Adapters implement them: the VTEX client (``bridge.vtex``), the ERP
adapters (``bridge.erp``), the Redis-backed state (``bridge.state``); unit tests use fakes.

Every method may raise the errors of :mod:`bridge.domain.errors`: transient ones are retried by
the caller, permanent ones end in quarantine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from bridge.domain.models import ErpOrder, Invoice, VtexOrder


class VtexPort(Protocol):
    """VTEX's OMS, as the order work needs it."""

    def get_order(self, order_id: str) -> VtexOrder:
        """The order as VTEX has it now (NotFoundError when it has none)."""
        ...

    def start_handling(self, order_id: str) -> bool:
        """Start handling; False when VTEX says it already started (409 OMS003)."""
        ...

    def cancel_order(self, order_id: str, reason: str) -> None: ...

    def deny_cancellation(self, order_id: str, request_id: str, reason: str) -> None: ...

    def post_invoice(self, order_id: str, invoice: Invoice) -> None: ...


class ErpPort(Protocol):
    """The store's ERP: what a store implements to plug its own (see README, "ERP contract")."""

    def get_order(self, order_id: str) -> ErpOrder | None:
        """The ERP's record of the order, or None when the ERP does not have it."""
        ...

    def import_order(self, order: VtexOrder) -> None:
        """Import the order (idempotent by order id)."""
        ...

    def cancel_order(self, order_id: str) -> None:
        """Stop the order; ConflictError once it is with the carrier."""
        ...

    def hold_shipment(self, order_id: str) -> None: ...

    def release_shipment(self, order_id: str) -> None: ...

    def pending_shipments(self) -> list[str]:
        """Order ids packed (or held) and waiting for release."""
        ...

    def record_invoice(self, order_id: str, invoice: Invoice) -> None:
        """Record an invoice VTEX holds (idempotent by invoice number)."""
        ...


class Lease(Protocol):
    """A held per-order lock. ``token`` is the fencing token, larger for every new holder."""

    token: int

    def ensure(self) -> None:
        """Raise StaleLockError when the lease is no longer ours."""
        ...


class LedgerPort(Protocol):
    """Effects already done per order: the fast path of the at-most-once guard."""

    def done(self, order_id: str) -> set[str]: ...

    def record(self, order_id: str, key: str, token: int) -> None:
        """Record an effect; refused (StaleLockError) unless ``token`` still holds the order."""
        ...


class HistoryPort(Protocol):
    """The order's history of decisions and effects, for operators."""

    def add(self, order_id: str, entry: Mapping[str, Any]) -> None: ...


class RateBudget(Protocol):
    """One VTEX rate budget for the whole account, shared by every worker."""

    def acquire(self) -> float:
        """Take one call: 0.0 when granted, else the seconds to wait before asking again
        (also while a 429 pause is in force)."""
        ...

    def pause(self, seconds: float) -> None:
        """After a 429: no worker calls VTEX before ``seconds`` have passed."""
        ...
