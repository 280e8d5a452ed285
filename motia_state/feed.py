"""The change feed's shared machinery: the write context, cursors, the retention ring, readers.

Every committed change becomes a :class:`~motia_state.records.Change` in its
store's feed, in commit order. This module holds what the adapters share:

- the **write context**: who is writing (``depth`` and ``origin`` of the
  step invocation being served), set by the runtime around a ``state.*``
  request with :func:`write_context` and read once per commit by the
  adapter with :func:`current_write_context`;
- **cursors**: ``<prefix>.<sequence>``, one store-wide sequence number per
  record (memory ``m.``, file ``f.``); :func:`parse_cursor` validates one;
- :class:`FeedRing`: the retained records of a memory or file store, the
  newest ``retention`` records within ``retention_bytes``, with the readers
  waiting for the next record;
- :class:`ChangeStream`: what ``changes()`` returns, an async iterator over
  any :class:`FeedSource` (filters, ``follow``, resuming after a cursor).

Internal module: ``Change`` and ``CursorExpiredError`` are re-exported by
``motia_state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
import time
from array import array
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, Protocol

import anyio
import msgspec

from .errors import CursorExpiredError, InvalidArgumentError
from .records import Change, StateChange
from .values import MISSING, copy_value, describe

__all__ = [
    "DEFAULT_RETENTION",
    "DEFAULT_RETENTION_BYTES",
    "FEED_OFF",
    "FAST_NAME",
    "READ_BATCH",
    "STRIDE",
    "ChangeStream",
    "FeedRing",
    "FeedSource",
    "Stamp",
    "WriteContext",
    "check_retention",
    "current_write_context",
    "enter_write_context",
    "exit_write_context",
    "now_ms",
    "parse_cursor",
    "write_context",
]

#: Records a store keeps by default (``feed_retention``).
DEFAULT_RETENTION: Final = 100_000
#: Encoded bytes of records a store keeps by default (``feed_retention_bytes``).
DEFAULT_RETENTION_BYTES: Final = 64 << 20
#: The message of the error that ``changes()`` and ``history()`` raise with the feed off.
FEED_OFF: Final = "the change feed is off (feed_retention=0)"
#: Records a reader takes from its store at a time.
READ_BATCH: Final = 256

WriteContext = tuple[int, "dict[str, Any] | None"]
#: What a commit that makes feed records is stamped with: ``(at, depth, origin)``.
Stamp = tuple[int, int, "dict[str, Any] | None"]

_NO_CONTEXT: Final[WriteContext] = (0, None)
_WRITE_CONTEXT: contextvars.ContextVar[WriteContext] = contextvars.ContextVar(
    "motia_state_write_context", default=_NO_CONTEXT
)
# Whether any write context was ever set in this process: until one is, every
# writer has the default and a write skips the context variable's lookup. It
# is only ever set (never reset), so a reader on any thread sees it in time:
# the block that sets it runs before the writes it stamps.
_CONTEXT_USED: Final[list[bool]] = [False]


@contextmanager
def write_context(depth: int, origin: dict[str, Any] | None) -> Iterator[None]:
    """Stamp the writes made inside the block with ``depth`` and ``origin``.

    The runtime wraps the state requests of a step invocation in it
    (``origin`` is ``{"step": name, "traceId": t}``); every feed record those
    writes commit carries both. Outside any block a write has depth 0 and no
    origin.
    """
    _CONTEXT_USED[0] = True
    token = _WRITE_CONTEXT.set((depth, origin))
    try:
        yield
    finally:
        _WRITE_CONTEXT.reset(token)


def enter_write_context(depth: int, origin: dict[str, Any] | None) -> contextvars.Token[WriteContext]:
    """:func:`write_context` without the generator, for a hot path: returns the token for :func:`exit_write_context`.

    The RPC layer stamps every request of a step this way; a generator-based
    context manager costs more than the write it stamps.
    """
    _CONTEXT_USED[0] = True
    return _WRITE_CONTEXT.set((depth, origin))


def exit_write_context(token: contextvars.Token[WriteContext]) -> None:
    """Undo :func:`enter_write_context` (in the same context, in reverse order)."""
    _WRITE_CONTEXT.reset(token)


def current_write_context() -> WriteContext:
    """The ``(depth, origin)`` of the writer in this context ((0, None) outside any step)."""
    return _WRITE_CONTEXT.get() if _CONTEXT_USED[0] else _NO_CONTEXT


def now_ms() -> int:
    """The commit time of a record: milliseconds since the epoch."""
    return int(time.time() * 1000)


def check_retention(retention: object, retention_bytes: object) -> None:
    """Refuse a retention that is not a non-negative int (INVALID_ARGUMENT naming the option)."""
    if type(retention) is not int or retention < 0:
        raise InvalidArgumentError(f"feed_retention: expected a non-negative int, got {describe(retention)}")
    if type(retention_bytes) is not int or retention_bytes <= 0:
        raise InvalidArgumentError(f"feed_retention_bytes: expected a positive int, got {describe(retention_bytes)}")


_CURSOR: Final = re.compile(r"([a-z]+)\.(0|[1-9][0-9]{0,18})")


def parse_cursor(cursor: object, prefix: str) -> int:
    """The sequence number in ``cursor``, a cursor of a store whose cursors start with ``prefix``.

    A value that is no cursor at all is INVALID_ARGUMENT; a cursor of another
    kind of store is CURSOR_EXPIRED (reading after it cannot yield exactly
    the records that follow it).
    """
    if type(cursor) is not str:
        raise InvalidArgumentError(f"after: expected a cursor string, None or 'now', got {describe(cursor)}")
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise InvalidArgumentError(f"after: {cursor!r} is not a change-feed cursor")
    if match.group(1) != prefix:
        raise CursorExpiredError(f"cursor {cursor!r} is from another kind of store (this one's start with {prefix!r})")
    return int(match.group(2))


def _names(names: Collection[str] | None, what: str) -> frozenset[str] | None:
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Collection):
        raise InvalidArgumentError(f"{what}: expected a collection of strings, got {describe(names)}")
    for name in names:
        if type(name) is not str:
            raise InvalidArgumentError(f"{what}: expected strings, got {describe(name)}")
    return frozenset(names)


_encode = msgspec.json.Encoder().encode

# Numbers below this (in magnitude) encode in at most 24 bytes, so a record
# of them is sized without encoding it.
_SMALL: Final = 10**15


# Values of these types encode in at most 24 bytes (a float's shortest repr included).
_FIXED_SIZE: Final = frozenset({type(None), type(MISSING), bool, float})


def _value_size(value: Any, _encode: Callable[[Any], bytes] = _encode) -> int:
    t = type(value)
    if t in _FIXED_SIZE or (t is int and -_SMALL < value < _SMALL):
        return 24
    return len(_encode(value))


# What a record costs beyond its names and values: the field names and
# punctuation of its encoding as a reader gets it (a Change in JSON), with
# the longest op name, a cursor of up to ten digits, a commit time in
# milliseconds, depth 0 and no origin.
_OVERHEAD: Final = 150
#: Fields per record in :attr:`FeedRing.slots`: group, key, old, new, at, info.
STRIDE: Final = 6
#: The longest group or key name (in characters) that a fast record may carry.
FAST_NAME: Final = 64
#: The size of a record of two ints under 10**15 in magnitude, but its names.
INT_RECORD: Final = _OVERHEAD + 48
# A fast record's size at most: two numbers under _SMALL and two names of at most FAST_NAME.
_FAST_SIZE: Final = INT_RECORD + 2 * FAST_NAME


def _fast_size(group: str, key: str) -> int:
    return INT_RECORD + len(group) + len(key)


def _unpack(slots: list[Any], index: int) -> tuple[Any, ...]:
    """The record at ``slots[index]``: ``(group, key, op, event, old, new, at ms, depth, origin)``.

    ``old``/``new`` are None where the entry did not exist (the event says
    which); the slots' compact forms (a float time, an info slot of None or
    of the op alone) are spelled out.
    """
    group, key, old, new, at, info = slots[index : index + STRIDE]
    if type(at) is not int:
        at = int(at * 1000)
    if info is None:
        op, depth, origin = "increment", 0, None
    elif type(info) is str:
        op, depth, origin = info, 0, None
    else:
        op, depth, origin = info
    if old is MISSING:
        event, old = "created", None
    elif new is MISSING:
        event, new = "deleted", None
    else:
        event = "updated"
    return group, key, op, event, old, new, at, depth, origin


class FeedRing:
    """The retained records of one store, oldest first, and the readers waiting for more.

    The newest ``retention`` records are kept as long as their encoded size
    (names, values and the fields around them) stays within
    ``retention_bytes`` (the newest record is always kept), and at most
    twice as many, or as many bytes: trimming is lazy, never looser.

    The records lie flat in :attr:`slots`, six fields each: group, key,
    old value, new value (``MISSING`` where there is no entry), commit
    time (a float of seconds from ``time.time()``, or int milliseconds)
    and info. A write appends its six references, so it allocates nothing
    that outlives it but the slots, the time and what it stores, and the
    collector has no record object to walk. Two kinds of record share the
    layout:

    - a *fast* record, the increment of a stored int by an int (both under
      10**15 in magnitude) with names of at most :data:`FAST_NAME`
      characters, outside any write context: its info is None, and it is
      appended by its writer directly (:meth:`put_fast` shows how);
    - any other record: its info is the op, or ``(op, depth, origin)``
      when written inside a write context; its size is kept aside.

    Nothing is counted per fast record: the ring settles its accounts
    (:meth:`settle`) only once ``len(slots)`` passes :attr:`limit`, a
    point computed so that until then neither limit can be passed (a fast
    record is bounded in size). Records of the other kind are sized as
    they are written (their values encoded, numbers, booleans and null
    not) and settle the ring when they use up :attr:`room`. A fast
    record's exact size is computed only when the bound alone would trim.
    What a reader sees (the cursor, the event, copies of the values) is
    built when it reads.

    The ring is not locked: its owner mutates and reads it under the
    store's lock. Waiting readers are woken through their own event loop,
    so writers on other threads or loops wake them too.
    """

    __slots__ = (
        "_bytes_cap",
        "_count_cap",
        "_fast_bytes",
        "_fast_count",
        "_fast_seq",
        "_first",
        "_general_bytes",
        "_room_set",
        "_waiters",
        "limit",
        "prefix",
        "retention",
        "retention_bytes",
        "room",
        "sizes",
        "slots",
    )

    def __init__(self, prefix: str, retention: int = DEFAULT_RETENTION, retention_bytes: int = DEFAULT_RETENTION_BYTES):
        self.prefix = prefix
        self.retention = retention
        self.retention_bytes = retention_bytes
        #: The records, :data:`STRIDE` fields each (see the class docstring).
        self.slots: list[Any] = []
        #: The sequence number of the first record (of the next one when there is none).
        self._first = 1
        # Trimming waits until the ring holds twice its limits (never looser).
        self._count_cap = 2 * retention
        self._bytes_cap = 2 * retention_bytes
        #: The size of every retained record that is not fast, oldest first,
        #: in machine words (nothing for the collector); a writer appending
        #: such a record itself appends its size here and takes it off
        #: :attr:`room`. Their total is kept as of the last settle.
        self.sizes = array("q")
        self._general_bytes = 0
        self._room_set = 0
        # The exact sizes of the fast records numbered below _fast_seq, once
        # the bound alone would have trimmed: their total and their number.
        self._fast_seq = 1
        self._fast_bytes = 0
        self._fast_count = 0
        self._waiters: list[Callable[[], object]] = []
        #: Call :meth:`settle` once ``len(slots)`` is past this (-1 while readers wait).
        self.limit = -1
        #: Bytes that records other than fast ones may add before :meth:`settle` is due.
        self.room = 0
        self.settle()

    @property
    def seq(self) -> int:
        """The sequence number of the newest record (0: none yet)."""
        return self._first + len(self.slots) // STRIDE - 1

    # -- writing ---------------------------------------------------------------

    def _general_added(self, size: int) -> None:
        self.sizes.append(size)
        self.room -= size

    def record(self, changes: Sequence[StateChange], at: int, depth: int, origin: dict[str, Any] | None) -> None:
        """Append the records of one commit (sequence numbers follow on from :attr:`seq`)."""
        slots, sizes = self.slots, self.sizes
        info_context = depth != 0 or origin is not None
        room = self.room
        for c in changes:
            group, key, event, old, new = c.trace_id, c.key, c.event, c.old_value, c.new_value
            if event == "created":
                old = MISSING
            elif event == "deleted":
                new = MISSING
            size = _OVERHEAD + len(group) + len(key) + _value_size(old) + _value_size(new)
            slots.extend((group, key, old, new, at, (c.op, depth, origin) if info_context else c.op))
            sizes.append(size)
            room -= size
        self.room = room
        if room < 0 or len(slots) > self.limit:
            self.settle()

    def put(
        self,
        group: str,
        key: str,
        op: str,
        old: Any,
        new: Any,
        _clock: Callable[[], float] = time.time,
        _context: Callable[[], WriteContext] = _WRITE_CONTEXT.get,
        _used: list[bool] = _CONTEXT_USED,
        _encode: Callable[[Any], bytes] = _encode,
        _fixed: frozenset[type] = _FIXED_SIZE,
        _low: int = -_SMALL,
        _high: int = _SMALL,
    ) -> None:
        """Append the record of one written entry (``MISSING`` on a side: no entry there).

        The lean form of :meth:`record` for a write that journals nothing
        else (the memory adapter with no listener: ``StateTable.write``
        inlines it, and takes the size of a new value that the writer
        encoded already). It sizes the values inline (the same sizes as
        :func:`_value_size`) and binds its hot names as defaults.
        """
        size = _OVERHEAD + len(group) + len(key)
        t = type(old)
        if t is int:
            size += 24 if _low < old < _high else len(_encode(old))
        else:
            size += 24 if t in _fixed else len(_encode(old))
        t = type(new)
        if t is int:
            size += 24 if _low < new < _high else len(_encode(new))
        else:
            size += 24 if t in _fixed else len(_encode(new))
        slots = self.slots
        info: Any = op
        if _used[0]:
            depth, origin = _context()
            if depth or origin is not None:
                info = (op, depth, origin)
        slots.extend((group, key, old, new, _clock(), info))
        self.sizes.append(size)
        self.room -= size
        if self.room < 0 or len(slots) > self.limit:
            self.settle()

    def put_fast(self, group: str, key: str, old: int, new: int) -> None:
        """Append a fast record: ``old`` incremented to ``new`` (see the class docstring for when).

        A writer on a hot path inlines these two statements instead of
        calling this method (the memory adapter's increment does).
        """
        self.slots.extend((group, key, old, new, time.time(), None))
        if len(self.slots) > self.limit:
            self.settle()

    def put_number(self, group: str, key: str, op: str, old: int | float | None, new: int | float) -> None:
        """Append the record of an increment of a stored entry: ``old`` a number or None (a stored null)."""
        if (
            op == "increment"
            and type(old) is int
            and type(new) is int
            and -_SMALL < old < _SMALL
            and -_SMALL < new < _SMALL
            and len(group) <= FAST_NAME
            and len(key) <= FAST_NAME
            and current_write_context() is _NO_CONTEXT
        ):
            self.put_fast(group, key, old, new)
        else:
            self.put(group, key, op, old, new)

    def add_rows(self, seq: int, at: int, depth: int, origin: dict[str, Any] | None, rows: Sequence[Any]) -> None:
        """Append the records of one commit read back from storage, numbered from ``seq``.

        ``rows`` are ``[group, key, op, event, old, new]`` (the file log's
        form); records this ring already holds are skipped, and a gap
        before ``seq`` starts the ring afresh there.
        """
        info_context = (depth, origin) != _NO_CONTEXT
        for group, key, op, event, old, new in rows:
            last = self.seq
            if seq > last:
                if seq != last + 1:
                    self.restart(seq - 1)
                if event == "created":
                    old = MISSING
                elif event == "deleted":
                    new = MISSING
                size = _OVERHEAD + len(group) + len(key) + _value_size(old) + _value_size(new)
                self.slots.extend((group, key, old, new, at, (op, depth, origin) if info_context else op))
                self._general_added(size)
            seq += 1
        if self.room < 0 or len(self.slots) > self.limit:
            self.settle()

    def restart(self, seq: int) -> None:
        """Forget every record; the next one gets ``seq + 1`` (a store reloaded from its files)."""
        self.slots = []
        self._first = self._fast_seq = seq + 1
        del self.sizes[:]
        self._general_bytes = self._fast_bytes = self._fast_count = 0
        self._room_set = self.room  # what was written since the last settle is forgotten too
        self.settle()

    # -- accounts and trimming --------------------------------------------------

    def _bound(self) -> int:
        # An upper bound of the retained bytes: exact for the records not
        # fast and the fast ones already sized, the most a fast one can be
        # for the rest.
        unsized = len(self.slots) // STRIDE - len(self.sizes) - self._fast_count
        return self._general_bytes + self._fast_bytes + unsized * _FAST_SIZE

    def _size_fast(self) -> None:
        # Size every fast record not sized yet (the bound alone would trim).
        slots, first = self.slots, self._first
        added = count = 0
        for i in range((self._fast_seq - first) * STRIDE, len(slots), STRIDE):
            if slots[i + 5] is None:
                added += _fast_size(slots[i], slots[i + 1])
                count += 1
        self._fast_bytes += added
        self._fast_count += count
        self._fast_seq = first + len(slots) // STRIDE

    def _drop(self, count: int) -> None:
        # Drop the oldest ``count`` records, keeping the accounts.
        slots, first = self.slots, self._first
        end = first + count
        # The records dropped that are not fast: those whose info is not None.
        general = count - slots[5 : count * STRIDE : STRIDE].count(None)
        if general:
            self._general_bytes -= sum(self.sizes[:general])
            del self.sizes[:general]
        if self._fast_seq > first:
            if self._fast_seq <= end:
                self._fast_bytes = self._fast_count = 0
            else:
                for i in range(0, count * STRIDE, STRIDE):
                    if slots[i + 5] is None:
                        self._fast_bytes -= _fast_size(slots[i], slots[i + 1])
                        self._fast_count -= 1
        if self._fast_seq < end:
            self._fast_seq = end
        del slots[: count * STRIDE]
        self._first = end

    def settle(self) -> None:
        """Bring the accounts up to date, trim what is past the limits, wake waiting readers.

        Due once ``len(slots)`` is past :attr:`limit` or :attr:`room` is
        below 0. Trimming is lazy: once the ring holds twice a limit, it
        cuts back to the limits in one slice, so a write pays O(1)
        amortized.
        """
        self._general_bytes += self._room_set - self.room
        self._room_set = self.room
        count = len(self.slots) // STRIDE
        if count > self._count_cap:
            self._drop(count - self.retention)
            count = self.retention
        bound = self._bound()
        if bound > self._bytes_cap:
            self._size_fast()
            bound = self._bound()  # exact now
            if bound > self._bytes_cap:
                # Cut back to retention_bytes, the newest record always kept.
                slots, drop = self.slots, 0
                general, index = self.sizes, 0
                while count - drop > 1 and bound > self.retention_bytes:
                    if slots[drop * STRIDE + 5] is None:
                        bound -= _fast_size(slots[drop * STRIDE], slots[drop * STRIDE + 1])
                    else:
                        bound -= general[index]
                        index += 1
                    drop += 1
                self._drop(drop)
                bound = self._bound()
        # The room left before a limit is split: at most half of the bytes
        # for fast records (counted at their bound), the rest for the
        # others, so that neither kind settles the ring at every write.
        room = self._bytes_cap - bound
        fast = max(0, min(self._count_cap - len(self.slots) // STRIDE, room // (2 * _FAST_SIZE)))
        self.limit = len(self.slots) + fast * STRIDE
        self.room = self._room_set = room - fast * _FAST_SIZE
        if self._waiters:
            self.wake()

    @property
    def bytes(self) -> int:
        """The encoded bytes of the retained records (as the ring sizes them)."""
        self._general_bytes += self._room_set - self.room
        self._room_set = self.room
        if self._fast_seq <= self.seq:
            self._size_fast()
        return self._bound()

    # -- reading ---------------------------------------------------------------

    @property
    def first(self) -> int:
        """The sequence number of the oldest retained record (``seq + 1`` when none is)."""
        return self._first

    def __len__(self) -> int:
        return len(self.slots) // STRIDE

    def cursor(self, seq: int) -> str:
        """The cursor of record ``seq``."""
        return f"{self.prefix}.{seq}"

    def position(self, after: str | None) -> int | None:
        """Where a reader starts: after this sequence number; None for the oldest retained record.

        ``"now"`` is the newest record at the call; a cursor is checked
        against what this store retains (CURSOR_EXPIRED when older, or from
        another store).
        """
        if after is None:
            return None
        if after == "now":
            return self.seq
        seq = parse_cursor(after, self.prefix)
        self.check(seq, after)
        return seq

    def check(self, seq: int, cursor: str | None = None) -> None:
        """Refuse to read after ``seq`` when records after it are no longer retained."""
        if seq > self.seq:
            raise CursorExpiredError(
                f"cursor {cursor or self.cursor(seq)!r} is not from this store (its newest record is {self.seq})"
            )
        if seq < self._first - 1:
            raise CursorExpiredError(
                f"cursor {cursor or self.cursor(seq)!r} is older than the feed retains "
                f"(the oldest retained record is {self.cursor(self._first)})"
            )

    def read(self, after: int | None, limit: int = READ_BATCH) -> tuple[list[Change], int]:
        """Up to ``limit`` records after sequence number ``after``, and the position after them.

        ``after`` None reads from the oldest retained record; a position
        whose next records are no longer retained is CURSOR_EXPIRED.
        """
        first = self._first
        if after is None:
            after = first - 1
        else:
            self.check(after)
        slots = self.slots
        start = after + 1 - first
        end = min(start + limit, len(slots) // STRIDE)
        make = self._change
        records = [make(first + i, slots, i * STRIDE) for i in range(start, end)]
        return records, after + len(records)

    def history(self, group: str, key: str, limit: int) -> list[Change]:
        """The retained records of one entry, newest first, at most ``limit``."""
        found: list[Change] = []
        slots, first = self.slots, self._first
        for index in range(len(slots) - STRIDE, -1, -STRIDE):
            if len(found) >= limit:
                break
            if slots[index + 1] == key and slots[index] == group:
                found.append(self._change(first + index // STRIDE, slots, index))
        return found

    def retained(self) -> tuple[int, list[Any]]:
        """The retained records as stored, and the sequence number of the first (cheap: a list copy)."""
        return self._first, self.slots[:]

    def bodies(self, retained: tuple[int, list[Any]]) -> Iterator[tuple[Any, ...]]:
        """What :meth:`retained` returned, one ``(seq, at, depth, origin, ((group, key, op, event, old, new),))`` each.

        The body form of a file log's feed record (values not copied), made
        straight from the slots: no :class:`Change` in between, and each
        tuple is dropped once its consumer moves on.
        """
        first, slots = retained
        seq = first
        for index in range(0, len(slots), STRIDE):
            group, key, op, event, old, new, at, depth, origin = _unpack(slots, index)
            yield seq, at, depth, origin, ((group, key, op, event, old, new),)
            seq += 1

    def info(self) -> dict[str, Any]:
        """``{"first": cursor|None, "last": cursor|None, "retained": n}``."""
        if not self.slots:
            return {"first": None, "last": None, "retained": 0}
        return {"first": self.cursor(self._first), "last": self.cursor(self.seq), "retained": len(self)}

    def _change(self, seq: int, slots: list[Any], index: int) -> Change:
        group, key, op, event, old, new, at, depth, origin = _unpack(slots, index)
        # A reader that changes a record's value or origin never changes
        # what is stored (the records of one request share one origin).
        old, new = copy_value(old), copy_value(new)
        if origin is not None:
            origin = copy_value(origin)
        return Change(f"{self.prefix}.{seq}", group, key, op, event, old, new, at, depth, origin)

    # -- waiting ---------------------------------------------------------------

    def waiter(self) -> tuple[anyio.Event, Callable[[], object]]:
        """An event set at the next record (woken through the caller's own event loop), and its waker.

        Pass the waker to :meth:`forget` when the reader stops waiting
        before the event is set (cancelled), so that it does not linger.
        """
        event = anyio.Event()
        wake = event.set
        waker: Callable[[], object]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio, anyio's other backend
            import trio

            token = trio.lowlevel.current_trio_token()
            waker = lambda: token.run_sync_soon(wake)  # noqa: E731
        else:
            waker = lambda: loop.call_soon_threadsafe(wake)  # noqa: E731
        self._waiters.append(waker)
        self.limit = -1  # the next write settles, and so wakes this reader
        return event, waker

    def forget(self, waker: Callable[[], object]) -> None:
        """Drop a waker that :meth:`waiter` registered (a no-op once it was woken)."""
        with contextlib.suppress(ValueError):
            self._waiters.remove(waker)

    @property
    def waiting(self) -> bool:
        """Whether a reader waits for the next record."""
        return bool(self._waiters)

    def wake(self) -> None:
        """Wake every waiting reader."""
        waiters, self._waiters = self._waiters, []
        for wake in waiters:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits there any more
                wake()


class FeedSource(Protocol):
    """What :class:`ChangeStream` reads: a store's feed."""

    def _feed_read(self, after: int | None, limit: int) -> tuple[list[Change], int]:
        """Up to ``limit`` records after sequence number ``after``, and the position after them.

        Raises CURSOR_EXPIRED when records after ``after`` are no longer
        retained.
        """

    async def _feed_wait(self, after: int) -> None:
        """Return once there may be records after sequence number ``after`` (spurious returns are fine)."""


class ChangeStream(AsyncIterator[Change]):
    """The records of a feed in commit order, filtered; what ``changes()`` returns.

    Its start is fixed when it is made; it reads in batches, and with
    ``follow`` it waits for new records instead of ending.
    """

    def __init__(
        self,
        source: FeedSource,
        after: int | None,
        *,
        groups: Collection[str] | None = None,
        keys: Collection[str] | None = None,
        follow: bool = True,
    ) -> None:
        self._source = source
        self._after = after
        self._groups = _names(groups, "groups")
        self._keys = _names(keys, "keys")
        self._follow = bool(follow)
        self._buffer: list[Change] = []
        self._next = 0

    def __aiter__(self) -> ChangeStream:
        return self

    async def __anext__(self) -> Change:
        while True:
            buffer = self._buffer
            while self._next < len(buffer):
                change = buffer[self._next]
                self._next += 1
                if (self._groups is None or change.group in self._groups) and (
                    self._keys is None or change.key in self._keys
                ):
                    return change
            batch, after = self._source._feed_read(self._after, READ_BATCH)
            self._after = after
            self._buffer, self._next = batch, 0
            if batch:
                continue
            if not self._follow:
                raise StopAsyncIteration
            await self._source._feed_wait(after)
