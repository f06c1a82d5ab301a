"""The effects the bridge can have, as values. Decisions return them; services carry them out.

Each action names its ledger key: the effect it stands for, done at most once per order (per
invoice number, per cancellation request).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.domain.models import Invoice


@dataclass(frozen=True)
class ImportToErp:
    key = "erp.import"


@dataclass(frozen=True)
class StartHandling:
    key = "vtex.start_handling"


@dataclass(frozen=True)
class StopInErp:
    """Cancel the order in the ERP, so it never ships."""

    key = "erp.cancel"


@dataclass(frozen=True)
class CancelOnVtex:
    reason: str
    key = "vtex.cancel"


@dataclass(frozen=True)
class DenyCancellation:
    request_id: str
    reason: str

    @property
    def key(self) -> str:
        return f"vtex.deny:{self.request_id}"


@dataclass(frozen=True)
class HoldShipment:
    key = "erp.hold"


@dataclass(frozen=True)
class ReleaseShipment:
    key = "erp.release"


@dataclass(frozen=True)
class PostInvoice:
    """Post an ERP invoice to VTEX."""

    invoice: Invoice

    @property
    def key(self) -> str:
        return f"vtex.invoice:{self.invoice.number}"


@dataclass(frozen=True)
class RecordInvoiceInErp:
    """Record in the ERP an invoice VTEX holds (another seller's, say)."""

    invoice: Invoice

    @property
    def key(self) -> str:
        return f"erp.invoice:{self.invoice.number}"


Action = (
    ImportToErp
    | StartHandling
    | StopInErp
    | CancelOnVtex
    | DenyCancellation
    | HoldShipment
    | ReleaseShipment
    | PostInvoice
    | RecordInvoiceInErp
)


@dataclass(frozen=True)
class Decision:
    """What must happen for an order now, and why (for the order's history)."""

    actions: tuple[Action, ...]
    reason: str
