"""HTTP: the API steps as Starlette routes, and the answer shapes of a step's return value.

A request becomes the handler's input ``{"body", "rawBody",
"pathParams", "queryParams", "headers", "method", "path"}`` (path parameters
URL-decoded, a repeated query parameter a list, header names lower-case).
The handler's return value becomes the response: ``{"status", "body",
"headers"?}`` when ``status`` is an integer and no other keys are present,
any other value a 200 with that JSON body. A handler that raises answers
500 ``{"error", "code": "STEP_FAILED"}``. The body is read by its
``Content-Type`` (a form an object, text a string, anything else JSON);
one that does not read as that answers 400, one larger than the workers'
frame limit 413 ``LIMIT_EXCEEDED`` before it is read whole.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from ..errors import StateError, StepError
from ..rpc.frames import DEFAULT_MAX_FRAME_BYTES
from .config import ApiTrigger

__all__ = [
    "ApiCall",
    "BodyTooLarge",
    "Cors",
    "decode_body",
    "error_response",
    "json_response",
    "read_body",
    "request_input",
    "response_for",
    "routes_for",
]

log = logging.getLogger("motia_state.app")

#: Runs an API step: (step name, handler input) -> the handler's return value.
ApiCall = Callable[[str, dict[str, Any]], Awaitable[Any]]

_RESPONSE_KEYS = frozenset({"status", "body", "headers"})
#: rawBody is considered for a body of at most 1/_RAW_BODY_SHARE of the frame limit, and sent
#: when the input with it leaves _FRAME_ROOM bytes of the frame for the invoke envelope.
_RAW_BODY_SHARE = 4
_FRAME_ROOM = 64 * 1024
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
    """The handler input of a request; ValueError when the body does not read as its type (see decode_body).

    ``rawBody`` is the body as the client sent it, as text (in its charset,
    UTF-8 unless named), for a check over the exact bytes such as a
    webhook's signature, as in Motia; it is left out when the input with it
    would not fit in one frame (a body over a quarter of ``limit``, 4 MiB by
    default, is never sent twice).

    Raises :class:`BodyTooLarge` for a body over ``limit`` bytes.
    """
    raw = await read_body(request, limit)
    content_type = request.headers.get("content-type", "")
    data: dict[str, Any] = {
        "body": decode_body(raw, content_type),
        "pathParams": dict(request.path_params),  # Starlette decodes each segment
        "queryParams": _params(request.query_params.multi_items()),
        "headers": _headers(request.headers.items()),
        "method": request.method,
        "path": request.url.path,
    }
    if len(raw) <= limit // _RAW_BODY_SHARE:
        try:
            text = raw.decode(_charset(content_type), errors="replace")
        except (LookupError, UnicodeError):  # an unknown charset, or one (idna) that cannot replace
            text = raw.decode("utf-8", errors="replace")
        # Escaped as JSON, text can grow up to six times (control characters): measure it.
        if len(_encoder.encode(data)) + len(_encoder.encode(text)) <= limit - _FRAME_ROOM:
            data["rawBody"] = text
    return data


def _headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    # As Node gives them to Motia's handlers: a header sent several times is one value, its
    # values joined with ", " (a cookie's with "; "), not only the last one.
    out: dict[str, str] = {}
    for name, value in items:
        name = name.lower()
        if name in out:
            out[name] += ("; " if name == "cookie" else ", ") + value
        else:
            out[name] = value
    return out


def _params(items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    # Motia's shape: a name given once is a string, given several times a list of strings.
    out: dict[str, Any] = {}
    for name, value in items:
        if name in out:
            seen = out[name]
            out[name] = [*seen, value] if isinstance(seen, list) else [seen, value]
        else:
            out[name] = value
    return out


def decode_body(raw: bytes, content_type: str) -> Any:
    """A request body as the handler's ``body``, read by its ``Content-Type`` as Motia reads it.

    A form (``application/x-www-form-urlencoded``) becomes an object of
    strings (a repeated field a list of them), ``text/*`` a string, anything
    else JSON (also without a ``Content-Type``); an empty body is None. A
    form or ``text/plain`` body that is JSON is read as JSON: they are what
    ``curl -d '{...}'`` and a browser's ``fetch`` label JSON with by default.
    Raises ValueError with a message saying what the body was read as.
    """
    if not raw.strip():
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    charset = _charset(content_type)
    if media in ("application/x-www-form-urlencoded", "text/plain") and raw.lstrip()[:1] in (b"{", b"["):
        # JSON sent with the type a client puts on a body by default (curl -d: a form; a browser's
        # fetch of a string: text/plain) is read as the JSON it is: no form starts so.
        with contextlib.suppress(msgspec.DecodeError):
            return msgspec.json.decode(raw)
    if media == "application/x-www-form-urlencoded":
        try:
            # Percent-escapes decode in the form's charset too, strictly: no silent replacement characters.
            return _params(parse_qsl(raw.decode(charset), keep_blank_values=True, encoding=charset, errors="strict"))
        except (UnicodeDecodeError, LookupError) as e:
            raise ValueError(f"the request's form body is not {charset} text: {e}") from None
    if media.startswith("text/"):
        try:
            return raw.decode(charset)
        except (UnicodeDecodeError, LookupError) as e:
            raise ValueError(f"the request's text body is not {charset} text: {e}") from None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        if not media or media == "application/json" or media.endswith("+json"):
            raise ValueError(f"the request body is not JSON: {e}") from None
        raise ValueError(
            f"the request body (Content-Type: {media}) is not JSON: {e}; an API step reads JSON, "
            "a form (application/x-www-form-urlencoded) or text (text/*)"
        ) from None


def _charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"'):
            return value.strip().strip('"')
    return "utf-8"


def response_for(result: Any) -> Response:
    """The HTTP response of a handler's return value (see the module docstring).

    A header's value may be a list of strings, each sent as a header line
    of its own (several ``Set-Cookie``), as Motia (Express) sends it. A
    string ``body`` with a ``Content-Type`` that is not JSON (``text/html``,
    ``text/csv``...) is sent as it is, in that type's charset (UTF-8 unless
    named); any other body is JSON.
    """
    if not (
        isinstance(result, dict)
        and isinstance(result.get("status"), int)
        and not isinstance(result.get("status"), bool)
        and set(result) <= _RESPONSE_KEYS
    ):
        return json_response(result)
    headers = result.get("headers")
    if headers is not None and not (isinstance(headers, dict) and all(_header_value(v) for v in headers.values())):
        message = "the step's response headers must be an object of strings (or lists of strings)"
        return error_response(500, message, "STEP_FAILED")
    status = int(result["status"])
    if not 200 <= status <= 599:
        # A final response is 2xx..5xx: the server cannot send anything else and would drop the connection.
        return error_response(500, f"the step's response status {status} is not from 200 to 599", "STEP_FAILED")
    lines = [(str(k), str(item)) for k, v in (headers or {}).items() for item in (v if isinstance(v, list) else [v])]
    bad = _bad_header(lines)
    if bad is not None:
        return error_response(500, f"the step's response {bad}", "STEP_FAILED")
    body = result.get("body")
    content_type = next((v for k, v in lines if k.lower() == "content-type"), None)
    if status in (204, 304):
        response = Response(status_code=status)
    elif isinstance(body, str) and content_type is not None and not _is_json(content_type):
        charset = _charset(content_type)
        try:
            response = Response(body.encode(charset), status_code=status)
        except (UnicodeError, LookupError) as e:  # UnicodeError: idna refuses a long label, say
            return error_response(500, f"the step's response body cannot be sent as {charset}: {e}", "STEP_FAILED")
    else:
        response = json_response(body, status)
    for name, value in lines:
        if name.lower() == "content-type":
            response.headers[name] = value  # replaces the one the response set
        else:
            response.headers.append(name, value)
    return response


def _header_value(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, (str, int, float)) for v in value)
    return isinstance(value, (str, int, float))


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


#: The characters of an HTTP header name (RFC 9110 token).
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Headers the server writes itself from the body it sends.
_FRAMING = frozenset({"content-length", "transfer-encoding"})


def _bad_header(headers: list[tuple[str, str]]) -> str | None:
    """Why a step's headers cannot be sent (a name that is not a token, a control character, framing), or None."""
    for name, value in headers:
        if not name or not set(name) <= _TOKEN:
            return f"header name {name!r} is not a valid HTTP header name"
        if name.lower() in _FRAMING:
            return f"header {name!r} is set by the server from the body"
        if any(c in value for c in "\r\n\x00"):
            return f"header {name!r} holds a line break or NUL"
        if not value.isascii() and any(ord(c) > 0xFF for c in value):
            return f"header {name!r} holds characters that HTTP cannot carry (percent-encode them)"
    return None


class Cors:
    """Which pages of other origins a browser lets call the API routes (``dev --cors``).

    ``origins`` are ``scheme://host[:port]`` strings, or ``"*"`` for any.
    An allowed origin's requests are answered with
    ``Access-Control-Allow-Origin`` (and its preflights with the methods
    served at the path and the headers asked for); a refused one's are
    answered as ever, which the browser does not let the page read, and
    the first of them from each origin logs a warning that says how to
    allow it. Requests of the server's own origin are never concerned.
    """

    def __init__(self, origins: Collection[str] = ()) -> None:
        self.any = "*" in origins
        self.origins = frozenset(o.strip().rstrip("/").lower() for o in origins if o.strip() != "*")
        self._warned: set[str] = set()

    def allowed(self, request: Request) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for a cross-origin request, None when none is sent.

        None also for a request without an ``Origin`` or from the server's own origin.
        """
        origin = request.headers.get("origin")
        if origin is None or _same_origin(origin, request):
            return None
        if self.any:
            return "*"
        if origin.rstrip("/").lower() in self.origins:
            return origin
        if origin not in self._warned and len(self._warned) < 100:
            self._warned.add(origin)
            allow = "'*'" if origin == "null" else origin
            log.warning(
                "a page at %s called %s %s from a browser, which does not let it read the answer (CORS): "
                "start dev with --cors %s to allow it",
                origin,
                request.headers.get("access-control-request-method", request.method),
                request.url.path,
                allow,
            )
        return None

    def add_to(self, response: Response, request: Request) -> Response:
        """``response`` with the CORS headers an allowed cross-origin ``request`` needs."""
        allow = self.allowed(request)
        if allow is not None:
            response.headers["Access-Control-Allow-Origin"] = allow
            response.headers["Access-Control-Expose-Headers"] = "*"
        if not self.any:
            response.headers.append("Vary", "Origin")
        return response


def _same_origin(origin: str, request: Request) -> bool:
    host = request.headers.get("host", "").lower()
    return origin.lower() in (f"http://{host}", f"https://{host}")


def routes_for(
    api: list[tuple[ApiTrigger, str]],
    call: ApiCall,
    *,
    debug: bool = False,
    max_body_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    cors: Cors | None = None,
) -> list[BaseRoute]:
    """One Starlette route per (API trigger, step name); a body over ``max_body_bytes`` is answered 413 unread.

    ``cors`` says which other origins' pages may call them (none by default).
    """
    cors = cors or Cors()

    def endpoint_for(step: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return cors.add_to(await answer(request), request)

        async def answer(request: Request) -> Response:
            try:
                data = await request_input(request, max_body_bytes)
            except BodyTooLarge as e:
                return error_response(413, str(e), "LIMIT_EXCEEDED")
            except ValueError as e:
                return error_response(400, str(e), "INVALID_ARGUMENT")
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

    routes = [_ApiRoute(t.route, endpoint_for(step), method=t.method, name=f"{step}:{t.method}") for t, step in api]
    for route in routes:
        route.siblings = routes
        route.cors = cors
    return list(routes)


# Stands for an encoded slash inside a segment while a route matches.
_SLASH = "\uffff"


class _ApiRoute(Route):
    """An API step's route, matched as Motia's (Express's default router) matches it.

    - An encoded slash stays inside its path parameter: the server decodes
      the path before routing, so ``/files/a%2Fb`` would reach
      ``/files/:name`` as three segments; this route splits the raw path
      into segments first, then decodes each (``name`` = ``"a/b"``).
    - One trailing slash is optional, on the route and on the request
      alike: ``/files/x/`` is served by ``/files/:name`` at once (no
      redirect, so a client that does not follow one, or that would drop
      the body on the way, gets its answer).
    - A method that no step serves at the path answers 405 with an
      ``Allow`` header naming every method that one does, and ``OPTIONS``
      (when no step serves it there) answers 204 with the same header.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], *, method: str, name: str) -> None:
        super().__init__(path, endpoint, methods=[method], name=name)
        #: Every API route of the app (this one included): what else a path is served for.
        self.siblings: list[_ApiRoute] = [self]
        #: Which other origins' pages may call it.
        self.cors = Cors()

    def _route_path(self, scope: Scope) -> str | None:
        """The path this route matches against, when it is not the scope's own: None when it is."""
        path: str = scope["path"]
        raw = scope.get("raw_path")
        if raw and b"%2f" in raw.lower():
            segments = [unquote(s) for s in raw.split(b"?", 1)[0].decode("latin-1").split("/")]
            if not any(_SLASH in s for s in segments):  # the stand-in itself was sent: match the plain path
                path = "/".join(s.replace("/", _SLASH) for s in segments)
        # A mount's root_path is taken off this path as off the decoded one (see get_route_path):
        # the slash that is the whole of what is left under the mount stays.
        if path.endswith("/") and len(path) > len(scope.get("root_path", "")) + 1:
            path = path[:-1]
        return None if path == scope["path"] else path

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return super().matches(scope)
        path = self._route_path(scope)
        if path is None:
            return super().matches(scope)
        match, child = super().matches({**scope, "path": path})
        if match is not Match.NONE and _SLASH in path:
            params = child["path_params"]
            child["path_params"] = {k: v.replace(_SLASH, "/") if isinstance(v, str) else v for k, v in params.items()}
        return match, child

    def allowed(self, scope: Scope) -> list[str]:
        """Every method the app's API steps serve at this request's path, sorted."""
        methods: set[str] = set()
        for route in self.siblings:
            if route.methods and route.matches(scope)[0] is not Match.NONE:
                methods |= route.methods
        return sorted(methods)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            # Reached for a path that no route takes this method for (Starlette tried them all).
            allow = ", ".join(self.allowed(scope))
            if scope["method"] == "OPTIONS":
                response = Response(status_code=204, headers={"Allow": allow})
                request = Request(scope)
                if "access-control-request-method" in request.headers:  # a browser's CORS preflight
                    origin = self.cors.allowed(request)
                    if origin is not None:
                        asked = request.headers.get("access-control-request-headers")
                        response.headers["Access-Control-Allow-Origin"] = origin
                        response.headers["Access-Control-Allow-Methods"] = allow
                        if asked:
                            response.headers["Access-Control-Allow-Headers"] = asked
                        response.headers["Access-Control-Max-Age"] = "600"
                    if not self.cors.any:
                        response.headers["Vary"] = "Origin"
            else:
                message = f"{scope['method']} is not served at this path (it serves {allow})"
                response = error_response(405, message, "METHOD_NOT_ALLOWED")
                response.headers["Allow"] = allow
            await response(scope, receive, send)
            return
        await super().handle(scope, receive, send)
