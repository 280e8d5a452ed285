"""JSON answers and errors of the workbench endpoints, with the contract's statuses.

Internal module.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import StateError

__all__ = ["EXCEPTION_HANDLERS", "STATUS_BY_CODE", "error", "from_state_error", "json"]

#: HTTP status per error code; anything else (CORRUPT, INTERNAL, STEP_FAILED...) is 500.
STATUS_BY_CODE: Final = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "CURSOR_EXPIRED": 410,
    "LIMIT_EXCEEDED": 413,
    "TYPE_MISMATCH": 422,
    "UNAVAILABLE": 503,
    "TIMEOUT": 504,
}

_encoder = msgspec.json.Encoder()


def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (msgspec-encoded: big integers stay exact)."""
    return Response(_encoder.encode(body), status, headers, media_type="application/json")


def error(status: int, message: str, code: str, **extra: Any) -> Response:
    """``{"error": message, "code": code, ...}`` with ``status``."""
    return json({"error": message, "code": code, **extra}, status)


def from_state_error(e: StateError) -> Response:
    """The contract's answer for a StateError: its code, its message, never a stack."""
    return error(STATUS_BY_CODE.get(e.code, 500), e.message, e.code)


#: The code of the HTTP errors Starlette answers itself (no route, a method the route does not take).
_HTTP_CODES: Final = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 as ``{"error", "code"}``, like every other error here."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "INVALID_ARGUMENT" if exc.status_code < 500 else "INTERNAL")
    response = error(exc.status_code, str(exc.detail), code)
    response.headers.update(exc.headers or {})
    return response


#: ``exception_handlers`` for a Starlette application whose errors are all JSON.
EXCEPTION_HANDLERS: Final = {HTTPException: _http_error}
