"""Store URLs as messages and logs show them: never with their credentials."""

from __future__ import annotations

import re

__all__ = ["redacted", "without_credentials"]


def redacted(url: str) -> str:
    """A store URL without its credentials (for headers, messages and logs).

    Both places a Redis URL holds a password are covered: ``user:password@``
    before the host and a ``password=`` parameter in the query (redis-py
    reads it there; it is the usual way to give a unix socket's password).
    """
    url = _QUERY_PASSWORD.sub(r"\1***", url)
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        netloc, slash, path = rest.partition("/")
        host = netloc.rsplit("@", 1)[1]  # the last @: a password may hold one
        return f"{scheme}://***@{host}{slash}{path}"
    return url


#: A password given as a query parameter (``?password=...``, ``&password=...``).
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#\s'\"]*", re.IGNORECASE)

#: user:password@ after a URL's scheme, wherever a message quotes a URL.
_CREDENTIALS = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^\s/]*@", re.IGNORECASE)


def without_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***`` (an adapter's message may quote one)."""
    return _QUERY_PASSWORD.sub(r"\1***", _CREDENTIALS.sub(r"\1***@", text))
