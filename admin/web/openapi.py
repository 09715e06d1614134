"""The OpenAPI document of /api/v1: how to authenticate, and every answer a route gives.

FastAPI describes the happy path and a 422 the panel never sends (bad input is a 400 here,
errors.py). This adds what a client (or Schemathesis) needs to hold the API to its word:

- ``securitySchemes``: a bearer token (``Authorization: Bearer sat_...``) or the session
  cookie of a signed-in browser, required by every operation;
- the 4xx each operation may answer, all with the same JSON body ``Problem``: 400 (a bad
  parameter, a control character), 401 (no or a bad credential), 403 (role, password to
  change, cross-site), 404 on an id that names nothing, and what a route adds itself
  (409, 413, 429).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

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
    if path.endswith("/sql"):
        answers["404"] = "No revision matches the target or the start."
    return answers


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
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in _answers(path, method).items():
                known = responses.get(status, {}).get("description")
                responses[status] = _problem(known or description)
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
