"""RFC 9457 `application/problem+json` for every error the service returns, FastAPI's own included.

`type` is a stable URN per kind of problem (clients switch on it), `title` the short human name, `detail` the
specific message; validation problems add `errors`: one `{field, message}` per offending field.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import operations
from app.gallery import (
    GalleryError,
    GalleryUnavailable,
    IdentityExists,
    IdentityNotFound,
    ImageNotFound,
    InvalidArgument,
)

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:personid:problem:"

# RFC 9110's names where Python's `HTTPStatus` still has the older ones (before 3.13), so the title is the same
# on every Python and the same as docs/api.md.
TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}

# How the endpoints declare their problems in the OpenAPI document (`responses=`).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
PROBLEM = {"content": {MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}}, "description": "RFC 9457 problem details"}
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {422: PROBLEM, 503: PROBLEM}
# What any request with a body may get: malformed, stalled, too large.
BODY_ERRORS: dict[int | str, dict[str, Any]] = {400: PROBLEM, 408: PROBLEM, 413: PROBLEM}
IMAGE_ERRORS: dict[int | str, dict[str, Any]] = {**BODY_ERRORS, 415: PROBLEM}


class Problem(StarletteHTTPException):
    """Raise anywhere in a request to answer with this problem (an HTTPException, so that FastAPI passes it
    through untouched even when it is raised while the body is being read)."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.status, self.kind = status, kind
        self.errors, self.headers, self.extra = errors, headers, extra or {}


def field_problem(field: str, message: str, status: int = 422, kind: str = "invalid-request") -> Problem:
    """A problem about one request field, named in `errors`."""
    return Problem(status, kind, f"{field}: {message}", errors=[{"field": field, "message": message}])


def problem_response(
    status: int,
    kind: str,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """The one way every error is written, so clients parse a single shape whatever failed."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + kind if kind else "about:blank",
        "title": TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **(extra or {}),
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'top_k') -> 'top_k'; ('query', 'limit') -> 'limit'; nested parts joined with dots."""
    parts = [str(part) for part in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"} and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts)


def allowed_methods(request: Request, given: Mapping[str, str] | None) -> str:
    """Every method the path accepts: the schema's operations on it and Starlette's own routes (whose 405 names
    only the methods of the first route that matched the path)."""
    methods = operations.methods_of(request.app, request.url.path)
    methods |= {method.strip() for method in (given or {}).get("Allow", "").split(",") if method.strip()}
    return ", ".join(sorted(methods))


_GALLERY_STATUS: list[tuple[type[GalleryError], int, str]] = [
    (IdentityNotFound, 404, "identity-not-found"),
    (ImageNotFound, 404, "image-not-found"),
    (IdentityExists, 409, "identity-exists"),
    (InvalidArgument, 422, "invalid-request"),
    (GalleryUnavailable, 503, "gallery-unavailable"),
]


def install(app: FastAPI) -> None:
    """Route every kind of error through `problem_response`."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(
            exc.status, exc.kind, exc.detail, errors=exc.errors, headers=exc.headers, extra=exc.extra
        )

    async def on_gallery(request: Request, exc: Exception) -> JSONResponse:
        for cls, status, kind in _GALLERY_STATUS:
            if isinstance(exc, cls):
                return problem_response(status, kind, str(exc))
        log.error("gallery error on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(500, "gallery-error", "the gallery failed; see the service log")

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
        kind, headers = "", getattr(exc, "headers", None)
        if exc.status_code == 400:  # a body the framework could not parse
            kind, detail = "malformed-body", f"the request body is malformed: {detail}"
        elif exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
            headers = {**(headers or {}), "Allow": allowed_methods(request, headers)}
        return problem_response(exc.status_code, kind, detail, headers=headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [{"field": _location(error.get("loc", ())), "message": error.get("msg", "")} for error in exc.errors()]
        detail = "; ".join(f"{error['field']}: {error['message']}" for error in errors) or "invalid request"
        return problem_response(422, "invalid-request", detail, errors=errors)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(500, "internal-error", "an unexpected error occurred; it has been logged")

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(GalleryError, on_gallery)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_unexpected)
