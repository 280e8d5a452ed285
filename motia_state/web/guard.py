"""Who may talk to the workbench: allowed Hosts, same Origin, JSON writes, the token.

Every ``/__motia`` endpoint is wrapped by :func:`guarded`. The checks run in
an order that leaks nothing: a foreign Host or Origin (DNS rebinding, a
cross-site page) is refused first (403), then a missing token (401), then a
write without a JSON content type (415), which a cross-site HTML form
cannot send without a CORS preflight.

Internal module: used by :mod:`motia_state.web.endpoints`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Collection
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from .responses import error

__all__ = ["LOOPBACK_HOSTS", "SESSION_COOKIE", "Guard"]

#: Host names always allowed (with any port): the loopback interface.
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
#: Bind addresses that mean "every interface": any Host is then accepted, the token guards.
WILDCARD_HOSTS: Final = frozenset({"0.0.0.0", "::", "[::]"})
#: The cookie that carries a browser's session (a digest of the token, never the token).
SESSION_COOKIE: Final = "motia_session"

Endpoint = Callable[[Request], Awaitable[Response]]


def _host_name(host: str) -> str:
    """``host[:port]`` without the port (an IPv6 literal keeps its brackets)."""
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end >= 0 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """The safety rules of one workbench: allowed hosts and an optional token."""

    def __init__(self, token: str | None = None, allowed_hosts: Collection[str] = ()) -> None:
        self.token = token or None
        self.hosts = LOOPBACK_HOSTS | {_host_name(h.lower()) for h in allowed_hosts}
        # Bound to every interface, a server is reached under names it cannot
        # know; its token (required then) keeps a rebinding page out instead,
        # since the browser never sends the session cookie to another name.
        self.any_host = self.token is not None and bool(self.hosts & WILDCARD_HOSTS)
        self._session = (
            hmac.new(self.token.encode(), b"motia-workbench-session", hashlib.sha256).hexdigest()
            if self.token
            else None
        )

    @property
    def session_value(self) -> str | None:
        """The session cookie's value (None without a token)."""
        return self._session

    def check_token(self, given: str) -> bool:
        """Whether ``given`` is the token (compared in constant time)."""
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def refuse_origin(self, request: Request) -> Response | None:
        """403 for a Host that is not allowed or an Origin that is not this host's own."""
        host = request.headers.get("host", "")
        if not self.any_host and _host_name(host.lower()) not in self.hosts:
            return error(403, f"host {host!r} is not allowed (start the server with --host to allow it)", "FORBIDDEN")
        origin = request.headers.get("origin")
        if origin is not None and origin.lower() not in (f"http://{host.lower()}", f"https://{host.lower()}"):
            return error(403, f"cross-origin request from {origin!r} refused", "FORBIDDEN")
        return None

    def refuse(self, request: Request, *, write: bool) -> Response | None:
        """The first rule ``request`` breaks, as an error response, or None."""
        denied = self.refuse_origin(request)
        if denied is not None:
            return denied
        if self.token is not None:
            scheme, _, credentials = request.headers.get("authorization", "").strip().partition(" ")
            cookie = request.cookies.get(SESSION_COOKIE, "")
            # The scheme's name is case-insensitive (RFC 9110): "bearer T" is "Bearer T".
            ok = (scheme.lower() == "bearer" and self.check_token(credentials.strip())) or (
                self._session is not None and hmac.compare_digest(cookie.encode(), self._session.encode())
            )
            if not ok:
                return error(401, "this workbench needs its token: 'Authorization: Bearer <token>'", "UNAUTHORIZED")
        if write:
            kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if kind != "application/json":
                return error(415, "a write needs 'Content-Type: application/json'", "UNSUPPORTED_MEDIA_TYPE")
        return None

    def wrap(self, endpoint: Endpoint, *, write: bool) -> Endpoint:
        """``endpoint`` behind :meth:`refuse`."""

        async def guarded(request: Request) -> Response:
            return self.refuse(request, write=write) or await endpoint(request)

        guarded.__name__ = endpoint.__name__
        return guarded
