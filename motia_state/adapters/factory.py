"""Build an adapter from configuration: a dict or a short string.

Strings: ``memory:``, ``file:PATH``, ``redis://...`` / ``rediss://...``.
Dicts: ``{"adapter": "memory" | "file" | "redis", ...}`` with the adapter's
own options (``path``, ``fsync`` for file; ``url``, ``key_prefix``, ``ttl``,
``timeout``, ``fallback``, ``cluster``, ``shards``, ``auto_pipeline`` for
Redis; ``feed_retention`` and ``feed_retention_bytes`` for all three). A
bad configuration is INVALID_ARGUMENT naming the field; so is a file
store's path that can never be a store (a file, a path inside a file, a
place where no store can be created), while a store that is there but
cannot be read or written stays UNAVAILABLE.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, UnavailableError
from .base import StateAdapter
from .memory import MemoryStateAdapter

__all__ = ["check_file_store_path", "create_state_adapter", "parse_state_config"]

#: Why a new store could not be created that say the place cannot hold one (not that storage failed).
_NO_PLACE_FOR_A_STORE = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EEXIST,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.EINVAL,
        errno.ENAMETOOLONG,
        errno.ELOOP,
    }
)

#: What a file store's path must be, for the messages that refuse one.
_STORE_PATH = "a file store is a directory: an existing store, or a new path to create one at"

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
        present = check_file_store_path(path)
        from .file import FileStateAdapter

        try:
            return FileStateAdapter(path, **options)
        except (OSError, UnavailableError) as e:
            cause = e if isinstance(e, OSError) else e.__cause__
            if present or not isinstance(cause, OSError) or cause.errno not in _NO_PLACE_FOR_A_STORE:
                if isinstance(e, OSError):  # the store's files failed: as any storage failure, retryable
                    raise UnavailableError(f"cannot open the store at {path}: {e}", file=path) from e
                raise
            where = f"{cause.filename}: " if cause.filename else ""
            raise InvalidArgumentError(
                f"path: no store can be created at {path}: {where}{cause.strerror or cause} ({_STORE_PATH})"
            ) from e
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


def check_file_store_path(path: str) -> bool:
    """Whether a file store is at ``path``; InvalidArgumentError when ``path`` can never be one.

    A store is a directory. A path that names something else (a regular
    file, a device, a pipe), or that lies inside such a thing, is refused
    with a message saying what is there; so is a path the system cannot
    even look up (a NUL byte, too long, a loop of links). A path that is
    not there yet is fine: a store is created there when one is opened.
    """
    if "\0" in path:
        raise InvalidArgumentError(f"path: {path!r} holds a NUL byte, which no file name can")
    target = Path(path)
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        _check_ancestors(target, path)
        return False
    except OSError as e:
        if e.errno in (errno.ENAMETOOLONG, errno.ELOOP):
            raise InvalidArgumentError(f"path: {path} cannot be looked up: {e.strerror} ({_STORE_PATH})") from None
        return False  # not allowed to look: opening the store says why
    if not stat.S_ISDIR(mode):
        raise InvalidArgumentError(f"path: {path} is {_kind(mode)}, not a directory ({_STORE_PATH})")
    for name in ("log", "snapshot"):
        try:
            os.stat(target / name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return True  # not allowed to look inside: a store may well be there, and failing to open it is UNAVAILABLE
        return True
    return False


def _check_ancestors(target: Path, path: str) -> None:
    """Refuse a missing path whose nearest existing ancestor is not a directory."""
    for parent in target.parents:
        try:
            mode = os.stat(parent).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return
        if not stat.S_ISDIR(mode):
            raise InvalidArgumentError(
                f"path: {path} lies inside {parent}, which is {_kind(mode)}, not a directory ({_STORE_PATH})"
            )
        return


def _kind(mode: int) -> str:
    """What a file that is not a directory is, for a message."""
    for test, kind in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a directory"


def _no_extra(options: Mapping[str, Any], kind: str, allowed: set[str]) -> None:
    for name in options:
        if name not in allowed:
            raise InvalidArgumentError(f"{name}: not an option of the {kind} adapter")
