"""What the bridge reads: feed events, VTEX orders and ERP orders, validated at the boundary.

Everything from outside passes through these models before it reaches a URL, a log or a Redis
key: an order id that is not an order id, a malformed date or an oversized field fails
validation, and the caller quarantines the item with the reason.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

# VTEX order ids: a sequence part and a two-digit seller suffix, e.g. 1234567890123-01 or
# v70530116str-01, with a marketplace's prefix on some (SCP-880102018018-01). Nothing else may
# travel into a URL path or a Redis key.
ORDER_ID_PATTERN = r"^[A-Za-z0-9]{1,40}(?:-[A-Za-z0-9]{1,40}){0,2}-[0-9]{2}$"
STATE_PATTERN = r"^[a-z][a-z0-9-]{0,63}$"
EVENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"

OrderId = Annotated[str, Field(pattern=ORDER_ID_PATTERN)]


class FeedEvent(BaseModel):
    """One Feed v3 item. ``handle`` is opaque; only its latest value commits the item."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    event_id: str = Field(alias="eventId", pattern=EVENT_ID_PATTERN)
    handle: str = Field(min_length=1, max_length=8192)
    domain: str = Field(max_length=32)
    state: str = Field(pattern=STATE_PATTERN)
    last_state: str = Field(alias="lastState", max_length=64)
    order_id: OrderId = Field(alias="orderId")
    last_change: datetime = Field(alias="lastChange")
    current_change: datetime = Field(alias="currentChange")

    @field_validator("last_state")
    @classmethod
    def _last_state_shape(cls, value: str) -> str:
        if value and not _matches(STATE_PATTERN, value):
            raise ValueError("lastState is not a status")
        return value


def _matches(pattern: str, value: str) -> bool:
    import re

    return re.fullmatch(pattern, value) is not None


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class OrderItem(_Lenient):
    id: str
    quantity: int
    price: int
    seller: str = "1"
    name: str = ""


class InvoiceItem(_Lenient):
    id: str = ""
    quantity: int
    price: int
    item_index: int | None = Field(default=None, alias="itemIndex")


class Invoice(_Lenient):
    """An invoice as VTEX keeps it in ``packageAttachment.packages`` (or as the ERP issued it)."""

    number: str = Field(
        validation_alias=AliasChoices("invoiceNumber", "number"), min_length=1, max_length=100
    )
    value: int = Field(validation_alias=AliasChoices("invoiceValue", "value"))
    kind: str = Field(default="Output", validation_alias=AliasChoices("type", "kind"))
    issuance_date: str = Field(
        default="", validation_alias=AliasChoices("issuanceDate", "issuance_date")
    )
    items: list[InvoiceItem] = Field(default_factory=list)
    seller: str = ""
    courier: str | None = None
    tracking_number: str | None = Field(default=None, alias="trackingNumber")

    @field_validator("value", mode="before")
    @classmethod
    def _cents(cls, value: Any) -> Any:
        # VTEX's spec types it as a string of cents in requests and an integer in orders.
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return value


class CancellationRequest(_Lenient):
    id: str = Field(min_length=1, max_length=200)
    reason: str = ""
    date: str = Field(default="", alias="cancellationRequestDate")
    denied_by_seller: bool = Field(default=False, alias="deniedBySeller")


class CancellationData(_Lenient):
    """``cancellationData``: PascalCase in VTEX's spec, camelCase in its guides: both parse."""

    requested_by_user: bool | None = None
    reason: str | None = None
    cancellation_date: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _any_casing(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        lowered = {k[:1].lower() + k[1:]: v for k, v in data.items()}
        return {
            "requested_by_user": lowered.get("requestedByUser"),
            "reason": lowered.get("reason"),
            "cancellation_date": lowered.get("cancellationDate"),
        }


class VtexOrder(_Lenient):
    """The order as VTEX has it now: the truth every decision starts from."""

    order_id: OrderId = Field(alias="orderId")
    status: str
    value: int = 0
    last_change: str = Field(default="", alias="lastChange")
    items: list[OrderItem] = Field(default_factory=list)
    sellers: list[str] = Field(default_factory=list)
    packages: list[Invoice] = Field(default_factory=list)
    cancellation_requests: list[CancellationRequest] = Field(default_factory=list)
    cancellation_data: CancellationData | None = None
    allow_cancellation: bool | None = Field(default=None, alias="allowCancellation")

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        attachment = data.get("packageAttachment") or {}
        data["packages"] = attachment.get("packages") or [] if isinstance(attachment, dict) else []
        data["sellers"] = [
            s.get("id") if isinstance(s, dict) else s for s in (data.get("sellers") or [])
        ]
        data["cancellation_requests"] = data.get("cancellationRequests") or []
        data["cancellation_data"] = data.get("cancellationData")
        return data

    @property
    def output_invoices(self) -> list[Invoice]:
        return [p for p in self.packages if p.kind == "Output"]

    @property
    def invoiced(self) -> bool:
        """Any Output invoice on VTEX: the order can no longer be cancelled."""
        return bool(self.output_invoices) or self.status == "invoiced"

    def open_cancellation_request(self) -> CancellationRequest | None:
        if self.status == "canceled":
            return None
        return next((r for r in self.cancellation_requests if not r.denied_by_seller), None)


class FulfilmentState(StrEnum):
    NEW = "new"
    PICKING = "picking"
    PACKED = "packed"
    DISPATCHED = "dispatched"
    HELD = "held"
    CANCELLED = "cancelled"


class ErpOrder(_Lenient):
    """The ERP's record of an order: its fulfilment state and its invoices."""

    order_id: OrderId = Field(alias="orderId")
    state: FulfilmentState
    released: bool = False
    invoices: list[Invoice] = Field(default_factory=list)

    @property
    def dispatched(self) -> bool:
        return self.state is FulfilmentState.DISPATCHED

    @property
    def waiting_for_release(self) -> bool:
        return self.state in (FulfilmentState.PACKED, FulfilmentState.HELD) and not self.released
