"""The OpenAPI document of /api/v1: how to authenticate, and every answer a route gives.

FastAPI describes the happy path and a 422 the panel never sends (bad input is a 400 here,
errors.py). This adds what a client (or Schemathesis) needs to hold the API to its word:

- ``securitySchemes``: a bearer token (``Authorization: Bearer sat_...``) or the session
  cookie of a signed-in browser, required by every operation;
- string parameters and body fields say they take no control characters (a pattern);
- the 4xx each operation may answer, all with the same JSON body ``Problem``: 400 (a bad
  parameter, a control character), 401 (no or a bad credential), 403 (role, password to
  change, cross-site), 404 on an id that names nothing, and what a route adds itself
  (409, 413, 429).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from admin import controls
from admin.web.principal import SESSION_COOKIE

PROBLEM = "Problem"
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token made by an admin at /tokens (sat_...).",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": "The session of a signed-in browser (`__Host-apex_session` over HTTPS); "
        "unsafe requests also need the session's X-CSRF-Token header.",
    },
}
_PROBLEM_SCHEMA = {
    "title": PROBLEM,
    "type": "object",
    "required": ["status", "title", "detail"],
    "properties": {
        "status": {"type": "integer", "description": "the HTTP status"},
        "title": {"type": "string"},
        "detail": {"type": "string", "description": "what went wrong and what to do"},
    },
}
_ALWAYS = {
    "400": "Invalid input: a bad parameter, or a control character in a field or header.",
    "401": "No credential, or a token or session that is not valid (WWW-Authenticate).",
    "403": "Not allowed: the role, a password that must be changed first, a cross-site request.",
}
_WITH_ID = {"404": "Nothing has this id."}
_UNSAFE = {
    "409": "Conflict: the plan changed, or another job runs on the database.",
    "413": "The request body is too large.",
    "429": "Too many failed password checks: wait (Retry-After).",
}
_STREAM = {"429": "Too many live logs open for this user or this server (Retry-After)."}
# Where else a 404 comes from.
_NOT_FOUND = {
    ("get", "/api/v1/revisions"): "There is no such page of the history.",
    ("get", "/api/v1/sql"): "No revision matches the target or the start.",
    ("post", "/api/v1/jobs"): "No revision matches the target.",
    ("post", "/api/v1/rehearsals"): "No revision matches the target.",
}
# Where a value travels -> what it may hold (the control characters inputs.py refuses).
_PLACES = {"query": "line", "path": "line", "header": "header", "cookie": "header", "body": "text"}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{PROBLEM}"}}},
    }


def _answers(path: str, method: str) -> dict[str, str]:
    answers = dict(_ALWAYS)
    if "{" in path:
        answers.update(_WITH_ID)
    if method != "get":
        answers.update(_UNSAFE)
    if path.endswith("/events"):
        answers.update(_STREAM)
    if (method, path) in _NOT_FOUND:
        answers["404"] = _NOT_FOUND[(method, path)]
    return answers


def _no_controls(schema: dict[str, Any], place: str) -> None:
    """Give every string of ``schema`` (a parameter's, a body's property) the pattern of
    what ``place`` accepts."""
    if schema.get("type") == "string" and "format" not in schema and "enum" not in schema:
        schema.setdefault("pattern", controls.allowed_pattern(_PLACES.get(place, "line")))
    for option in schema.get("anyOf", []):
        _no_controls(option, place)


def _body_schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The component schemas that request bodies refer to."""
    found = []
    components = schema.get("components", {}).get("schemas", {})
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                ref = media.get("schema", {}).get("$ref", "")
                name = ref.rsplit("/", 1)[-1]
                if name in components:
                    found.append(components[name])
    return found


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the security schemes and every operation's 4xx answers."""
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})[PROBLEM] = _PROBLEM_SCHEMA
    components["securitySchemes"] = SECURITY_SCHEMES
    for schemas in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(schemas, None)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            operation["security"] = [{"bearer": []}, {"session": []}]
            for parameter in operation.get("parameters", []):
                _no_controls(parameter.get("schema", {}), parameter.get("in", "query"))
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in _answers(path, method).items():
                known = responses.get(status, {}).get("description")
                responses[status] = _problem(known or description)
    for body in _body_schemas(schema):
        for prop in body.get("properties", {}).values():
            _no_controls(prop, "body")
    return schema


def install(app: FastAPI) -> None:
    """Serve the completed document (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    openapi_version=app.openapi_version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
