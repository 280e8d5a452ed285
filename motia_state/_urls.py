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
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    # Up to the last @ before the query: a password may hold an @, or a / its
    # writer did not encode as %2F (a store path or database never holds an @).
    before, question, query = rest.partition("?")
    if "@" not in before or before.startswith("/"):  # unix:///path: no credentials, the path may hold an @
        return url
    host = before.rsplit("@", 1)[1]
    return f"{scheme}://***@{host}{question}{query}"


#: A password given as a query parameter (``?password=...``, ``&password=...``).
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#\s'\"]*", re.IGNORECASE)

#: user:password@ after a URL's scheme, wherever a message quotes a URL (to the last @ of the URL, as in redacted).
_CREDENTIALS = re.compile(r"\b([a-z][a-z0-9+.-]*://)(?!/)[^\s?#'\"]*@", re.IGNORECASE)


def without_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***`` (an adapter's message may quote one)."""
    return _QUERY_PASSWORD.sub(r"\1***", _CREDENTIALS.sub(r"\1***@", text))
