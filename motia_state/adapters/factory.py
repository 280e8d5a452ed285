"""Build an adapter from configuration: a dict or a short string.

Strings: ``memory:``, ``file:PATH``, ``redis://...`` / ``rediss://...``.
Dicts: ``{"adapter": "memory" | "file" | "redis", ...}`` with the adapter's
own options (``path``, ``fsync`` for file; ``url``, ``key_prefix``, ``ttl``,
``timeout``, ``fallback``, ``cluster``, ``shards``, ``auto_pipeline`` for
Redis; ``feed_retention`` and ``feed_retention_bytes`` for all three). A
bad configuration is INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidArgumentError
from .base import StateAdapter
from .memory import MemoryStateAdapter

__all__ = ["create_state_adapter", "parse_state_config"]

_FEED_OPTIONS = {"feed_retention", "feed_retention_bytes"}


def parse_state_config(config: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Normalise a string or dict configuration into a dict with ``adapter``."""
    if config is None:
        return {"adapter": "memory"}
    if isinstance(config, str):
        if config in ("memory", "memory:"):
            return {"adapter": "memory"}
        if config.startswith("file:"):
            path = config[len("file:") :]
            if not path:
                raise InvalidArgumentError("path: 'file:' needs a directory, as in file:./state")
            return {"adapter": "file", "path": path}
        if config.startswith(("redis://", "rediss://", "unix://")):
            return {"adapter": "redis", "url": config}
        raise InvalidArgumentError(
            f"adapter: unknown state configuration {config!r} (use memory:, file:PATH or redis://...)"
        )
    if not isinstance(config, Mapping):
        raise InvalidArgumentError(f"config: expected a string or an object, got {type(config).__name__}")
    out = dict(config)
    kind = out.get("adapter", "memory")
    if kind not in ("memory", "file", "redis"):
        raise InvalidArgumentError(f"adapter: expected 'memory', 'file' or 'redis', got {kind!r}")
    out["adapter"] = kind
    return out


def create_state_adapter(config: str | Mapping[str, Any] | None = None) -> StateAdapter:
    """Create the adapter that ``config`` describes (default: in memory)."""
    options = parse_state_config(config)
    kind = options.pop("adapter")
    if kind == "memory":
        _no_extra(options, "memory", _FEED_OPTIONS)
        return MemoryStateAdapter(**options)
    if kind == "file":
        _no_extra(
            options, "file", {"path", "fsync", "fsync_interval_ms", "repair", "compact_min_bytes", *_FEED_OPTIONS}
        )
        path = options.pop("path", None)
        if not isinstance(path, str) or not path:
            raise InvalidArgumentError(f"path: the file adapter needs a directory path, got {path!r}")
        from .file import FileStateAdapter

        return FileStateAdapter(path, **options)
    _no_extra(
        options,
        "redis",
        {"url", "key_prefix", "ttl", "timeout", "fallback", "cluster", "shards", "auto_pipeline", *_FEED_OPTIONS},
    )
    fallback = options.pop("fallback", None)
    if fallback not in (None, "memory"):
        raise InvalidArgumentError(f"fallback: the only fallback is 'memory', got {fallback!r}")
    url = options.pop("url", "redis://127.0.0.1:6379/0")
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise InvalidArgumentError(f"url: expected redis://, rediss:// or unix://, got {url!r}")
    from .redis import FallbackStateAdapter, RedisStateAdapter

    adapter = RedisStateAdapter(url, **options)
    # No silent fallback: only an explicit "fallback": "memory" allows one.
    return adapter if fallback is None else FallbackStateAdapter(adapter)


def _no_extra(options: Mapping[str, Any], kind: str, allowed: set[str]) -> None:
    for name in options:
        if name not in allowed:
            raise InvalidArgumentError(f"{name}: not an option of the {kind} adapter")
