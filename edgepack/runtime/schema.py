"""Request schemas from samples: infer a JSON schema, validate requests against it, describe it as OpenAPI 3."""

from __future__ import annotations

from typing import Any, Callable


def infer_schema(sample: Any) -> dict[str, Any]:
    """A JSON schema that ``sample`` satisfies: object keys required, array items from the first element."""
    if isinstance(sample, bool):
        return {"type": "boolean"}
    if isinstance(sample, int):
        return {"type": "number"}  # a client may send 1.5 where the sample had 1
    if isinstance(sample, float):
        return {"type": "number"}
    if isinstance(sample, str):
        return {"type": "string"}
    if isinstance(sample, list):
        return {"type": "array", "items": infer_schema(sample[0])} if sample else {"type": "array"}
    if isinstance(sample, dict):
        return {"type": "object", "required": sorted(sample),
                "properties": {k: infer_schema(v) for k, v in sample.items()}}
    return {}


_TYPES = {"boolean": (bool,), "number": (int, float), "string": (str,), "array": (list,), "object": (dict,)}


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> str | None:
    """The first problem of ``value`` against ``schema`` as ``"<path>: <problem>"``, or None when it fits."""
    kind = schema.get("type")
    if kind:
        wanted = _TYPES[kind]
        if not isinstance(value, wanted) or (kind == "number" and isinstance(value, bool)):
            return f"{path}: expected {kind}, got {_name(value)}"
    if kind == "object":
        for key in schema.get("required", ()):
            if key not in value:
                return f"{path}: missing required field '{key}'"
        for key, sub in schema.get("properties", {}).items():
            if key in value and (problem := validate(value[key], sub, f"{path}.{key}")):
                return problem
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            if problem := validate(item, schema["items"], f"{path}[{i}]"):
                return problem
    return None


_NUMBERS = frozenset((int, float))


def compile_check(schema: dict[str, Any]) -> Callable[[Any], bool]:
    """A fast yes/no form of ``validate`` for one schema (call ``validate`` for the message on a no).

    Arrays of numbers, the bulk of a scoring request, are checked by the set of their item types.
    """
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        if items is None:
            return lambda value: type(value) is list
        if items.get("type") == "number":
            return lambda value: type(value) is list and set(map(type, value)) <= _NUMBERS
        item_fits = compile_check(items)
        return lambda value: type(value) is list and all(map(item_fits, value))
    if kind == "object":
        required = tuple(schema.get("required", ()))
        fields = tuple((key, compile_check(sub)) for key, sub in schema.get("properties", {}).items())
        return lambda value: (type(value) is dict and all(key in value for key in required)
                              and all(fits(value[key]) for key, fits in fields if key in value))
    if kind == "number":
        return lambda value: type(value) in _NUMBERS
    if kind:
        return lambda value: isinstance(value, _TYPES[kind])
    return lambda value: True


def _name(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object",
            type(None): "null"}.get(type(value), type(value).__name__)


SWAGGER_VERSIONS = {"2": "2", "2.0": "2", "3": "3", "3.0": "3", "3.1": "3.1"}
_ANY = {"type": "object", "example": {}}


def document(version: str, *, title: str, service_version: str, path: str, input_schema: dict[str, Any] | None,
             output_schema: dict[str, Any] | None) -> dict[str, Any]:
    """The scoring endpoint described as Azure ML's server does: Swagger 2.0 (``version`` "2") or OpenAPI 3.0/3.1,
    with the request and answer schemas as ``ServiceInput`` and ``ServiceOutput``."""
    schemas = {"ServiceInput": input_schema or _ANY, "ServiceOutput": output_schema or _ANY,
               "ErrorResponse": {"type": "object", "properties": {"error": {"type": "string"}}}}
    errors = {"400": "The request is not valid JSON or does not match the schema", "401": "Missing or wrong key",
              "413": "The request body is too large", "500": "The entry script failed; the body carries an error id"}
    info = {"title": title, "description": f"API specification for {title}", "version": service_version}
    if version == "2":
        ref = "#/definitions/"
        responses: dict[str, Any] = {"200": {"description": "Success", "schema": {"$ref": ref + "ServiceOutput"}}}
        responses.update({code: {"description": text, "schema": {"$ref": ref + "ErrorResponse"}}
                          for code, text in errors.items()})
        return {"swagger": "2.0", "info": info, "schemes": ["http", "https"], "consumes": ["application/json"],
                "produces": ["application/json"],
                "securityDefinitions": {"Bearer": {"type": "apiKey", "name": "Authorization", "in": "header"}},
                "paths": {path: {"post": {"operationId": "RunMLService", "parameters": [
                    {"name": "serviceInputPayload", "in": "body", "schema": {"$ref": ref + "ServiceInput"}}],
                    "responses": responses}}},
                "definitions": schemas}
    ref = "#/components/schemas/"
    json_of = lambda name: {"application/json": {"schema": {"$ref": ref + name}}}  # noqa: E731
    responses = {"200": {"description": "Success", "content": json_of("ServiceOutput")}}
    responses.update({code: {"description": text, "content": json_of("ErrorResponse")}
                      for code, text in errors.items()})
    return {"openapi": "3.1.0" if version == "3.1" else "3.0.3", "info": info,
            "paths": {path: {"post": {"operationId": "RunMLService",
                                      "requestBody": {"required": True, "content": json_of("ServiceInput")},
                                      "responses": responses}}},
            "components": {"schemas": schemas, "securitySchemes": {"Bearer": {"type": "http", "scheme": "bearer"}}}}


def from_samples(sample: Any) -> dict[str, Any] | None:
    """The schema of a sample with the sample as its example (None without a sample)."""
    return None if sample is None else {**infer_schema(sample), "example": sample}
