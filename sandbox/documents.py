"""The sandbox's orders rendered as VTEX renders them (checked against VTEX's OpenAPI file)."""

from __future__ import annotations

from typing import Any

from sandbox.clock import iso

__all__ = ["iso", "list_item_json", "list_page", "order_json", "package_json"]
from sandbox.oms import CANCEL_REQUESTED, CANCELED, Invoice, Order

STATUS_DESCRIPTIONS = {
    "order-created": "Processando",
    "payment-pending": "Pagamento Pendente",
    "payment-approved": "Pagamento Aprovado",
    "window-to-cancel": "Carência para Cancelamento",
    "ready-for-handling": "Pronto para o manuseio",
    "start-handling": "Iniciar Manuseio",
    "handling": "Preparando Entrega",
    "invoice": "Verificando Envio",
    "invoiced": "Faturado",
    "cancellation-requested": "Cancelamento solicitado",
    "cancel": "Cancelar",
    "canceled": "Cancelado",
}
SELLER_NAMES = {"1": "Sandbox Store", "sellerb": "Partner Seller B"}


def package_json(p: Invoice, item_index: dict[str, int]) -> dict[str, Any]:
    return {
        "type": p.kind,
        "invoiceNumber": p.number,
        "invoiceValue": p.value,
        "invoiceKey": p.invoice_key,
        "invoiceUrl": p.invoice_url or None,
        "embeddedInvoice": "",
        "issuanceDate": p.issuance_date,
        "courier": p.courier or None,
        "trackingNumber": p.tracking_number or None,
        "trackingUrl": p.tracking_url or None,
        "cfop": None,
        "volumes": 1,
        "items": [
            {
                "itemIndex": item_index.get(str(i["id"]), n),
                "id": str(i["id"]),
                "quantity": int(i["quantity"]),
                "price": int(i["price"]),
                "description": None,
            }
            for n, i in enumerate(p.items)
        ],
    }


def order_json(order: Order) -> dict[str, Any]:
    """The Get order document: the fields the bridge reads, in VTEX's shape."""
    value = order.value
    items_total = value
    index = {item.sku: n for n, item in enumerate(order.items)}
    return {
        "orderId": order.order_id,
        "sequence": order.sequence,
        "marketplaceOrderId": "",
        "sellerOrderId": "00-" + order.order_id,
        "origin": "Marketplace",
        "affiliateId": "",
        "salesChannel": "1",
        "status": order.status,
        "statusDescription": STATUS_DESCRIPTIONS.get(order.status, order.status),
        "value": value,
        "creationDate": iso(order.created),
        "lastChange": iso(order.last_change),
        "orderGroup": order.sequence,
        "totals": [
            {"id": "Items", "name": "Total dos Itens", "value": items_total},
            {"id": "Discounts", "name": "Total dos Descontos", "value": 0},
            {"id": "Shipping", "name": "Total do Frete", "value": 0},
            {"id": "Tax", "name": "Total da Taxa", "value": 0},
        ],
        "items": [
            {
                "uniqueId": f"{order.sequence}{n:03d}",
                "id": item.sku,
                "productId": item.sku[:3],
                "name": item.name,
                "quantity": item.quantity,
                "seller": item.seller,
                "price": item.price,
                "listPrice": item.price,
                "sellingPrice": item.price,
                "unitMultiplier": 1,
                "measurementUnit": "un",
            }
            for n, item in enumerate(order.items)
        ],
        "sellers": [
            {"id": s, "name": SELLER_NAMES.get(s, s), "logo": "", "fulfillmentEndpoint": ""}
            for s in order.sellers
        ],
        "allowCancellation": order.status not in (CANCELED, "invoiced")
        and not any(p.kind == "Output" for p in order.packages),
        "isCompleted": True,
        "clientProfileData": {
            "id": "clientProfileData",
            "email": f"shopper-{order.sequence}@example.com",
            "firstName": "Sandbox",
            "lastName": "Shopper",
            "documentType": "cpf",
            "document": "12345678909",
            "phone": "+5511999999999",
            "isCorporate": False,
            "userProfileId": f"profile-{order.sequence}",
        },
        "shippingData": {
            "id": "shippingData",
            "address": {
                "addressType": "residential",
                "receiverName": "Sandbox Shopper",
                "addressId": "home",
                "postalCode": "22250-040",
                "city": "Rio de Janeiro",
                "state": "RJ",
                "country": "BRA",
                "street": "Praia de Botafogo",
                "number": "300",
                "neighborhood": "Botafogo",
                "complement": "",
                "reference": None,
                "geoCoordinates": [-43.18, -22.94],
            },
        },
        "packageAttachment": {"packages": [package_json(p, index) for p in order.packages]},
        "cancellationData": order.cancellation,
        "cancellationRequests": [
            {
                "id": r.id,
                "reason": r.reason,
                "cancellationRequestDate": r.date,
                "requestedByUser": r.requested_by_user,
                "deniedBySeller": r.denied_by_seller,
                "deniedBySellerReason": r.deny_reason,
                "cancellationRequestDenyDate": r.denied_at,
            }
            for r in order.cancellation_requests
        ]
        or None,
        "pendingCancellationRequest": order.status == CANCEL_REQUESTED,
    }


def list_item_json(order: Order) -> dict[str, Any]:
    return {
        "orderId": order.order_id,
        "creationDate": iso(order.created),
        "clientName": "Sandbox Shopper",
        "items": None,
        "totalValue": order.value,
        "paymentNames": "Boleto Bancário",
        "status": order.status,
        "statusDescription": STATUS_DESCRIPTIONS.get(order.status, order.status),
        "marketPlaceOrderId": None,
        "sequence": order.sequence,
        "salesChannel": "1",
        "affiliateId": "",
        "origin": "Marketplace",
        "workflowInErrorState": False,
        "workflowInRetry": False,
        "lastMessageUnread": None,
        "ShippingEstimatedDate": None,
        "ShippingEstimatedDateMax": None,
        "ShippingEstimatedDateMin": None,
        "orderIsComplete": True,
        "listId": None,
        "listType": None,
        "authorizedDate": iso(order.created),
        "callCenterOperatorName": None,
        "totalItems": sum(i.quantity for i in order.items),
        "currencyCode": "BRL",
    }


def _stats(values: list[int], *, whole: bool, facets: bool = True) -> dict[str, Any]:
    """VTEX's facet statistics block; ``whole`` rounds mean and deviation as VTEX types them."""
    count = len(values)
    total = sum(values)
    mean = total / count if count else 0.0
    variance = sum((v - mean) ** 2 for v in values) / count if count else 0.0
    block: dict[str, Any] = {
        "Count": count,
        "Max": max(values, default=0),
        "Mean": round(mean) if whole else mean,
        "Min": min(values, default=0),
        "Missing": 0,
        "StdDev": round(variance**0.5) if whole else variance**0.5,
        "Sum": total,
        "SumOfSquares": sum(v * v for v in values),
        "Facets": None,
    }
    if facets:
        leaf = _stats(values, whole=whole, facets=False)
        empty = _stats([], whole=whole, facets=False)
        block["Facets"] = {
            "origin": {"Fulfillment": empty, "Marketplace": leaf},
            "currencyCode": {"BRL": leaf},
        }
    return block


def list_page(
    orders: list[Order], listed: list[dict[str, Any]], page: int, per_page: int
) -> dict[str, Any]:
    total = len(orders)
    return {
        "list": listed,
        "facets": [],
        "paging": {
            "total": total,
            "pages": -(-total // per_page),
            "currentPage": page,
            "perPage": per_page,
        },
        "stats": {
            "stats": {
                "totalValue": _stats([o.value for o in orders], whole=False),
                "totalItems": _stats(
                    [sum(i.quantity for i in o.items) for o in orders], whole=True
                ),
            }
        },
    }
