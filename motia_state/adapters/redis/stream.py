"""Reading the Redis change feed: cursors over every shard, and what ``changes()`` returns.

Each shard's feed is a stream whose records are numbered one by one
without gaps. A write call appends one stream entry holding all of its
records: the entry's ID is ``0-<n>``, n the number of its first record, its
one field is named by its record count, and the field's value is the stamp
``"<at> <depth>[ <origin JSON>]"``, the group, then key, op, old and new
text of each record, joined by NUL bytes (no part holds one: names refuse
NUL and JSON text escapes it). An entry of the fields ``g, k, o, a, b, x``
holds one record, field by field; readers take both.

A position in the feed is one record number per shard; a cursor is ``r.``
and those numbers joined by dots (``r.42`` on a single shard). Because the
numbers have no gaps, a reader knows when records after its position were
trimmed (the next one it sees is not n + 1) and raises CURSOR_EXPIRED
instead of skipping them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import re
from collections.abc import AsyncIterator, Collection
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ...errors import CursorExpiredError, InvalidArgumentError, error_for_code
from ...feed import READ_BATCH, _names
from ...records import Change
from ...values import describe

if TYPE_CHECKING:
    from .adapter import RedisStateAdapter

__all__ = [
    "RedisChangeStream",
    "Record",
    "decode_record",
    "entry_count",
    "entry_records",
    "format_cursor",
    "parse_cursor",
]

_decode = msgspec.json.Decoder().decode

#: (group, key, op, event, old, new, at, depth, origin) of one feed record.
Record = tuple[str, str, str, str, Any, Any, int, int, "dict[str, Any] | None"]

_CURSOR: Final = re.compile(r"r((?:\.(?:0|[1-9][0-9]{0,18}))+)")
_OTHER_CURSOR: Final = re.compile(r"(?!r\.)[a-z]+\.(?:0|[1-9][0-9]*)")


def format_cursor(position: list[int]) -> str:
    """The cursor of a position (one record number per shard)."""
    return "r." + ".".join(map(str, position))


def parse_cursor(cursor: object, shards: int) -> list[int]:
    """The position a cursor names, in a store of ``shards`` shards.

    Not a cursor at all: INVALID_ARGUMENT. A cursor of another kind of
    store, or of a store with another shard count: CURSOR_EXPIRED (reading
    after it cannot yield exactly the records that follow it).
    """
    if type(cursor) is not str:
        raise InvalidArgumentError(f"after: expected a cursor string, None or 'now', got {describe(cursor)}")
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        if _OTHER_CURSOR.fullmatch(cursor):
            raise CursorExpiredError(f"cursor {cursor!r} is from another kind of store (this one's start with 'r.')")
        raise InvalidArgumentError(f"after: {cursor!r} is not a change-feed cursor")
    position = [int(n) for n in match.group(1)[1:].split(".")]
    if len(position) != shards:
        raise CursorExpiredError(f"cursor {cursor!r} is from a store of {len(position)} shards; this one has {shards}")
    return position


def _corrupt(what: str) -> Exception:
    return error_for_code("CORRUPT", f"a change-feed entry in Redis cannot be read: {what}")


def _parts(fields: Any) -> tuple[bytes, bytes] | None:
    """The (name, value) of an entry's one field, or None for an entry of one record field by field."""
    if isinstance(fields, dict):
        if len(fields) != 1:
            return None
        ((name, value),) = fields.items()
    else:
        if len(fields) != 2:
            return None
        name, value = fields
    return name, value


def entry_count(fields: Any) -> int:
    """How many records a stream entry holds (its field's name; 1 for an entry field by field)."""
    parts = _parts(fields)
    if parts is None:
        return 1
    try:
        return int(parts[0])
    except ValueError:
        raise _corrupt(f"field {parts[0]!r} is no record count") from None


def _event(old: Any, new: Any) -> str:
    return "created" if not old else "deleted" if not new else "updated"


def _stamp(stamp: bytes) -> tuple[int, int, dict[str, Any] | None]:
    """(at, depth, origin) of a record's stamp ``"<at> <depth>[ <origin JSON>]"``."""
    at, _, rest = stamp.partition(b" ")
    depth, _, origin = rest.partition(b" ")
    return int(at), int(depth), _decode(origin) if origin else None


def decode_record(group: str, key: str, op: bytes, old: bytes, new: bytes, stamp: bytes) -> Record:
    """One record from its parts (old and new JSON texts, empty for a missing side)."""
    at, depth, origin = _stamp(stamp)
    return (
        group,
        key,
        op.decode(),
        _event(old, new),
        _decode(old) if old else None,
        _decode(new) if new else None,
        at,
        depth,
        origin,
    )


def entry_records(fields: Any) -> list[Record]:
    """The records of one stream entry, oldest first.

    ``fields`` is the dict redis-py makes of an entry's fields, or the flat
    list a script returns. An entry whose bytes are not what this adapter
    writes raises CORRUPT.
    """
    try:
        parts = _parts(fields)
        if parts is None:
            if isinstance(fields, dict):
                g, k, o, a, b, x = (fields[f] for f in (b"g", b"k", b"o", b"a", b"b", b"x"))
            else:
                g, k, o, a, b, x = fields[1], fields[3], fields[5], fields[7], fields[9], fields[11]
            return [decode_record(g.decode(), k.decode(), o, a, b, x)]
        count = int(parts[0])
        items = parts[1].split(b"\0")
        if len(items) != 2 + 4 * count or count < 1:
            raise ValueError(f"{len(items)} parts for {count} records")
        at, depth, origin = _stamp(items[0])
        group = items[1].decode()
        return [
            (
                group,
                items[i].decode(),
                items[i + 1].decode(),
                _event(items[i + 2], items[i + 3]),
                _decode(items[i + 2]) if items[i + 2] else None,
                _decode(items[i + 3]) if items[i + 3] else None,
                at,
                depth,
                origin,
            )
            for i in range(2, 2 + 4 * count, 4)
        ]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, msgspec.MsgspecError) as e:
        raise _corrupt(f"{type(e).__name__}: {e}") from None


def _number(entry_id: bytes) -> int:
    return int(entry_id[2:])


class RedisChangeStream(AsyncIterator[Change]):
    """The records of a Redis store's feed after a position, filtered; what ``changes()`` returns.

    Its start is fixed when it is made: ``"now"`` asks Redis for every
    shard's newest record at once, and this adapter's writes wait for that
    answer, so nothing it commits after the call is missed. Records are
    read in batches, merged across shards by commit time (each shard in its
    own order); with ``follow`` it then waits in ``XREAD BLOCK`` (one per
    shard on a cluster, whose slots forbid reading several at once).
    """

    def __init__(
        self,
        adapter: RedisStateAdapter,
        after: str | None,
        *,
        groups: Collection[str] | None = None,
        keys: Collection[str] | None = None,
        follow: bool = True,
    ) -> None:
        self._waits: dict[int, asyncio.Task[Any]] = {}  # first: __del__ reads it
        self._adapter = adapter
        self._groups = _names(groups, "groups")
        self._keys = _names(keys, "keys")
        self._follow = bool(follow)
        self._after = after
        if after is not None and after != "now" and (type(after) is not str or not _CURSOR.fullmatch(after)):
            parse_cursor(after, 1)  # raises the right error for what is no cursor of ours
        self._position: list[int] = []
        self._shards: list[int] = []
        self._buffer: list[Change] = []
        self._next = 0
        #: Entries read before the first read (the rest of the entry a cursor falls inside).
        self._pending: list[tuple[int, list[Any]]] = []
        #: Shards started from their oldest record (after=None) and not read yet: see _accept.
        self._oldest: set[int] = set()
        self._start: asyncio.Task[list[int]] | None = None
        if after == "now":
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # no running loop: fixed at the first read instead
                pass
            else:
                self._start = adapter._fix_position()

    def __aiter__(self) -> RedisChangeStream:
        return self

    async def _begin(self) -> None:
        adapter = self._adapter
        layout = await adapter._layout()
        shards = layout.shards
        if self._groups is not None:
            self._shards = sorted({layout.shard(g) for g in self._groups})
        else:
            self._shards = list(range(shards))
        if self._start is not None:
            self._position = await self._start
        elif self._after == "now":
            self._position = await adapter._last_position()
        else:
            if self._after is None:
                # From the oldest retained record of each shard.
                info = await adapter._shard_info()
                self._position = [first - 1 if length else last for first, last, length, _ in info]
                self._oldest = {shard for shard in self._shards if info[shard][2]}
            else:
                position = parse_cursor(self._after, shards)
                info = await adapter._shard_info(position)
                for shard, (n, (first, last, length, around)) in enumerate(zip(position, info, strict=True)):
                    if n > last:
                        raise CursorExpiredError(
                            f"cursor {self._after!r} is not from this store (it is past the newest record)"
                        )
                    if n < (first - 1 if length else last):  # the records right after it were trimmed
                        raise self._expired(self._after)
                    if around is not None and shard in self._shards:
                        # The cursor names a record inside an entry: the rest of it comes first.
                        self._pending.append((shard, [around]))
                self._position = position
        self._after = None

    def _expired(self, cursor: str | None = None) -> CursorExpiredError:
        return CursorExpiredError(
            f"cursor {cursor or format_cursor(self._position)!r} is older than the feed retains "
            f"(records after it were trimmed); start again from None or 'now'"
        )

    def _accept(self, shard: int, entries: list[Any], out: list[tuple[int, int, int, Any]]) -> None:
        """Take the records of ``shard``'s entries that follow its position (checking that none is missing).

        A shard started from its oldest record (``after=None``) that trimming
        moved on between the shard's bounds being read and its first
        entries starts from the new oldest one: the reader held no position
        there, so nothing it was promised is skipped.
        """
        position = self._position[shard]
        oldest = shard in self._oldest
        for entry_id, fields in entries:
            first = _number(entry_id)
            count = entry_count(fields)
            if first + count - 1 <= position:
                continue  # already read (a blocking read started from an older position)
            if first > position + 1:
                if not oldest:
                    raise self._expired()
                position = first - 1
            oldest = False
            records = entry_records(fields)
            for i in range(position + 1 - first, count):
                record = records[i]
                out.append((record[6], shard, first + i, record))
            position = first + count - 1
        self._position[shard] = position

    def _emit(self, found: list[tuple[int, int, int, Any]], start: list[int]) -> None:
        """Buffer the records found, merged by commit time, each with the position after it."""
        by_shard: dict[int, list[tuple[int, int, int, Any]]] = {}
        for item in found:
            by_shard.setdefault(item[1], []).append(item)
        position = start
        buffer = self._buffer = []
        self._next = 0
        groups, keys = self._groups, self._keys
        for _at, shard, n, record in heapq.merge(*by_shard.values(), key=lambda item: item[0]):
            position[shard] = n
            group, key = record[0], record[1]
            if (groups is None or group in groups) and (keys is None or key in keys):
                buffer.append(Change(format_cursor(position), *record))

    async def __anext__(self) -> Change:
        while True:
            if self._next < len(self._buffer):
                change = self._buffer[self._next]
                self._next += 1
                return change
            self._adapter._check_usable()  # a closed adapter ends its followers with UNAVAILABLE
            if self._after is not None or not self._position:
                await self._begin()
            start = list(self._position)
            found: list[tuple[int, int, int, Any]] = []
            pending, self._pending = self._pending, []
            for shard, entries in pending:
                self._accept(shard, entries, found)
            for shard, entries in await self._adapter._read_shards(self._shards, self._position, READ_BATCH):
                self._accept(shard, entries, found)
            self._oldest.clear()  # the start is fixed by the first read, as on the other stores
            if found:
                self._emit(found, start)
                continue
            if not self._follow:
                raise StopAsyncIteration
            for shard, entries in await self._wait():
                self._accept(shard, entries, found)
            if found:
                self._emit(found, start)

    async def _wait(self) -> list[tuple[int, list[Any]]]:
        """Block until some shard read has records (or the block times out: then nothing)."""
        adapter = self._adapter
        if not adapter._cluster_client:
            return await adapter._block(self._shards, self._position)
        # A cluster: one blocking read per shard, each kept across calls
        # until it returns, so that a quiet shard costs no new request.
        for shard in self._shards:
            if shard not in self._waits:
                task = asyncio.ensure_future(adapter._block([shard], self._position))
                task.add_done_callback(_retrieve)
                self._waits[shard] = task
        done, _ = await asyncio.wait(self._waits.values(), return_when=asyncio.FIRST_COMPLETED)
        results: list[tuple[int, list[Any]]] = []
        for shard, task in list(self._waits.items()):
            if task in done:
                del self._waits[shard]
                results.extend(task.result())
        return results

    async def aclose(self) -> None:
        """Stop the blocking reads this iterator has in flight."""
        for task in self._waits.values():
            task.cancel()
        self._waits.clear()

    def __del__(self) -> None:
        for task in self._waits.values():
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                task.cancel()


def _retrieve(task: asyncio.Task[Any]) -> None:
    # A read that failed after its reader left (or before it came): nobody will ask.
    if not task.cancelled():
        task.exception()
