"""The adapter interface every storage backend implements.

An adapter owns storage and atomicity only. It validates its arguments with
the shared rules (so it is safe on its own) and reports every entry it
writes to its change sinks, in commit order, while still holding its lock;
the StateManager turns those into events and metrics.

Every operation of the interface is marked here, once, as a read
(:func:`reads`) or a write (:func:`writes`). Storage that must do something
before a write is acknowledged (the file store's fsync in mode "always")
wraps every marked write with :func:`acknowledge_writes`, so a new write
operation is covered as soon as it is declared here.
"""

from __future__ import annotations

import abc
import random
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar

import anyio

from ..errors import ConflictError, UnavailableError
from ..predicates import Predicate, predicate_holds
from ..records import BatchResult, Change, StateChange, TransactionResult
from ..values import DEFAULT_LIMITS, Limits, copy_value, import_value, is_reserved_group

__all__ = [
    "READ_OPERATIONS",
    "UPDATE_RETRIES",
    "WRITE_OPERATIONS",
    "Acknowledge",
    "ChangeSink",
    "StateAdapter",
    "UpdateFn",
    "acknowledge_writes",
    "backoff",
    "reads",
    "write_operations",
    "writes",
]

ChangeSink = Callable[[list[StateChange]], None]
"""Receives the entries one committed operation wrote, inside the commit."""

UpdateFn = Callable[[Any], Any]
"""``fn(current) -> new`` for ``update``; may also be ``async``."""

_Self = TypeVar("_Self", bound="StateAdapter")
_F = TypeVar("_F", bound=Callable[..., Any])

Acknowledge = Callable[[Awaitable[Any]], Awaitable[Any]]
"""Runs one write operation and returns its result once the write may be acknowledged."""

_KIND: Final = "_motia_operation"


def reads(fn: _F) -> _F:
    """Mark an operation as a read: it never changes stored state."""
    setattr(fn, _KIND, "read")
    return fn


def writes(fn: _F) -> _F:
    """Mark an operation as a write: storage may need to finish it before it is acknowledged."""
    setattr(fn, _KIND, "write")
    return fn


def _marked(cls: type, kind: str) -> frozenset[str]:
    return frozenset(
        name for klass in cls.__mro__ for name, fn in vars(klass).items() if getattr(fn, _KIND, None) == kind
    )


def write_operations(cls: type) -> frozenset[str]:
    """Names of the methods of ``cls`` or of its bases marked with :func:`writes`."""
    return _marked(cls, "write")


def acknowledge_writes(target: object, acknowledge: Acknowledge) -> None:
    """Make every write operation of ``target`` return only through ``acknowledge``.

    Bound on the instance, once, so that storage which does not need it pays
    nothing; which methods are writes comes from the :func:`writes` marks, so
    none can be forgotten.
    """
    cls = type(target)
    for name in write_operations(cls):
        setattr(target, name, _acknowledged(target, name, getattr(cls, name), acknowledge))


def _acknowledged(
    target: object, name: str, operation: Callable[..., Awaitable[Any]], acknowledge: Acknowledge
) -> Callable[..., Awaitable[Any]]:
    async def write(*args: Any, **kwargs: Any) -> Any:
        return await acknowledge(operation(target, *args, **kwargs))

    write.__name__ = write.__qualname__ = name
    write.__doc__ = operation.__doc__
    return write


#: How often an ``update`` with an async fn retries before CONFLICT.
UPDATE_RETRIES = 64


async def backoff(attempt: int) -> None:
    """Sleep before retry ``attempt`` (0-based) of an optimistic loop.

    A random wait, growing with the attempt up to 10 ms, so that racing
    writers stop colliding in lockstep.
    """
    await anyio.sleep(random.uniform(0, 0.001 * min(attempt + 1, 10)))


class StateAdapter(abc.ABC):
    """Abstract base of the memory, file and Redis adapters."""

    limits: Limits = DEFAULT_LIMITS

    def __init__(self) -> None:
        self._sinks: list[ChangeSink] = []

    # -- change sinks -------------------------------------------------------

    def add_change_sink(self, sink: ChangeSink) -> Callable[[], None]:
        """Register a sink for committed changes; returns its remover."""
        self._sinks.append(sink)
        self._sinks_changed()

        def remove() -> None:
            if sink in self._sinks:
                self._sinks.remove(sink)
                self._sinks_changed()

        return remove

    def _sinks_changed(self) -> None:
        """Hook for adapters that only record changes while someone listens."""

    def _publish(self, changes: list[StateChange]) -> None:
        for sink in self._sinks:
            sink(changes)

    # -- single-entry operations ---------------------------------------------

    @abc.abstractmethod
    @reads
    async def get(self, trace_id: str, key: str) -> Any:
        """The stored value, or None when missing."""

    @abc.abstractmethod
    @writes
    async def set(self, trace_id: str, key: str, value: Any) -> Any:
        """Store ``value``; returns it."""

    @abc.abstractmethod
    @writes
    async def delete(self, trace_id: str, key: str) -> Any:
        """Remove the entry; returns the old value (None when missing)."""

    @abc.abstractmethod
    @reads
    async def exists(self, trace_id: str, key: str) -> bool:
        """Whether an entry is stored (a stored null counts)."""

    @abc.abstractmethod
    @writes
    async def increment(self, trace_id: str, key: str, delta: int | float = 1) -> int | float:
        """Add ``delta``; returns the new number."""

    @writes
    async def decrement(self, trace_id: str, key: str, delta: int | float = 1) -> int | float:
        """Subtract ``delta`` (no floor); returns the new number."""
        return await self.increment(trace_id, key, _negate(delta))

    @abc.abstractmethod
    @writes
    async def compare_and_swap(self, trace_id: str, key: str, expected: Any, new_value: Any) -> bool:
        """Store ``new_value`` if the current value JSON-equals ``expected``."""

    @abc.abstractmethod
    @writes
    async def push(self, trace_id: str, key: str, *items: Any) -> list[Any]:
        """Append items; returns the new array."""

    @abc.abstractmethod
    @writes
    async def unshift(self, trace_id: str, key: str, *items: Any) -> list[Any]:
        """Prepend items (keeping their order); returns the new array."""

    @abc.abstractmethod
    @writes
    async def pop(self, trace_id: str, key: str) -> Any:
        """Remove and return the last element (None when empty or missing)."""

    @abc.abstractmethod
    @writes
    async def shift(self, trace_id: str, key: str) -> Any:
        """Remove and return the first element (None when empty or missing)."""

    @abc.abstractmethod
    @writes
    async def set_field(self, trace_id: str, key: str, field: str, value: Any) -> dict[str, Any]:
        """Set one field of an object; returns the new object."""

    @abc.abstractmethod
    @writes
    async def delete_field(self, trace_id: str, key: str, field: str) -> dict[str, Any]:
        """Remove one field of an object; returns the new object."""

    @abc.abstractmethod
    @writes
    async def update(self, trace_id: str, key: str, fn: UpdateFn) -> Any:
        """Store and return ``fn(current)`` atomically."""

    @writes
    async def atomic_update(self, trace_id: str, key: str, fn: UpdateFn) -> Any:
        """Deprecated alias of :meth:`update`."""
        warnings.warn("atomic_update is deprecated; use update", DeprecationWarning, stacklevel=2)
        return await self.update(trace_id, key, fn)

    # -- group operations ------------------------------------------------------

    @abc.abstractmethod
    @reads
    async def get_group(self, group_id: str) -> list[Any]:
        """The group's values, ordered by key (code-point order)."""

    @abc.abstractmethod
    @reads
    async def keys(self, trace_id: str) -> list[str]:
        """The group's keys, sorted."""

    @abc.abstractmethod
    @reads
    async def groups(self) -> list[str]:
        """Every group holding at least one entry, sorted."""

    @reads
    async def scan(
        self,
        after: tuple[str, str] | None = None,
        *,
        limit: int = 100,
        group: str | None = None,
        where: Predicate | None = None,
    ) -> tuple[list[tuple[str, str, Any]], tuple[str, str] | None]:
        """One page of ``(group, key, value)`` in (group, key) order, strictly after ``after``.

        Returns the page and the position to continue from (None at the
        end). ``group`` limits it to one group; ``where``, a predicate as
        :func:`~motia_state.predicates.parse_predicate` returns it, keeps
        only the values it holds for (an adapter may evaluate it in the
        store). Reserved groups are never listed. This default lists the
        groups, then reads each group's keys and their values in chunks,
        one transaction per chunk (so each chunk is a consistent read);
        adapters override it with a listing that costs about one page
        however large the store.
        """
        names = [group] if group is not None else await self.groups()
        found: list[tuple[str, str, Any]] = []  # one more than a page tells that more follow
        for name in names:
            if (after is not None and name < after[0]) or is_reserved_group(name):
                continue
            keys = [k for k in await self.keys(name) if after is None or (name, k) > after]
            index = 0
            while index < len(keys) and len(found) <= limit:
                wanted = _SCAN_CHUNK if where is not None else min(_SCAN_CHUNK, limit + 1 - len(found))
                chunk = keys[index : index + wanted]
                index += len(chunk)
                ops = [{"type": t, "key": k} for k in chunk for t in ("exists", "get")]
                read = (await self.transaction(name, ops)).results
                for i, key in enumerate(chunk):
                    present, value = read[2 * i], read[2 * i + 1]
                    if present and (where is None or predicate_holds(where, value)):
                        found.append((name, key, value))
            if len(found) > limit:
                page = found[:limit]
                return page, (page[-1][0], page[-1][1])
        return found, None

    @abc.abstractmethod
    @writes
    async def clear(self, trace_id: str) -> None:
        """Remove every entry of the group and nothing else."""

    @abc.abstractmethod
    @writes
    async def transaction(self, trace_id: str, operations: Sequence[Any]) -> TransactionResult:
        """Run the operations as one all-or-nothing step on the group."""

    @abc.abstractmethod
    @writes
    async def batch(self, trace_id: str, operations: Sequence[Any]) -> BatchResult:
        """Run the operations in order, each atomic on its own."""

    # -- the change feed ---------------------------------------------------------

    def changes(
        self,
        after: str | None = None,
        *,
        groups: Collection[str] | None = None,
        keys: Collection[str] | None = None,
        follow: bool = True,
    ) -> AsyncIterator[Change]:
        """The store's change feed from ``after``, in commit order.

        ``after`` is None (the oldest retained record), ``"now"`` (only what
        commits after this call: the position is fixed here, not at the
        first iteration) or the cursor of an earlier record. ``groups`` and
        ``keys`` keep only records of those; with ``follow`` the iterator
        waits for new records forever, without it it ends at the newest.
        A cursor older than what the feed retains raises CursorExpiredError
        (code CURSOR_EXPIRED); with the feed off (``feed_retention=0``) this
        is INVALID_ARGUMENT.
        """
        raise UnavailableError(f"{type(self).__name__} keeps no change feed")

    @reads
    async def history(self, group: str, key: str, limit: int = 100) -> list[Change]:
        """The retained records of one entry, newest first, at most ``limit``."""
        raise UnavailableError(f"{type(self).__name__} keeps no change feed")

    @reads
    async def feed_info(self) -> dict[str, Any]:
        """``{"first": cursor|None, "last": cursor|None, "retained": n}`` of the store's feed."""
        raise UnavailableError(f"{type(self).__name__} keeps no change feed")

    # -- camelCase aliases, for code ported from Motia --------------------------
    # Plain methods that return the snake_case method's awaitable: they call
    # a subclass's override, and are no operations of their own (storage
    # marks and wraps only the snake_case names).

    def getGroup(self, group_id: str) -> Awaitable[list[Any]]:
        """Alias of :meth:`get_group`."""
        return self.get_group(group_id)

    def compareAndSwap(self, trace_id: str, key: str, expected: Any, new_value: Any) -> Awaitable[bool]:
        """Alias of :meth:`compare_and_swap`."""
        return self.compare_and_swap(trace_id, key, expected, new_value)

    def setField(self, trace_id: str, key: str, field: str, value: Any) -> Awaitable[dict[str, Any]]:
        """Alias of :meth:`set_field`."""
        return self.set_field(trace_id, key, field, value)

    def deleteField(self, trace_id: str, key: str, field: str) -> Awaitable[dict[str, Any]]:
        """Alias of :meth:`delete_field`."""
        return self.delete_field(trace_id, key, field)

    def atomicUpdate(self, trace_id: str, key: str, fn: UpdateFn) -> Awaitable[Any]:
        """Deprecated alias of :meth:`update`."""
        warnings.warn("atomicUpdate is deprecated; use update", DeprecationWarning, stacklevel=2)
        return self.update(trace_id, key, fn)

    # -- lifecycle ---------------------------------------------------------------

    async def close(self) -> None:
        """Release resources; later operations fail with UNAVAILABLE."""

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- shared helpers ------------------------------------------------------

    async def _swap_for_update(self, trace_id: str, key: str, expected: Any, new_value: Any) -> bool:
        """The compare-and-swap that ends an optimistic ``update``.

        Adapters override it so that its change event says op "update", as
        an ``update`` done under the lock does; this default (for adapters
        that do not) reports "compareAndSwap".
        """
        return await self.compare_and_swap(trace_id, key, expected, new_value)

    async def _optimistic_update(self, trace_id: str, key: str, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        """``update`` with an async fn: get, await fn, compare-and-swap, retry.

        The lock of an adapter is never held across an ``await`` of user code,
        so an async fn runs optimistically; after UPDATE_RETRIES lost races
        the call fails with CONFLICT.
        """
        for attempt in range(UPDATE_RETRIES):
            current = await self.get(trace_id, key)
            new = import_value(await fn(copy_value(current)), self.limits)
            # A missing key and a stored null both read as None; the CAS
            # treats them alike, as the contract's "missing equals null".
            if await self._swap_for_update(trace_id, key, current, new):
                return new
            await backoff(attempt)
        raise ConflictError(f"update of {key!r} lost {UPDATE_RETRIES} races in a row")


#: Keys read per transaction by the default :meth:`StateAdapter.scan`.
_SCAN_CHUNK: Final = 500

#: Every read operation of the interface.
READ_OPERATIONS: Final = _marked(StateAdapter, "read")
#: Every write operation of the interface.
WRITE_OPERATIONS: Final = _marked(StateAdapter, "write")


def _negate(delta: Any) -> Any:
    # Validation happens in increment; only negate real numbers so that a bad
    # delta (a bool, a string) reaches it unchanged and is named correctly.
    t = type(delta)
    return -delta if t is int or t is float else delta
