"""Where the Redis adapter keeps things: the key layout, its marker, and the layout before it.

A store is split into a fixed number of **shards** (16 on a Redis Cluster,
1 on a single server unless asked otherwise). Each shard is one hash tag
shared by its keys, so on a cluster they sit in one slot and one script
call may touch them all:

- ``<prefix>{s<n>}:g:<group>``: a group's hash (field = key, value = the
  entry's compact JSON text); ``{``, ``}`` and ``%`` in the group name
  percent-escaped;
- ``<prefix>{s<n>}:feed``: the shard's change feed, a stream of one entry
  per write call holding all of that call's records (see ``stream.py``);
- ``<prefix>{s<n>}:groups``: the shard's group index, a sorted set of the
  names of its groups that hold entries (listed by ``ZRANGEBYLEX``).

A group's shard is the CRC-32 of its UTF-8 name modulo the shard count. The
layout and the shard count are recorded once in ``<prefix>layout`` (JSON
``{"layout": 3, "shards": n}``), written by the first runtime that uses
the prefix; every later one reads it and follows it.

Other layouts are refused with :class:`RedisLayoutError`:

- layout 2, the same keys with one stream entry per feed record, field by
  field: :func:`upgrade_layout` makes it layout 3 in place by rewriting the
  marker (this version reads both kinds of entries, so the records and
  their cursors stay as they are);
- the layout before the feed (``<prefix>{<group>}`` hashes, no marker):
  :func:`iter_legacy_entries` reads it, so that ``motia-state migrate``
  can copy it into this one.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Any, Final

import msgspec

from ...errors import InvalidArgumentError

__all__ = [
    "CLUSTER_SHARDS",
    "LAYOUT_VERSION",
    "MAX_SHARDS",
    "Layout",
    "RedisLayoutError",
    "escape_group",
    "iter_legacy_entries",
    "legacy_groups",
    "marker_layout",
    "read_layout",
    "unescape_group",
    "upgrade_layout",
]

#: The version of the key layout described above.
LAYOUT_VERSION: Final = 3
#: The version before it, which :func:`upgrade_layout` upgrades in place.
UPGRADABLE_VERSION: Final = 2
#: Shards of a new store on a Redis Cluster (a single server gets 1: one total order).
CLUSTER_SHARDS: Final = 16
#: The most shards a store may have.
MAX_SHARDS: Final = 1024

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class RedisLayoutError(InvalidArgumentError):
    """Raised when a Redis holds motia-state data in another key layout than this version's.

    Code INVALID_ARGUMENT: the URL and ``key_prefix`` point at a store this
    version does not write, so nothing is written there (never two layouts
    at once). ``motia-state migrate`` copies the data into the current layout.
    """


def escape_group(group: str) -> str:
    """The group as written inside a key: ``%``, ``{`` and ``}`` percent-escaped."""
    return group.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def unescape_group(text: str) -> str:
    """The group whose escaped form is ``text``."""
    return text.replace("%7D", "}").replace("%7B", "{").replace("%25", "%")


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class Layout:
    """The keys of one store: ``prefix`` and ``shards`` as its marker records them."""

    __slots__ = ("_hash_prefixes", "feeds", "indexes", "prefix", "shards")

    def __init__(self, prefix: str, shards: int) -> None:
        self.prefix = prefix
        self.shards = shards
        tags = [f"{prefix}{{s{n}}}:" for n in range(shards)]
        self._hash_prefixes = [f"{tag}g:" for tag in tags]
        #: Each shard's feed stream.
        self.feeds = [f"{tag}feed".encode() for tag in tags]
        #: Each shard's group index.
        self.indexes = [f"{tag}groups".encode() for tag in tags]

    def shard(self, group: str) -> int:
        """The shard that holds ``group``."""
        if self.shards == 1:
            return 0
        return zlib.crc32(group.encode()) % self.shards

    def hash_prefix(self, shard: int) -> str:
        """What every group hash of ``shard`` starts with (the escaped group follows)."""
        return self._hash_prefixes[shard]

    def hash_key(self, group: str) -> str:
        """The Redis key of ``group``'s hash."""
        return self._hash_prefixes[self.shard(group)] + escape_group(group)

    def marker(self) -> bytes:
        """The marker's JSON text."""
        return _encode({"layout": LAYOUT_VERSION, "shards": self.shards})


def _refuse(prefix: str, what: str) -> RedisLayoutError:
    return RedisLayoutError(
        f"Redis holds motia-state data under the prefix {prefix!r} in {what}, which this version does not "
        f"write; copy it into the current layout with `motia-state migrate` (see docs/redis.md), or use "
        f"another key_prefix"
    )


def _refuse_upgradable(prefix: str, shards: int) -> RedisLayoutError:
    return RedisLayoutError(
        f"Redis holds motia-state data under the prefix {prefix!r} in layout {UPGRADABLE_VERSION} ({shards} "
        f"shard{'s' if shards != 1 else ''}; one stream entry per feed record), which this version does not "
        f"write; stop the runtimes of the older version, then upgrade it in place with `motia-state migrate` "
        f"naming this Redis as both --from and --to (see docs/redis.md); its data, feed records and cursors "
        f"are kept"
    )


async def legacy_groups(client: Any, prefix: str) -> AsyncIterator[str]:
    """The groups stored in the layout before the feed (``<prefix>{<group>}`` hashes), by SCAN."""
    start = len(prefix) + 1
    async for name in client.scan_iter(match=_glob_escape(prefix) + "{*}", count=1000, _type="hash"):
        text = name.decode() if isinstance(name, bytes) else name
        # Keys of the current layout go on after the tag: only "{...}" at the very end is the old one.
        if text.endswith("}") and "}" not in text[start:-1]:
            yield unescape_group(text[start:-1])


async def iter_legacy_entries(client: Any, prefix: str) -> AsyncIterator[tuple[str, str, Any]]:
    """Every ``(group, key, value)`` of the layout before the feed, group by group, keys sorted.

    ``client`` is a ``redis.asyncio`` client (or cluster client). Each group
    is read with HSCAN, so a large group is never fetched in one reply; only
    one group's keys are held at a time. For ``motia-state migrate``, which
    copies them into the current layout.
    """
    async for group in legacy_groups(client, prefix):
        key = f"{prefix}{{{escape_group(group)}}}"
        entries = {}
        async for field, text in client.hscan_iter(key, count=1000):
            entries[field.decode()] = text
        for name in sorted(entries):
            yield group, name, _decode(entries[name])


async def read_layout(client: Any, prefix: str, shards: int | None, default_shards: int) -> Layout:
    """The layout of the store at ``prefix``, recording it (with ``shards`` or the default) on first use.

    Raises :class:`RedisLayoutError` when the store holds another layout,
    including the layout before the feed (group hashes and no marker), or
    when ``shards`` is given and differs from the recorded count.
    """
    marker_key = f"{prefix}layout"
    raw = await client.get(marker_key)
    if raw is None:
        async for _ in legacy_groups(client, prefix):
            raise _refuse(prefix, "the layout before the change feed (one hash per group, no layout marker)")
        fresh = Layout(prefix, shards or default_shards)
        if await client.set(marker_key, fresh.marker(), nx=True):
            return fresh
        raw = await client.get(marker_key)  # another runtime recorded it first
    layout = marker_layout(prefix, raw)
    recorded = layout.shards
    if shards is not None and shards != recorded:
        raise RedisLayoutError(
            f"shards: the store under the prefix {prefix!r} has {recorded} shards, not {shards}; the shard "
            f"count is part of the layout (copy the data with `motia-state migrate` to change it)"
        )
    return layout


def _marker(prefix: str, raw: bytes) -> tuple[Any, int]:
    """(version, shards) of a marker; RedisLayoutError when it is unreadable or its shard count is."""
    try:
        marker = _decode(raw)
        version, recorded = marker["layout"], marker["shards"]
    except (msgspec.MsgspecError, TypeError, KeyError):
        raise _refuse(prefix, f"an unknown layout (its marker {prefix + 'layout'!r} holds {raw!r})") from None
    if type(recorded) is not int or not 1 <= recorded <= MAX_SHARDS:
        raise _refuse(prefix, f"layout {version!r} with {recorded!r} shards")
    return version, recorded


def marker_layout(prefix: str, raw: bytes) -> Layout:
    """The layout a marker records (RedisLayoutError when it is not this version's)."""
    version, recorded = _marker(prefix, raw)
    if version == UPGRADABLE_VERSION and type(version) is int:
        raise _refuse_upgradable(prefix, recorded)
    if version != LAYOUT_VERSION or type(version) is not int:
        raise _refuse(prefix, f"layout {version!r} with {recorded!r} shards")
    return Layout(prefix, recorded)


async def upgradable_layout(client: Any, prefix: str) -> int | None:
    """The shard count of the store at ``prefix`` when it holds layout 2 (which :func:`upgrade_layout` upgrades), else None."""
    raw = await client.get(f"{prefix}layout")
    if raw is None:
        return None
    version, recorded = _marker(prefix, raw)
    return recorded if version == UPGRADABLE_VERSION and type(version) is int else None


# Rewrites the marker only if it still holds what was read: two upgrades at
# once, or a marker changed in between, never overwrite each other.
_SWAP: Final = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0"


async def upgrade_layout(client: Any, prefix: str) -> bool:
    """Upgrade the layout-2 store at ``prefix`` to this layout in place; False when it is not layout 2.

    Layout 2 keeps the same keys and numbers its feed records the same way,
    one stream entry per record; this version reads those entries as they
    are, so only the marker changes: the data, the feed records and every
    cursor stay valid. Runtimes of the older version must be stopped
    first: from the new marker on, a starting one refuses the store, but
    one already running would not look at the marker again.
    """
    marker_key = f"{prefix}layout"
    raw = await client.get(marker_key)
    if raw is None:
        return False
    version, recorded = _marker(prefix, raw)
    if version != UPGRADABLE_VERSION or type(version) is not int:
        return False
    return bool(await client.eval(_SWAP, 1, marker_key, raw, Layout(prefix, recorded).marker()))
