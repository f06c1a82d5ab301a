"""Validate payloads against VTEX's own OpenAPI 3.0 description of the Orders API.

The spec is not part of this repository: it lives in a ``shared`` folder beside the clone
(``<repo>/../shared/vtex/orders-api.openapi.json``), or wherever ``VTEX_OPENAPI_FILE`` points.
Tests that need it call :func:`require_spec` (or one of the ``validate_*`` helpers, which do it
for them) and are skipped with a clear reason when the file is absent.

Usage::

    from tests.vtex_spec import validate_request, validate_response

    validate_response("GET", "/api/oms/pvt/orders/{orderId}", 200, order)
    validate_request("POST", "/api/oms/pvt/orders/{orderId}/invoice", invoice)

``$ref`` pointers (``#/components/schemas/...``) are resolved in-process with ``referencing``
against the whole document; nothing is fetched over the network. Validation uses
``openapi_schema_validator.OAS30Validator``, which understands ``nullable``. Note that, as in
OpenAPI 3.0 proper, ``nullable`` is a property of a schema with a ``type``: a ``$ref`` with a
sibling ``nullable: true`` does not make the referenced schema accept ``null``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource

__all__ = [
    "ENV_VAR",
    "SpecLookupError",
    "format_errors",
    "load_spec",
    "request_schema",
    "require_spec",
    "response_schema",
    "spec_path",
    "validate_request",
    "validate_response",
]

ENV_VAR = "VTEX_OPENAPI_FILE"
SPEC_URI = "urn:vtex:orders-api.openapi.json"
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
_MAX_MESSAGE_CHARS = 400


class SpecLookupError(LookupError):
    """The operation, status or content type asked for has no schema in the spec."""


def spec_path() -> Path:
    """Where the VTEX Orders API OpenAPI file is expected (``$VTEX_OPENAPI_FILE`` wins)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    repo_root = Path(__file__).resolve().parents[1]
    return repo_root.parent / "shared" / "vtex" / "orders-api.openapi.json"


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any] | None:
    file = Path(path)
    if not file.is_file():
        return None
    with file.open(encoding="utf-8") as handle:
        document: dict[str, Any] = json.load(handle)
    return document


def load_spec() -> dict[str, Any] | None:
    """The parsed OpenAPI document, or ``None`` when the file is absent (cached per path)."""
    return _load(str(spec_path()))


def require_spec() -> dict[str, Any]:
    """The parsed OpenAPI document; skips the calling test when the file is absent."""
    spec = load_spec()
    if spec is None:
        pytest.skip(
            f"VTEX Orders API OpenAPI file not found at {spec_path()} "
            f"(expected <repo>/../shared/vtex/; set {ENV_VAR} to override)"
        )
    return spec


# --------------------------------------------------------------------------- lookup


def _pointer_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _pointer(*tokens: str) -> str:
    return "/" + "/".join(_pointer_token(token) for token in tokens)


def _ref_tokens(ref: str) -> tuple[str, ...]:
    """``#/a/b~1c`` -> ``("a", "b/c")``."""
    if not ref.startswith("#/"):
        raise SpecLookupError(f"only local $refs are supported, got {ref!r}")
    return tuple(raw.replace("~1", "/").replace("~0", "~") for raw in ref[2:].split("/"))


def _normalise_template(path_template: str) -> str:
    stripped = path_template.rstrip("/") or "/"
    return re.sub(r"\{[^}]*\}", "{}", stripped)


def _find_path(spec: Mapping[str, Any], path_template: str) -> str:
    paths: Mapping[str, Any] = spec.get("paths", {})
    if path_template in paths:
        return path_template
    wanted = _normalise_template(path_template)
    matches = [key for key in paths if _normalise_template(key) == wanted]
    if len(matches) == 1:
        return matches[0]
    raise SpecLookupError(f"path {path_template!r} is not in the spec")


def _find_operation(
    spec: Mapping[str, Any], method: str, path_template: str
) -> tuple[str, str, Mapping[str, Any]]:
    path_key = _find_path(spec, path_template)
    path_item: Mapping[str, Any] = spec["paths"][path_key]
    verb = method.lower()
    if verb not in _HTTP_METHODS or verb not in path_item:
        known = sorted(key.upper() for key in path_item if key in _HTTP_METHODS)
        raise SpecLookupError(
            f"{method.upper()} {path_key} is not in the spec (methods there: {known})"
        )
    return path_key, verb, path_item[verb]


def _resolve_local(
    spec: Mapping[str, Any], node: Any, tokens: tuple[str, ...]
) -> tuple[Any, tuple[str, ...]]:
    """Follow local ``$ref`` chains on OpenAPI objects (response, requestBody).

    Returns the object reached and the pointer tokens that locate it in the document.
    """
    seen: set[str] = set()
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
        ref: str = node["$ref"]
        if ref in seen:
            raise SpecLookupError(f"circular $ref {ref!r}")
        seen.add(ref)
        tokens = _ref_tokens(ref)
        node = spec
        for token in tokens:
            node = node[token]
    return node, tokens


def _is_json(media_type: str) -> bool:
    essence = media_type.split(";", 1)[0].strip().lower()
    return essence == "application/json" or essence.endswith("+json")


def _json_media_type(content: Mapping[str, Any], where: str) -> str:
    candidates = [mt for mt, obj in content.items() if _is_json(mt) and "schema" in obj]
    if not candidates:
        listed = sorted(content) or "no content at all"
        raise SpecLookupError(f"{where} has no JSON schema (content: {listed})")
    return candidates[0]


def _status_key(responses: Mapping[str, Any], status: int | str, where: str) -> str:
    wanted = str(status).upper()
    for key in (wanted, f"{wanted[:1]}XX", "DEFAULT"):
        for candidate in responses:
            if str(candidate).upper() == key:
                return str(candidate)
    raise SpecLookupError(f"{where} documents no response {status} (has: {sorted(responses)})")


def _response_pointer(method: str, path_template: str, status: int | str) -> str:
    spec = require_spec()
    path_key, verb, operation = _find_operation(spec, method, path_template)
    where = f"{verb.upper()} {path_key}"
    responses: Mapping[str, Any] = operation.get("responses", {})
    key = _status_key(responses, status, where)
    response, tokens = _resolve_local(
        spec, responses[key], ("paths", path_key, verb, "responses", key)
    )
    media = _json_media_type(response.get("content", {}), f"{where} response {key}")
    return _pointer(*tokens, "content", media, "schema")


def _request_pointer(method: str, path_template: str) -> str:
    spec = require_spec()
    path_key, verb, operation = _find_operation(spec, method, path_template)
    where = f"{verb.upper()} {path_key}"
    if "requestBody" not in operation:
        raise SpecLookupError(f"{where} has no requestBody in the spec")
    body, tokens = _resolve_local(
        spec, operation["requestBody"], ("paths", path_key, verb, "requestBody")
    )
    media = _json_media_type(body.get("content", {}), f"{where} requestBody")
    return _pointer(*tokens, "content", media, "schema")


def _at_pointer(spec: Mapping[str, Any], pointer: str) -> Any:
    node: Any = spec
    for token in _ref_tokens("#" + pointer):
        node = node[token]
    return node


def response_schema(method: str, path_template: str, status: int | str) -> dict[str, Any]:
    """The (unresolved) JSON schema of a documented response."""
    schema: dict[str, Any] = _at_pointer(
        require_spec(), _response_pointer(method, path_template, status)
    )
    return schema


def request_schema(method: str, path_template: str) -> dict[str, Any]:
    """The (unresolved) JSON schema of an operation's request body."""
    schema: dict[str, Any] = _at_pointer(require_spec(), _request_pointer(method, path_template))
    return schema


# --------------------------------------------------------------------------- validation


@lru_cache(maxsize=4)
def _registry(path: str) -> Registry[Any]:
    spec = _load(path)
    if spec is None:  # pragma: no cover - callers went through require_spec()
        raise FileNotFoundError(path)
    # Opaque: the document is addressed by JSON pointer only; OpenAPI schemas carry no ids.
    resource: Resource[Any] = Resource.opaque(spec)
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


@lru_cache(maxsize=512)
def _validator(path: str, pointer: str) -> Validator:
    schema = {"$ref": f"{SPEC_URI}#{pointer}"}
    validator: Validator = OAS30Validator(schema, registry=_registry(path))
    return validator


@lru_cache(maxsize=512)
def _response_validator(path: str, method: str, path_template: str, status: str) -> Validator:
    return _validator(path, _response_pointer(method, path_template, status))


@lru_cache(maxsize=512)
def _request_validator(path: str, method: str, path_template: str) -> Validator:
    return _validator(path, _request_pointer(method, path_template))


def _shorten(text: str) -> str:
    if len(text) <= _MAX_MESSAGE_CHARS:
        return text
    return text[: _MAX_MESSAGE_CHARS - 5] + " ...]"


def _describe(error: ValidationError) -> str:
    if error.validator == "type" and error.instance is None:
        # OAS30Validator reports null twice ("None for not nullable", "None is not of type").
        return f"null is not allowed (type {error.validator_value!r} without nullable: true)"
    return _shorten(error.message)


def _flatten(errors: Iterable[ValidationError]) -> list[ValidationError]:
    flat: list[ValidationError] = []
    for error in errors:
        flat.append(error)
        # anyOf/oneOf: show the branch errors too, they say what was really wrong.
        if error.context:
            flat.extend(_flatten(error.context))
    return flat


def format_errors(errors: Iterable[ValidationError]) -> list[str]:
    """One line per error: JSON path of the failing element, then the message."""
    lines: list[str] = []
    seen: set[str] = set()
    for error in sorted(_flatten(errors), key=lambda e: list(map(str, e.absolute_path))):
        line = f"{error.json_path}: {_describe(error)}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def _check(validator: Validator, body: object, what: str) -> None:
    lines = format_errors(validator.iter_errors(body))
    if lines:
        listed = "\n".join(f"  - {line}" for line in lines)
        raise AssertionError(
            f"{what} does not match VTEX's OpenAPI schema ({len(lines)} error(s)):\n{listed}"
        )


def validate_response(method: str, path_template: str, status: int | str, body: object) -> None:
    """Assert ``body`` is a valid ``status`` response of ``METHOD path_template``.

    Raises ``AssertionError`` listing every error, ``SpecLookupError`` when the spec has no
    JSON schema for that operation/status; skips the test when the spec file is absent.
    """
    require_spec()
    validator = _response_validator(
        str(spec_path()), method.upper(), path_template, str(status).upper()
    )
    _check(validator, body, f"{method.upper()} {path_template} {status} response")


def validate_request(method: str, path_template: str, body: object) -> None:
    """Assert ``body`` is a valid request body of ``METHOD path_template``.

    Raises ``AssertionError`` listing every error, ``SpecLookupError`` when the spec has no
    JSON requestBody schema for that operation; skips the test when the spec file is absent.
    """
    require_spec()
    validator = _request_validator(str(spec_path()), method.upper(), path_template)
    _check(validator, body, f"{method.upper()} {path_template} request body")
