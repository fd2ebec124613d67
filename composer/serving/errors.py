"""Every error the service answers with: `{"error": {"type", "message"}}` and a 4xx/5xx status.

Contract: `ApiError(status, type, message)` is raised by handlers; `install(app)` maps it,
request validation errors (400), unknown routes (404), router/Composer/registry/upload
errors (400/403/404/409/413), `Unavailable` (503 + Retry-After: a replica died, a request
timed out), `ExpertUnavailable` (503 + Retry-After: the plan's expert is quarantined) and anything unexpected (500, message without internals: no stack trace, no
filesystem path) to that JSON shape. `error_status(exc)` is the same mapping for errors
that surface inside a stream. `ERROR_RESPONSES` documents the shape in the OpenAPI schema.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from composer.endpoints.guard import EndpointRefused
from composer.errors import ComposerError, ExpertUnavailable
from composer.eval.benchmark import BenchmarkError
from composer.serving.archive import TooLarge, UploadError
from registry import ConflictError, NotFoundError, RegistryError
from routers import RouterError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type_, message, headers


class PathNotAllowed(PermissionError):
    """A server-side path outside the configured allowed roots."""


class Unavailable(RuntimeError):
    """The service cannot answer this request now (a replica died, the request timed out); retry."""

    headers: ClassVar[dict] = {"Retry-After": "5"}


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict = {
    code: {"model": ErrorBody, "description": what}
    for code, what in [
        (400, "invalid request"),
        (401, "missing or wrong API key"),
        (403, "forbidden"),
        (404, "not found"),
        (409, "conflict"),
        (413, "too large"),
        (415, "unsupported media type"),
        (429, "too many requests in flight (bounded queue): retry after Retry-After seconds"),
        (500, "internal error"),
        (503, "unavailable (a replica restarting, a timeout): retry"),
    ]
}


KNOWN: list[tuple[type, int, str]] = [  # most specific first
    (TooLarge, 413, "request_too_large"),
    (UploadError, 400, "invalid_upload"),
    (PathNotAllowed, 403, "forbidden"),
    (EndpointRefused, 403, "forbidden"),
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
    (RegistryError, 400, "invalid_expert"),
    (RouterError, 400, "invalid_routing"),
    (ComposerError, 400, "invalid_request_error"),
    (BenchmarkError, 400, "invalid_benchmark"),
    (Unavailable, 503, "unavailable"),
    (ExpertUnavailable, 503, "expert_unavailable"),
]


def body(type_: str, message: str) -> dict:
    return {"error": {"type": type_, "message": message}}


def error_status(exc: BaseException) -> tuple[int, str, str]:
    """(status, type, message) for an exception; unexpected ones are 500 with a generic message."""
    if isinstance(exc, ApiError):
        return exc.status, exc.type, exc.message
    for cls, status, type_ in KNOWN:
        if isinstance(exc, cls):
            return status, type_, str(exc)
    log.exception("internal error", exc_info=exc)
    return 500, "internal_error", "internal error (see the server log)"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        if err.get("type") == "json_invalid":
            return "the request body is not valid JSON"
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse(body("invalid_request_error", _validation_message(exc)), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        type_ = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            body(type_, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    async def _known(request: Request, exc: Exception):
        status, type_, message = error_status(exc)
        return JSONResponse(body(type_, message), status_code=status, headers=getattr(exc, "headers", None))

    for cls in [ApiError, *(c for c, _, _ in KNOWN), Exception]:  # Exception: 500, logged
        app.add_exception_handler(cls, _known)
