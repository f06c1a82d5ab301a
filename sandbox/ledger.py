"""The sandbox's ledger: every effect applied on VTEX or the ERP, and the rules they must keep.

The ledger is the history a checker reads. Effects that must happen at most once (per order, or
per invoice number) are declared in :data:`ONCE`; recording one of them a second time is a
violation. Other rules (a shipment released while the order was cancelled, an order left in
``ready-for-handling`` past its deadline...) are reported by the world through
:meth:`Ledger.violate`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Effects that may be applied at most once per key (the order id, or order id + invoice number).
ONCE = frozenset(
    {
        "vtex.start_handling",
        "vtex.cancel",
        "vtex.deny",
        "vtex.invoice",
        "erp.import",
        "erp.cancel",
        "erp.hold",
        "erp.release",
        "erp.invoice_recorded",
    }
)


@dataclass
class Violation:
    rule: str
    order_id: str
    detail: str
    at: str

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "orderId": self.order_id, "detail": self.detail, "at": self.at}


@dataclass
class Ledger:
    effects: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    _seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    _flagged: set[tuple[str, str]] = field(default_factory=set)
    log: list[dict[str, Any]] = field(default_factory=list)

    def record(self, kind: str, order_id: str, at: str, *, key: str = "", detail: str = "") -> int:
        """Record an applied effect; returns how many times it has now been applied."""
        self.effects[kind] += 1
        ident = f"{order_id}/{key}" if key else order_id
        self._seen[(kind, ident)] += 1
        count = self._seen[(kind, ident)]
        self.log.append({"kind": kind, "orderId": order_id, "key": key, "at": at})
        if kind in ONCE and count > 1:
            what = f"{kind} applied {count} times" + (f" for {key}" if key else "")
            self.violations.append(Violation("effect-repeated", order_id, what, at))
        return count

    def times(self, kind: str, order_id: str, key: str = "") -> int:
        return self._seen[(kind, f"{order_id}/{key}" if key else order_id)]

    def violate(
        self, rule: str, order_id: str, detail: str, at: str, *, once: bool = False
    ) -> None:
        """Report a broken rule; with ``once`` the same rule is reported once per order."""
        if once:
            if (rule, order_id) in self._flagged:
                return
            self._flagged.add((rule, order_id))
        self.violations.append(Violation(rule, order_id, detail, at))
