"""The OpenAPI document says what the API really answers: every operation
documents its problem+json error responses, so generated clients and
schemathesis can hold the server to them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from sendstream.core.http import PROBLEM_JSON


class ProblemDetail(BaseModel):
    location: str = Field(description="Where: `body.email`, `query.limit`, `body.html` ...")
    message: str
    type: str | None = None
    # Template errors point into the source as well.
    field: str | None = Field(default=None, description="Template field (`html`, `subject` ...).")
    template: str | None = Field(default=None, description="Layout or partial key, if not main.")
    line: int | None = Field(default=None, description="Line in the template source, from 1.")
    column: int | None = Field(default=None, description="Column in that line, from 1.")


class Problem(BaseModel):
    """RFC 9457 problem details with Sendstream's stable machine `code`."""

    type: str = Field(description="URI identifying the problem type.")
    title: str
    status: int
    code: str = Field(description="Stable machine-readable error code, e.g. `invalid_api_key`.")
    detail: str = Field(description="What went wrong and where, for a human.")
    instance: str | None = None
    errors: list[ProblemDetail] | None = Field(
        default=None, description="Per-field errors for validation problems."
    )


_COMMON = {
    400: "Malformed request (for example invalid JSON).",
    401: "Missing, unknown, revoked or expired API key.",
    403: "The API key lacks the scope this operation needs.",
    413: "Request body too large.",
    422: "The request is well-formed but invalid; `errors` lists each field.",
    429: "Rate limit exceeded; retry after `Retry-After` seconds.",
    503: "The database is unreachable; retry after `Retry-After` seconds.",
}
_BY_ID = {404: "No such object in this workspace."}
_MUTATING = {409: "Conflicts with the current state (a duplicate, or already done)."}
_RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a create safe to retry: a repeat with the same key and body "
    "returns the stored response (with `Idempotent-Replayed: true`) instead of creating "
    "again; the same key with another body is a 422. Kept for 24 hours.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(
            Problem.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {})
        )
        problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        problem_schema.pop("$defs", None)
        schemas["Problem"] = problem_schema
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        for path, item in doc.get("paths", {}).items():
            for method, operation in item.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                if not path.startswith("/v1/"):
                    continue
                for status, description in _COMMON.items():
                    responses[str(status)] = _problem(description)
                if "{" in path or method in ("patch", "delete"):
                    for status, description in _BY_ID.items():
                        responses[str(status)] = _problem(description)
                if method == "post":
                    params = operation.setdefault("parameters", [])
                    if not any(p.get("name") == "Idempotency-Key" for p in params):
                        params.append(_IDEMPOTENCY_KEY)
                if method in ("post", "put", "patch", "delete"):
                    for status, description in _MUTATING.items():
                        responses[str(status)] = _problem(description)
                for status, response in list(responses.items()):
                    if status.isdigit() and int(status) < 400:
                        headers = response.setdefault("headers", {})
                        for name in _RATE_HEADERS:
                            headers[name] = {"schema": {"type": "string"}}
                    if (
                        status.isdigit()
                        and int(status) >= 400
                        and status not in map(str, (*_COMMON, *_BY_ID, *_MUTATING))
                    ):
                        content = response.get("content", {})
                        if "application/json" in content:
                            content[PROBLEM_JSON] = content.pop("application/json")
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
