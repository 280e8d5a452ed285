"""The in-memory adapter (the embedded default) and its storage session.

The adapter runs every operation on a :class:`StateTable` inside its
:class:`TableSession`: the session's ``lock`` is held around the operation,
and the session's ``commit`` receives what a write changed before change
sinks see it. The default session is one ``threading.Lock`` and commits
nowhere. The file store (``adapters/file/store.py``) is this adapter with a
session whose lock also takes the store's process lock and catches up on
other processes' records, whose commit appends one log record, and whose
``acknowledge`` waits for the fsync in mode "always".

Critical sections are short, pure and never ``await``, so the same lock
makes operations atomic between asyncio tasks and between threads that each
run their own event loop over a shared adapter. The lock is never held
across user code that could block for long except a synchronous ``update``
fn, which is the point of ``update``.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ..errors import InvalidArgumentError, UnavailableError
from ..feed import (
    _CONTEXT_USED,
    _WRITE_CONTEXT,
    DEFAULT_RETENTION,
    DEFAULT_RETENTION_BYTES,
    FAST_NAME,
    FEED_OFF,
    INT_RECORD,
    ChangeStream,
    FeedRing,
    Stamp,
    check_retention,
)
from ..ops import (
    apply_compare_and_swap,
    apply_delete,
    apply_delete_field,
    apply_exists,
    apply_get,
    apply_increment,
    apply_pop,
    apply_push,
    apply_set,
    apply_set_field,
    apply_shift,
    apply_unshift,
    apply_update,
)
from ..predicates import Predicate
from ..records import BatchResult, Change, StateChange, TransactionResult, check_field
from ..values import (
    DEFAULT_LIMITS,
    MISSING,
    RESERVED_PREFIX,
    CheckedNames,
    Limits,
    check_delta,
    check_name,
    copy_value,
    import_sized,
    import_value,
    plain_str,
)
from .base import Acknowledge, StateAdapter, UpdateFn, acknowledge_writes, reads, writes
from .table import StateTable

__all__ = ["InternalTable", "MemoryStateAdapter", "TableSession"]

# The commit time of a fast feed record (FeedRing): read on every increment, so bound once.
_clock = time.time
_write_context = _WRITE_CONTEXT.get
_PLAIN_LOCK = type(threading.Lock())


class TableSession:
    """How a :class:`MemoryStateAdapter` makes an operation on its table atomic and lasting.

    ``lock`` is entered around every operation. Inside it, a write that
    changed entries hands them to ``commit`` (which may raise: then nothing
    is published) before the change sinks see them. ``journal_always``
    keeps the table's journal on even when no sink listens, for a commit
    that needs every change. ``acknowledge``, when set, wraps every write
    operation (see :func:`~motia_state.adapters.base.acknowledge_writes`).
    ``feed`` holds the store's change feed (None: the feed is off).
    This base is the memory adapter's own: a thread lock, nothing to commit.
    """

    journal_always: bool = False
    acknowledge: Acknowledge | None = None

    def __init__(self, table: StateTable) -> None:
        self.table = table
        self.lock: AbstractContextManager[Any] = threading.Lock()
        self.feed: FeedRing | None = None

    def commit(self, changes: list[StateChange], stamp: Stamp | None) -> None:
        """Make ``changes``, which one operation wrote, last (the lock is held).

        ``stamp`` is ``(at, depth, origin)`` when the changes are also the
        next records of the feed (numbered from ``feed.seq + 1``), None
        when they make no records.
        """


def _names(adapter: MemoryStateAdapter, trace_id: Any, key: Any) -> bool | None:
    """Check a (group, key) pair; true when a name is a str subclass, which the caller makes plain."""
    renamed = adapter._names.check(trace_id, key)
    if adapter._closed:
        raise UnavailableError("the adapter is closed")
    return renamed


class MemoryStateAdapter(StateAdapter):
    """State in this process's memory; lost when the process exits.

    The change feed keeps the newest ``feed_retention`` records within
    ``feed_retention_bytes`` of their encoding; ``feed_retention=0`` turns
    it off. With a ``session`` (storage of its own), the session's feed is
    used instead.
    """

    def __init__(
        self,
        *,
        limits: Limits = DEFAULT_LIMITS,
        session: TableSession | None = None,
        feed_retention: int = DEFAULT_RETENTION,
        feed_retention_bytes: int = DEFAULT_RETENTION_BYTES,
    ) -> None:
        super().__init__()
        self.limits = limits
        if session is None:
            check_retention(feed_retention, feed_retention_bytes)
            session = TableSession(StateTable(limits))
            if feed_retention:
                session.feed = FeedRing("m", feed_retention, feed_retention_bytes)
        self._session = session
        self._feed = session.feed
        self._table = session.table
        self._lock = session.lock
        # The base session commits nowhere: skip the call on every write.
        self._commit = None if type(session).commit is TableSession.commit else session.commit
        self._closed = False
        self._names = CheckedNames(limits)
        # Names that passed the checks and are at most FAST_NAME long:
        # increment's inlined path reads it (only on a plain lock, see there).
        self._fast_names: set[str] = set()
        self._plain_lock = type(self._lock) is _PLAIN_LOCK
        if session.journal_always:
            self._table.journal = []
        self._sinks_changed()
        #: The runtime's own handle: reserved groups allowed, no change events, no feed records.
        self.internal = InternalTable(self)
        if session.acknowledge is not None:
            acknowledge_writes(self, session.acknowledge)
            acknowledge_writes(self.internal, session.acknowledge)

    def _sinks_changed(self) -> None:
        if self._session.journal_always:
            return  # the journal stays on whoever listens (and even once closed)
        # With no listener and nothing to commit, only the feed hears of a
        # write: the table hands it each change directly, no journal between.
        feed_only = self._feed is not None and not self._sinks and self._commit is None
        with self._lock:
            self._table.feed = self._feed if feed_only else None
            self._table.journal = [] if not feed_only and (self._sinks or self._feed is not None) else None

    def _flush(self) -> None:
        # Called under the lock, so sinks and the feed see changes in commit
        # order, and only once the session committed them.
        journal = self._table.journal
        if journal:
            self._table.journal = []
            feed = self._feed
            if feed is None:
                if self._commit is not None:
                    self._commit(journal, None)
            else:
                # current_write_context() and now_ms(), inlined: every write of a file store comes here.
                depth, origin = _write_context() if _CONTEXT_USED[0] else (0, None)
                at = int(_clock() * 1000)
                if self._commit is not None:
                    self._commit(journal, (at, depth, origin))
                feed.record(journal, at, depth, origin)
            if self._sinks:
                self._publish(journal)

    # -- the change feed -------------------------------------------------------

    def _ring(self) -> FeedRing:
        if self._feed is None:
            raise InvalidArgumentError(FEED_OFF)
        if self._closed:
            raise UnavailableError("the adapter is closed")
        return self._feed

    def changes(
        self,
        after: str | None = None,
        *,
        groups: Collection[str] | None = None,
        keys: Collection[str] | None = None,
        follow: bool = True,
    ) -> AsyncIterator[Change]:
        ring = self._ring()
        with self._lock:
            start = ring.position(after)
        return ChangeStream(self, start, groups=groups, keys=keys, follow=follow)

    def _feed_read(self, after: int | None, limit: int) -> tuple[list[Change], int]:
        """Up to ``limit`` records after sequence number ``after`` (see :class:`~motia_state.feed.FeedSource`)."""
        ring = self._ring()
        with self._lock:
            return ring.read(after, limit)

    async def _feed_wait(self, after: int) -> None:
        """Return once a record after ``after`` may have been committed."""
        ring = self._ring()
        with self._lock:
            if ring.seq > after:
                return
            event, waker = ring.waiter()
        try:
            await event.wait()
        finally:
            if not event.is_set():
                with self._lock:
                    ring.forget(waker)

    async def history(self, group: str, key: str, limit: int = 100) -> list[Change]:
        if _names(self, group, key):
            group, key = plain_str(group), plain_str(key)
        if type(limit) is not int or limit < 0:
            raise InvalidArgumentError(f"limit: expected a non-negative int, got {limit!r}")
        ring = self._ring()
        with self._lock:
            return ring.history(group, key, limit)

    async def feed_info(self) -> dict[str, Any]:
        ring = self._ring()
        with self._lock:
            return ring.info()

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[None]:
        """The lock, with the table's direct feed off: the internal handle's writes make no records."""
        with self._lock:
            table = self._table
            feed, table.feed = table.feed, None
            try:
                yield
            finally:
                table.feed = feed

    def _commit_quietly(self) -> None:
        # As _flush, for the internal handle: committed, never published.
        journal = self._table.journal
        if journal:
            self._table.journal = []
            if self._commit is not None:
                self._commit(journal, None)

    def _check_group(self, group: Any, what: str = "traceId") -> str:
        # ``what``: the argument's name in the error (getGroup calls it groupId).
        name = check_name(group, what, self.limits)
        if self._closed:
            raise UnavailableError("the adapter is closed")
        return name

    async def get(self, trace_id: str, key: str) -> Any:
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        with self._lock:
            return self._table.apply(trace_id, key, "get", apply_get)

    async def exists(self, trace_id: str, key: str) -> bool:
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        with self._lock:
            return bool(self._table.apply(trace_id, key, "exists", apply_exists))

    async def set(self, trace_id: str, key: str, value: Any) -> Any:
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        if self._feed is None:
            value, size = import_value(value, self.limits), -1
        else:
            # Checking an object's size encodes it: its feed record takes that size.
            value, size = import_sized(value, self.limits)
        with self._lock:
            self._table.write(trace_id, key, "set", value, size)
            self._flush()
            return copy_value(value)

    async def delete(self, trace_id: str, key: str) -> Any:
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        with self._lock:
            result = self._table.apply(trace_id, key, "delete", apply_delete)
            self._flush()
        return result

    async def increment(self, trace_id: str, key: str, delta: int | float = 1) -> int | float:
        # The hottest operation, so its common case is inlined here: an int
        # added to a stored int, both under 10**15 in magnitude (so the sum
        # is an exact int far inside every limit: the rule of
        # ops.apply_increment, which anything else goes through), names that
        # passed the checks and are short, nothing journaled. With the feed
        # on it appends one fast record to the ring itself (see FeedRing).
        fast = self._fast_names
        if (
            type(delta) is not int
            or not -1_000_000_000_000_000 < delta < 1_000_000_000_000_000
            or type(trace_id) is not str
            or type(key) is not str
            or trace_id not in fast
            or key not in fast
        ):
            return await self._increment(trace_id, key, delta)
        # Names reach _fast_names only on a store whose lock is a plain
        # threading.Lock, and close() empties it. acquire/release in a
        # try costs less than a with block (no exit call with three Nones).
        lock = self._lock
        lock.acquire()  # type: ignore[attr-defined]
        try:
            table = self._table
            entries = table.data.get(trace_id)
            if table.journal is None and entries is not None:
                old = entries.get(key)
                if type(old) is int and -1_000_000_000_000_000 < old < 1_000_000_000_000_000:
                    entries[key] = new = old + delta
                    ring = table.feed
                    if ring is not None:
                        slots = ring.slots
                        if _CONTEXT_USED[0]:
                            depth, origin = _write_context()
                            if depth or origin is not None:
                                # A step's write: its depth and origin make it a record of the
                                # other kind, sized as it is appended (FeedRing.put, inlined).
                                slots.extend((trace_id, key, old, new, _clock(), ("increment", depth, origin)))
                                size = INT_RECORD + len(trace_id) + len(key)
                                ring.sizes.append(size)
                                ring.room -= size
                                if ring.room < 0 or len(slots) > ring.limit:
                                    ring.settle()
                                return new
                        slots.extend((trace_id, key, old, new, _clock(), None))
                        if len(slots) > ring.limit:
                            ring.settle()
                    return new
            return self._increment_locked(trace_id, key, delta)
        finally:
            lock.release()  # type: ignore[attr-defined]

    async def _increment(self, trace_id: Any, key: Any, delta: Any) -> int | float:
        # Any increment off the inlined path: the full checks (which name the error), then the general path.
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        delta = check_delta(delta)
        if self._plain_lock:
            fast = self._fast_names
            if len(fast) >= 8192:
                fast.clear()  # bounded: ever-new names are just checked again
            for name in (trace_id, key):
                # Never a reserved name: the inlined path takes what it finds here as a valid group.
                if len(name) <= FAST_NAME and not name.startswith(RESERVED_PREFIX):
                    fast.add(name)
        with self._lock:
            return self._increment_locked(trace_id, key, delta)

    def _increment_locked(self, trace_id: str, key: str, delta: int | float) -> int | float:
        table = self._table
        if table.journal is not None:
            result: int | float = table.apply(trace_id, key, "increment", apply_increment, delta)
            self._flush()
            return result
        entries = table.data.get(trace_id)
        if entries is None or key not in entries:
            # A new entry: through write(), which keeps the listing order current (and records it).
            new, result = apply_increment(MISSING, delta)
            table.write(trace_id, key, "increment", new)
            return result
        old = entries[key]
        new, result = apply_increment(old, delta)
        entries[key] = new
        if table.feed is not None:
            table.feed.put_number(trace_id, key, "increment", old, new)
        return result

    async def decrement(self, trace_id: str, key: str, delta: int | float = 1) -> int | float:
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        delta = check_delta(delta)
        with self._lock:
            result: int | float = self._table.apply(trace_id, key, "decrement", apply_increment, -delta)
            self._flush()
        return result

    async def compare_and_swap(self, trace_id: str, key: str, expected: Any, new_value: Any) -> bool:
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        expected = import_value(expected, self.limits, "expected")
        new_value = import_value(new_value, self.limits, "newValue")
        with self._lock:
            result = self._table.apply(trace_id, key, "compareAndSwap", apply_compare_and_swap, expected, new_value)
            self._flush()
        return bool(result)

    async def _swap_for_update(self, trace_id: str, key: str, expected: Any, new_value: Any) -> bool:
        # Both values are already imported: one was read from the store, the other checked by update.
        with self._lock:
            result = self._table.apply(trace_id, key, "update", apply_compare_and_swap, expected, new_value)
            self._flush()
        return bool(result)

    async def push(self, trace_id: str, key: str, *items: Any) -> list[Any]:
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        copied = import_value(list(items), self.limits, "items")
        with self._lock:
            result: list[Any] = self._table.apply_growing(trace_id, key, "push", apply_push, copied)
            self._flush()
        return result

    async def unshift(self, trace_id: str, key: str, *items: Any) -> list[Any]:
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        copied = import_value(list(items), self.limits, "items")
        with self._lock:
            result: list[Any] = self._table.apply_growing(trace_id, key, "unshift", apply_unshift, copied)
            self._flush()
        return result

    async def pop(self, trace_id: str, key: str) -> Any:
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        with self._lock:
            result = self._table.apply(trace_id, key, "pop", apply_pop)
            self._flush()
        return result

    async def shift(self, trace_id: str, key: str) -> Any:
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        with self._lock:
            result = self._table.apply(trace_id, key, "shift", apply_shift)
            self._flush()
        return result

    async def set_field(self, trace_id: str, key: str, field: str, value: Any) -> dict[str, Any]:
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        field = check_field(field)
        value = import_value(value, self.limits, nested=1)
        with self._lock:
            result: dict[str, Any] = self._table.apply_growing(trace_id, key, "setField", apply_set_field, field, value)
            self._flush()
        return result

    async def delete_field(self, trace_id: str, key: str, field: str) -> dict[str, Any]:
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        field = check_field(field)
        with self._lock:
            result: dict[str, Any] = self._table.apply(trace_id, key, "deleteField", apply_delete_field, field)
            self._flush()
        return result

    async def update(self, trace_id: str, key: str, fn: UpdateFn) -> Any:
        if _names(self, trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        if inspect.iscoroutinefunction(fn):
            return await self._optimistic_update(trace_id, key, fn)
        with self._lock:
            result = self._table.apply(trace_id, key, "update", apply_update, fn, self.limits)
            self._flush()
        return result

    async def get_group(self, group_id: str) -> list[Any]:
        group_id = self._check_group(group_id, "groupId")
        with self._lock:
            return self._table.get_group(group_id)

    async def keys(self, trace_id: str) -> list[str]:
        trace_id = self._check_group(trace_id)
        with self._lock:
            return self._table.keys(trace_id)

    async def scan(
        self,
        after: tuple[str, str] | None = None,
        *,
        limit: int = 100,
        group: str | None = None,
        where: Predicate | None = None,
    ) -> tuple[list[tuple[str, str, Any]], tuple[str, str] | None]:
        """One page of ``(group, key, value)`` in (group, key) order after ``after``; see :meth:`StateTable.scan`.

        The paged listing primitive of the workbench: a page costs about the
        same on a store of 100 entries as on one of 100,000.
        """
        if group is not None:
            group = self._check_group(group)
        elif self._closed:
            raise UnavailableError("the adapter is closed")
        with self._lock:
            return self._table.scan(after, limit, group=group, where=where)

    async def groups(self) -> list[str]:
        if self._closed:
            raise UnavailableError("the adapter is closed")
        with self._lock:
            return self._table.groups()

    async def clear(self, trace_id: str) -> None:
        trace_id = self._check_group(trace_id)
        with self._lock:
            self._table.clear(trace_id)
            self._flush()

    async def transaction(self, trace_id: str, operations: Sequence[Any]) -> TransactionResult:
        trace_id = self._check_group(trace_id)
        with self._lock:
            result = self._table.transaction(trace_id, operations)
            self._flush()
        return result

    async def batch(self, trace_id: str, operations: Sequence[Any]) -> BatchResult:
        trace_id = self._check_group(trace_id)
        with self._lock:
            result = self._table.batch(trace_id, operations)
            self._flush()
        return result

    async def close(self) -> None:
        self._closed = True
        self._fast_names.clear()  # increment's inlined path checks no _closed: it finds no name
        if self._feed is not None:
            with self._lock:
                self._feed.wake()  # followers end with UNAVAILABLE instead of waiting forever


class InternalTable:
    """The runtime's handle on a memory or file adapter (``adapter.internal``).

    The same operations as the adapter's, on the same table, atomic and (in
    a file store) as durable as its writes, but it may use the reserved
    groups (``__motia/...``) that the public API refuses, and its writes
    fire no change events.
    """

    def __init__(self, adapter: MemoryStateAdapter) -> None:
        self._adapter = adapter

    def _check(self, group: Any, key: Any = None) -> MemoryStateAdapter:
        adapter = self._adapter
        # Checked as a name, not as a group: a reserved group is allowed here.
        check_name(group, "internal group", adapter.limits)
        if key is not None:
            check_name(key, "key", adapter.limits)
        if adapter._closed:
            raise UnavailableError("the adapter is closed")
        return adapter

    @reads
    async def get(self, group: str, key: str) -> Any:
        """The stored value, or None when missing."""
        adapter = self._check(group, key)
        with adapter._lock:
            return adapter._table.apply(group, key, "get", apply_get)

    @writes
    async def set(self, group: str, key: str, value: Any) -> Any:
        """Store ``value``; returns it."""
        adapter = self._check(group, key)
        value = import_value(value, adapter.limits)
        with adapter._quietly():
            result = adapter._table.apply(group, key, "set", apply_set, value)
            adapter._commit_quietly()
        return result

    @writes
    async def delete(self, group: str, key: str) -> Any:
        """Remove the entry; returns the old value (None when missing)."""
        adapter = self._check(group, key)
        with adapter._quietly():
            result = adapter._table.apply(group, key, "delete", apply_delete)
            adapter._commit_quietly()
        return result

    @writes
    async def compare_and_swap(self, group: str, key: str, expected: Any, new_value: Any) -> bool:
        """Store ``new_value`` if the current value JSON-equals ``expected``."""
        adapter = self._check(group, key)
        expected = import_value(expected, adapter.limits, "expected")
        new_value = import_value(new_value, adapter.limits, "newValue")
        with adapter._quietly():
            result = adapter._table.apply(group, key, "compareAndSwap", apply_compare_and_swap, expected, new_value)
            adapter._commit_quietly()
        return bool(result)

    @reads
    async def keys(self, group: str) -> list[str]:
        """The group's keys, sorted."""
        adapter = self._check(group)
        with adapter._lock:
            return adapter._table.keys(group)

    @reads
    async def get_group(self, group: str) -> list[Any]:
        """The group's values, ordered by key."""
        adapter = self._check(group)
        with adapter._lock:
            return adapter._table.get_group(group)

    @writes
    async def transaction(self, group: str, operations: Sequence[Any]) -> TransactionResult:
        """Run the operations as one all-or-nothing step on the group."""
        adapter = self._check(group)
        with adapter._quietly():
            result = adapter._table.transaction(group, operations)
            adapter._commit_quietly()
        return result
