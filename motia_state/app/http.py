"""HTTP: the API steps as Starlette routes, and the answer shapes of a step's return value.

A request becomes the handler's input ``{"body", "pathParams",
"queryParams", "headers", "method", "path"}`` (path parameters
URL-decoded, a repeated query parameter a list, header names lower-case).
The handler's return value becomes the response: ``{"status", "body",
"headers"?}`` when ``status`` is an integer and no other keys are present,
any other value a 200 with that JSON body. A handler that raises answers
500 ``{"error", "code": "STEP_FAILED"}``; a body that is not JSON, 400; a
body larger than the workers' frame limit, 413 ``LIMIT_EXCEEDED`` before
it is read whole.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from ..errors import StateError, StepError
from ..rpc.frames import DEFAULT_MAX_FRAME_BYTES
from .config import ApiTrigger

__all__ = [
    "ApiCall",
    "BodyTooLarge",
    "error_response",
    "json_response",
    "read_body",
    "request_input",
    "response_for",
    "routes_for",
]

#: Runs an API step: (step name, handler input) -> the handler's return value.
ApiCall = Callable[[str, dict[str, Any]], Awaitable[Any]]

_RESPONSE_KEYS = frozenset({"status", "body", "headers"})
_STATUS_FOR_CODE = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "LIMIT_EXCEEDED": 413,
    "UNAVAILABLE": 503,
    "TIMEOUT": 504,
}
_encoder = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (msgspec-encoded: large integers stay exact)."""
    return Response(_encoder.encode(body), status_code=status, headers=headers, media_type="application/json")


def error_response(status: int, message: str, code: str, stack: str | None = None) -> Response:
    """``{"error": message, "code": code}`` (with ``stack`` when given)."""
    body: dict[str, Any] = {"error": message, "code": code}
    if stack:
        body["stack"] = stack
    return json_response(body, status)


class BodyTooLarge(Exception):
    """A request body over the limit (the workers' frame limit): answered 413 before it is read whole."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with :class:`BodyTooLarge` as soon as it is known to pass ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before anything
    is read, and a body sent without one stops being read once it passes
    the limit: no body larger than what a worker could be sent is held.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body ({int(declared):,} bytes) is over the limit of {limit:,} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"the request body is over the limit of {limit:,} bytes")
    return bytes(body)


async def request_input(request: Request, limit: int = DEFAULT_MAX_FRAME_BYTES) -> dict[str, Any]:
    """The handler input of a request; InvalidArgument-shaped ValueError when the body is not JSON.

    Raises :class:`BodyTooLarge` for a body over ``limit`` bytes.
    """
    raw = await read_body(request, limit)
    body: Any = None
    if raw.strip():
        body = msgspec.json.decode(raw)  # msgspec.DecodeError (a ValueError) when it is not JSON
    query: dict[str, Any] = {}
    for name, value in request.query_params.multi_items():
        if name in query:
            seen = query[name]
            query[name] = [*seen, value] if isinstance(seen, list) else [seen, value]
        else:
            query[name] = value
    return {
        "body": body,
        "pathParams": dict(request.path_params),  # Starlette decodes each segment
        "queryParams": query,
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "method": request.method,
        "path": request.url.path,
    }


def response_for(result: Any) -> Response:
    """The HTTP response of a handler's return value (see the module docstring)."""
    if (
        isinstance(result, dict)
        and isinstance(result.get("status"), int)
        and not isinstance(result.get("status"), bool)
        and set(result) <= _RESPONSE_KEYS
    ):
        headers = result.get("headers")
        if headers is not None and not (
            isinstance(headers, dict) and all(isinstance(v, (str, int, float)) for v in headers.values())
        ):
            return error_response(500, "the step's response headers must be an object of strings", "STEP_FAILED")
        status = int(result["status"])
        if not 200 <= status <= 599:
            # A final response is 2xx..5xx: the server cannot send anything else and would drop the connection.
            return error_response(500, f"the step's response status {status} is not from 200 to 599", "STEP_FAILED")
        str_headers = {str(k): str(v) for k, v in (headers or {}).items()}
        bad = _bad_header(str_headers)
        if bad is not None:
            return error_response(500, f"the step's response {bad}", "STEP_FAILED")
        if status in (204, 304):
            return Response(status_code=status, headers=str_headers)
        return json_response(result.get("body"), status, str_headers)
    return json_response(result)


#: The characters of an HTTP header name (RFC 9110 token).
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Headers the server writes itself from the body it sends.
_FRAMING = frozenset({"content-length", "transfer-encoding"})


def _bad_header(headers: dict[str, str]) -> str | None:
    """Why a step's headers cannot be sent (a name that is not a token, a control character, framing), or None."""
    for name, value in headers.items():
        if not name or not set(name) <= _TOKEN:
            return f"header name {name!r} is not a valid HTTP header name"
        if name.lower() in _FRAMING:
            return f"header {name!r} is set by the server from the body"
        if any(c in value for c in "\r\n\x00"):
            return f"header {name!r} holds a line break or NUL"
        if not value.isascii() and any(ord(c) > 0xFF for c in value):
            return f"header {name!r} holds characters that HTTP cannot carry (percent-encode them)"
    return None


def routes_for(
    api: list[tuple[ApiTrigger, str]],
    call: ApiCall,
    *,
    debug: bool = False,
    max_body_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> list[BaseRoute]:
    """One Starlette route per (API trigger, step name); a body over ``max_body_bytes`` is answered 413 unread."""

    def endpoint_for(step: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                data = await request_input(request, max_body_bytes)
            except BodyTooLarge as e:
                return error_response(413, str(e), "LIMIT_EXCEEDED")
            except ValueError as e:
                return error_response(400, f"the request body is not JSON: {e}", "INVALID_ARGUMENT")
            except RecursionError:
                message = "the request body nests too deep to read (values nest at most 256 levels)"
                return error_response(413, message, "LIMIT_EXCEEDED")
            try:
                result = await call(step, data)
            except StepError as e:
                status = 504 if e.code == "TIMEOUT" else 500
                return error_response(status, e.message, e.code, e.stack if debug else None)
            except StateError as e:
                return error_response(_STATUS_FOR_CODE.get(e.code, 500), e.message, e.code)
            return response_for(result)

        return endpoint

    return [_ApiRoute(t.route, endpoint_for(step), methods=[t.method], name=f"{step}:{t.method}") for t, step in api]


# Stands for an encoded slash inside a segment while a route matches.
_SLASH = "\uffff"


class _ApiRoute(Route):
    """A route whose path parameters may hold an encoded slash, as in Motia (Express).

    The server decodes the path before routing, so ``/files/a%2Fb`` would
    reach ``/files/:name`` as three segments and answer 404: this route
    splits the raw path into segments first, then decodes each
    (``name`` = ``"a/b"``). Paths without ``%2F`` match as usual.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        raw = scope.get("raw_path")
        if scope["type"] != "http" or not raw or b"%2f" not in raw.lower():
            return super().matches(scope)
        segments = [unquote(s) for s in raw.split(b"?", 1)[0].decode("latin-1").split("/")]
        if any(_SLASH in s for s in segments):
            return super().matches(scope)  # the stand-in itself was sent: match the plain path
        # A mount's root_path is taken off this path as off the decoded one (see get_route_path).
        match, child = super().matches({**scope, "path": "/".join(s.replace("/", _SLASH) for s in segments)})
        if match is not Match.NONE:
            params = child["path_params"]
            child["path_params"] = {k: v.replace(_SLASH, "/") if isinstance(v, str) else v for k, v in params.items()}
        return match, child
