"""A deliberately simple, single-threaded consumer that plays a scenario the way the bridge must.

It exists to prove the sandbox is consistent: a consumer that follows the rules settles every
order with zero violations, and one that breaks a rule is caught. It is not the product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.sandbox_client import SandboxClient

REQUEST_STATUSES = {"cancellation-requested", "waiting-for-seller-decision", "request-cancel"}


def open_request(order: dict[str, Any]) -> dict[str, Any] | None:
    if order["status"] == "canceled":
        return None
    for req in order.get("cancellationRequests") or []:
        if not req["deniedBySeller"]:
            return req
    return None


def invoiced_on_vtex(order: dict[str, Any]) -> bool:
    return any(p["type"] == "Output" for p in order["packageAttachment"]["packages"])


@dataclass
class ModelConsumer:
    box: SandboxClient
    commit_before_work: bool = False  # the boilerplate consumer's mistake
    post_invoices_twice: bool = False

    def erp_order(self, order_id: str) -> dict[str, Any] | None:
        r = self.box.erp("GET", f"/orders/{order_id}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def accept(self, order_id: str) -> None:
        order = self.box.order(order_id)
        if order["status"] != "ready-for-handling":
            return
        if self.erp_order(order_id) is None:
            items = [
                {
                    "id": i["id"],
                    "quantity": i["quantity"],
                    "price": i["price"],
                    "seller": i["seller"],
                }
                for i in order["items"]
            ]
            self.box.erp("PUT", f"/orders/{order_id}", json={"items": items}).raise_for_status()
        r = self.box.vtex("POST", f"/api/oms/pvt/orders/{order_id}/start-handling")
        assert r.status_code in (204, 409), r.text

    def check_cancelation(self, order_id: str) -> None:
        order = self.box.order(order_id)
        erp = self.erp_order(order_id)
        if order["status"] == "canceled":
            if erp is not None and erp["state"] not in ("cancelled", "dispatched"):
                self.box.erp("POST", f"/orders/{order_id}/cancel").raise_for_status()
            return
        req = open_request(order)
        if req is None:
            return
        if invoiced_on_vtex(order) or (erp is not None and erp["state"] == "dispatched"):
            self.box.vtex(
                "POST",
                f"/api/orders/pvt/document/{order_id}/deny-cancellation-request",
                json={"cancellationRequestId": req["id"], "denyReason": "already with the carrier"},
            ).raise_for_status()
            return
        if erp is not None and erp["state"] != "cancelled":
            self.box.erp("POST", f"/orders/{order_id}/cancel").raise_for_status()
        self.box.vtex(
            "POST", f"/api/oms/pvt/orders/{order_id}/cancel", json={"reason": req["reason"]}
        ).raise_for_status()

    def sync_invoices(self, order_id: str) -> None:
        order = self.box.order(order_id)
        erp = self.erp_order(order_id)
        if erp is None or order["status"] == "canceled":
            return
        on_vtex = {p["invoiceNumber"] for p in order["packageAttachment"]["packages"]}
        for inv in erp["invoices"]:
            if inv["invoiceNumber"] in on_vtex and not self.post_invoices_twice:
                continue
            self.box.vtex(
                "POST",
                f"/api/oms/pvt/orders/{order_id}/invoice",
                json={
                    "type": "Output",
                    "invoiceNumber": inv["invoiceNumber"],
                    "invoiceValue": str(inv["invoiceValue"]),
                    "issuanceDate": inv["issuanceDate"],
                    "items": [
                        {"id": i["id"], "price": i["price"], "quantity": i["quantity"]}
                        for i in inv["items"]
                    ],
                },
            ).raise_for_status()
        in_erp = {i["invoiceNumber"] for i in erp["invoices"]}
        for p in order["packageAttachment"]["packages"]:
            if p["invoiceNumber"] not in in_erp:
                self.box.erp(
                    "POST",
                    f"/orders/{order_id}/invoices",
                    json={"invoiceNumber": p["invoiceNumber"], "invoiceValue": p["invoiceValue"]},
                ).raise_for_status()

    def preship(self, order_id: str) -> None:
        order = self.box.order(order_id)
        erp = self.erp_order(order_id)
        if erp is None or erp["released"]:
            return
        if order["status"] == "canceled" or open_request(order) is not None:
            if erp["state"] == "packed":
                self.box.erp("POST", f"/orders/{order_id}/hold").raise_for_status()
            return
        self.sync_invoices(order_id)
        self.box.erp("POST", f"/orders/{order_id}/release").raise_for_status()

    def handle(self, item: dict[str, str]) -> None:
        state, order_id = item["state"], item["orderId"]
        if state == "ready-for-handling":
            self.accept(order_id)
        elif state in REQUEST_STATUSES or state == "canceled":
            self.check_cancelation(order_id)
        elif state == "invoiced":
            self.sync_invoices(order_id)

    def round(self) -> None:
        while True:
            batch = self.box.vtex("GET", "/api/orders/feed?maxlot=10").json()
            if not batch:
                break
            handles = [i["handle"] for i in batch]
            if self.commit_before_work:
                self.box.vtex("POST", "/api/orders/feed", json={"handles": handles})
            for item in batch:
                self.handle(item)
            if not self.commit_before_work:
                self.box.vtex("POST", "/api/orders/feed", json={"handles": handles})
        for order_id in self.box.erp("GET", "/shipments/pending").json()["orderIds"]:
            self.preship(order_id)
        stuck = self.box.vtex(
            "GET", "/api/oms/pvt/orders?f_status=ready-for-handling&per_page=100"
        ).json()
        for listed in stuck["list"]:
            self.accept(listed["orderId"])

    def play(self, *, step: float = 60.0, rounds: int = 400) -> dict[str, Any]:
        """Play until the sandbox reports the scenario settled (or ``rounds`` run out)."""
        report: dict[str, Any] = {}
        for _ in range(rounds):
            self.round()
            report = self.box.report()
            if report["settled"]:
                break
            self.box.advance(step, feed_seconds=1)
        return report
