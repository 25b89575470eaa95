"""One JSON shape for every error: ``{"code": ..., "message": ..., "details": {...}}``.

``code`` is a stable machine-readable word (``invalid_input``, ``not_found``, ``forbidden``…),
``message`` a sentence for people, ``details`` what helps fix the request (the fields that failed
validation, the role needed). Internals (tracebacks, SQL) never reach the client unless the app
runs in debug mode; they go to the log.
"""

from __future__ import annotations

import logging
from typing import Any

from apiflask import APIFlask
from apiflask.exceptions import HTTPError

log = logging.getLogger(__name__)

CODES = {
    400: "invalid_input", 401: "authentication_required", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "too_large",
    415: "unsupported_media_type", 422: "invalid_input", 429: "rate_limited",
    500: "internal_error", 503: "unavailable",
}

#: OpenAPI schema of the error body (used for every error response in the document).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message", "details"],
    "properties": {
        "code": {"type": "string", "description": "stable machine-readable error code"},
        "message": {"type": "string", "description": "what went wrong, for people"},
        "details": {"type": "object", "description": "what helps fix the request",
                    "additionalProperties": True},
    },
}


class ApiError(HTTPError):
    """An error with a stable code: ``raise ApiError(404, "unknown_territory", "…")``."""

    def __init__(self, status: int, code: str, message: str,
                 details: dict[str, Any] | None = None, headers: dict | None = None) -> None:
        super().__init__(status, message=message, detail=details or {}, headers=headers,
                         extra_data={"code": code})


def bad_request(message: str, **details: Any) -> ApiError:
    return ApiError(400, "invalid_input", message, details)


def not_found(what: str, **details: Any) -> ApiError:
    return ApiError(404, "not_found", what, details)


def init_app(app: APIFlask) -> None:
    """Install the error processor and the catch-all for unexpected exceptions."""

    @app.error_processor
    def _error(error: HTTPError):
        status = error.status_code
        code = (error.extra_data or {}).get("code") or CODES.get(status, "error")
        details = error.detail if isinstance(error.detail, dict) else {"detail": error.detail}
        if status in (400, 422) and "code" not in (error.extra_data or {}):
            # apiflask's validation errors: {"query": {"field": ["message"]}} in details.
            code = "invalid_input"
            status = 400
        message = error.message
        if status in (400, 422) and message in ("Bad Request", "Validation error",
                                               "Unprocessable Entity"):
            message = "the request's parameters or body are not valid: see details"
        return {"code": code, "message": message, "details": details}, status, error.headers

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        from werkzeug.exceptions import HTTPException

        if isinstance(exc, HTTPException):  # werkzeug errors go through apiflask's handler
            return app.error_callback(HTTPError(exc.code or 500, message=exc.name))
        log.exception("unhandled error on a request")
        message = f"{type(exc).__name__}: {exc}" if app.debug else "internal error (logged)"
        return {"code": "internal_error", "message": message, "details": {}}, 500
