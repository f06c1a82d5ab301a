"""The VTEX OpenAPI helper catches what it should and accepts what it should."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests import vtex_spec
from tests.vtex_spec import (
    SpecLookupError,
    load_spec,
    require_spec,
    spec_path,
    validate_request,
    validate_response,
)

FEED = "/api/orders/feed"
ORDER = "/api/oms/pvt/orders/{orderId}"
CANCEL = "/api/oms/pvt/orders/{orderId}/cancel"
INVOICE = "/api/oms/pvt/orders/{orderId}/invoice"
HOOK_CONFIG = "/api/orders/hook/config"
START_HANDLING = "/api/oms/pvt/orders/{orderId}/start-handling"

RECEIPT = {
    "date": "2024-02-07T15:22:56.7612218-02:00",
    "orderId": "1234567890123-01",
    "receipt": "38e0e47da2934847b489216d208cfd91",
}


def _spec_example(path: str, method: str, status: str, media_type: str) -> Any:
    spec = require_spec()
    return copy.deepcopy(
        spec["paths"][path][method]["responses"][status]["content"][media_type]["example"]
    )


def test_spec_path_defaults_to_shared_folder_beside_the_clone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(vtex_spec.ENV_VAR, raising=False)
    repo_root = Path(vtex_spec.__file__).resolve().parents[1]
    assert spec_path() == repo_root.parent / "shared" / "vtex" / "orders-api.openapi.json"


def test_env_var_overrides_path_and_absent_file_skips(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.json"
    monkeypatch.setenv(vtex_spec.ENV_VAR, str(missing))
    assert spec_path() == missing
    assert load_spec() is None
    with pytest.raises(pytest.skip.Exception, match=r"nope\.json"):
        require_spec()
    with pytest.raises(pytest.skip.Exception):
        validate_response("POST", CANCEL, 200, RECEIPT)


def test_feed_example_from_the_spec_is_valid() -> None:
    items = _spec_example(FEED, "get", "200", "application/json")
    assert isinstance(items, list) and items
    validate_response("GET", FEED, 200, items)
    validate_response("GET", FEED, "200", [])


def test_cancel_response_valid_and_wrong_type_rejected() -> None:
    validate_response("POST", CANCEL, 200, RECEIPT)
    with pytest.raises(AssertionError, match=r"\$\.date: 5 is not of type 'string'"):
        validate_response("POST", CANCEL, 200, {"date": 5})


def test_every_error_is_listed_with_its_json_path() -> None:
    item = {
        "eventId": 42,
        "handle": "h",
        "domain": "Fulfillment",
        "state": "ready-for-handling",
        "lastState": None,
        "orderId": "1234567890123-01",
        "lastChange": "2019-08-12T20:54:23.7153839Z",
    }
    with pytest.raises(AssertionError) as caught:
        validate_response("GET", FEED, 200, [item])
    message = str(caught.value)
    assert "3 error(s)" in message
    assert "$[0].eventId: 42 is not of type 'string'" in message
    assert "$[0].lastState: null is not allowed" in message
    assert "$[0]: 'currentChange' is a required property" in message


def test_nullable_is_honoured() -> None:
    validate_response("GET", ORDER, 200, {"orderId": "1-01", "cancellationData": None})
    with pytest.raises(AssertionError, match=r"\$\.statusDescription: null is not allowed"):
        validate_response("GET", ORDER, 200, {"orderId": "1-01", "statusDescription": None})


def test_integer_fields_reject_floats_and_strings() -> None:
    with pytest.raises(AssertionError) as caught:
        validate_response("GET", ORDER, 200, {"value": 59.98, "items": [{"quantity": "2"}]})
    assert "$.value: 59.98 is not of type 'integer'" in str(caught.value)
    assert "$.items[0].quantity: '2' is not of type 'integer'" in str(caught.value)


def test_content_type_with_charset_is_found() -> None:
    listing = _spec_example("/api/oms/pvt/orders", "get", "200", "application/json; charset=utf-8")
    validate_response("GET", "/api/oms/pvt/orders", 200, listing)
    del listing["paging"]
    with pytest.raises(AssertionError, match="'paging' is a required property"):
        validate_response("GET", "/api/oms/pvt/orders", 200, listing)


def test_component_refs_are_resolved_in_request_bodies() -> None:
    body: dict[str, Any] = {
        "filter": {"type": "FromWorkflow", "status": ["ready-for-handling"]},
        "hook": {"url": "https://bridge.example.com/hook", "headers": {"key": "secret"}},
    }
    validate_request("POST", HOOK_CONFIG, body)
    body["hook"]["headers"] = {"X-Secret": "secret"}
    with pytest.raises(AssertionError, match=r"\$\.hook\.headers: 'key' is a required property"):
        validate_request("POST", HOOK_CONFIG, body)


def test_invoice_request_wants_invoice_value_as_string() -> None:
    invoice: dict[str, Any] = {
        "type": "Output",
        "issuanceDate": "2024-02-12T13:59:00-03:00",
        "invoiceNumber": "NF-000123",
        "invoiceValue": "5998",
        "items": [{"id": "1001", "price": 2499, "quantity": 2}],
    }
    validate_request("post", INVOICE, invoice)
    invoice["invoiceValue"] = 5998
    with pytest.raises(AssertionError, match=r"\$\.invoiceValue: 5998 is not of type 'string'"):
        validate_request("POST", INVOICE, invoice)


def test_missing_schema_raises_lookup_error() -> None:
    with pytest.raises(SpecLookupError, match="no JSON schema"):
        validate_response("POST", START_HANDLING, 204, None)
    with pytest.raises(SpecLookupError, match="documents no response 500"):
        validate_response("POST", CANCEL, 500, {})
    with pytest.raises(SpecLookupError, match="no requestBody"):
        validate_request("POST", START_HANDLING, None)
    with pytest.raises(SpecLookupError, match="not in the spec"):
        validate_response("GET", "/api/nowhere", 200, {})
    with pytest.raises(SpecLookupError, match="not in the spec"):
        validate_response("PUT", FEED, 200, {})


def test_path_parameter_names_need_not_match() -> None:
    validate_response("POST", "/api/oms/pvt/orders/{id}/cancel", 200, RECEIPT)


def test_validators_are_cached() -> None:
    validate_response("POST", CANCEL, 200, RECEIPT)
    before = vtex_spec._response_validator.cache_info().hits
    validate_response("POST", CANCEL, 200, RECEIPT)
    assert vtex_spec._response_validator.cache_info().hits == before + 1
