"""StateManager: the one place for cross-cutting concerns over any adapter.

It adds change events, observability and deprecations on top of an adapter;
the adapter already enforces validation and limits with the shared rules,
so nothing is checked twice on the hot path.

Events: the adapter hands every committed change to the manager's sink while
it still holds its lock, so the pending queue is in commit order. An
operation returns once the events committed up to its own have been
delivered: whichever caller finds the dispatcher free delivers them, one
event at a time, copying values so a listener can never change what is
stored. A caller never delivers events committed after its own operation,
so a slow listener delays an operation by the backlog ahead of it and no
more, and the queue holds at most the events of operations still in flight
(backpressure: nothing is ever dropped).

Internal module: ``StateManager`` is re-exported by ``motia_state``.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import threading
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from types import TracebackType
from typing import Any, TypeVar

import anyio

from .adapters.base import StateAdapter, UpdateFn
from .adapters.memory import MemoryStateAdapter
from .errors import StateError
from .observability import MetricsSummary, Observer, OperationRecord
from .records import BatchResult, Change, StateChange, TransactionResult
from .values import Limits, copy_value

__all__ = ["ChangeListener", "StateManager"]

log = logging.getLogger("motia_state")

ChangeListener = Callable[[StateChange], "Awaitable[None] | None"]
"""A change listener: sync or async, called with one :class:`StateChange`."""

_T = TypeVar("_T")

#: Set while this context delivers events, so an operation that a listener
#: runs leaves its own events to the delivery already under way.
_DELIVERING: contextvars.ContextVar[StateManager | None] = contextvars.ContextVar("_DELIVERING", default=None)


class StateManager:
    """Every state operation over ``adapter``, with events and observability.

    ``observers`` receive an :class:`OperationRecord` per operation; with
    ``metrics=True`` the built-in :class:`MetricsSummary` is one of them and
    is available as :attr:`metrics`.
    """

    def __init__(
        self,
        adapter: StateAdapter | None = None,
        *,
        observers: Sequence[Observer] = (),
        metrics: bool = False,
    ) -> None:
        self.adapter: StateAdapter = adapter if adapter is not None else MemoryStateAdapter()
        self._listeners: list[ChangeListener] = []
        self._pending: deque[StateChange] = deque()
        self._dispatching = threading.Lock()
        #: Events ever queued / delivered (or dropped with their listeners gone);
        #: an operation waits until ``_delivered`` reaches what was queued when it returned.
        self._queued = 0
        self._delivered = 0
        self._target = 0
        #: An event whose delivery was cancelled midway, and the listeners yet
        #: to hear it: the next delivery starts there, so a cancelled caller
        #: never takes an event (perhaps another caller's) from the others.
        self._resume: tuple[StateChange, list[ChangeListener]] | None = None
        self._remove_sink: Callable[[], None] | None = None
        self._observers: list[Observer] = list(observers)
        #: The built-in summary when ``metrics=True``, else None.
        self.metrics: MetricsSummary | None = None
        if metrics:
            self.metrics = MetricsSummary()
            self._observers.append(self.metrics)

    @property
    def limits(self) -> Limits:
        """The adapter's limits."""
        return self.adapter.limits

    # -- events ------------------------------------------------------------------

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` after every committed write; returns its remover."""
        self._listeners.append(listener)
        if self._remove_sink is None:
            self._remove_sink = self.adapter.add_change_sink(self._enqueue)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
            if not self._listeners and self._remove_sink is not None:
                self._remove_sink()
                self._remove_sink = None
                # Nobody is left to hear the queued events: count them as delivered.
                self._delivered += len(self._pending)
                self._pending.clear()

        return unsubscribe

    def _enqueue(self, changes: list[StateChange]) -> None:
        # Called by the adapter under its own lock: commit order is queue order.
        self._pending.extend(changes)
        self._queued += len(changes)

    async def _dispatch(self) -> None:
        """Deliver the events queued up to now; return once they are delivered."""
        target = self._queued
        if _DELIVERING.get() is self:
            # Called from a listener: the delivery under way (this context's
            # own) takes these events too; waiting here would wait for itself.
            self._target = max(self._target, target)
            return
        while self._delivered < target:
            if not self._dispatching.acquire(blocking=False):
                # Another caller delivers, in commit order; ours are behind it.
                await anyio.sleep(0.0005)
                continue
            token = _DELIVERING.set(self)
            try:
                self._target = max(self._target, target)
                while self._delivered < self._target and (self._resume is not None or self._pending):
                    if self._resume is None:
                        change = self._pending.popleft()
                        event = StateChange(
                            change.trace_id,
                            change.key,
                            change.op,
                            change.event,
                            copy_value(change.old_value),
                            copy_value(change.new_value),
                        )
                        self._resume = (event, list(self._listeners))
                    await self._deliver(*self._resume)
                    self._resume = None
                    self._delivered += 1
            finally:
                _DELIVERING.reset(token)
                self._dispatching.release()
            if not self._pending and self._resume is None:
                return

    async def _deliver(self, event: StateChange, waiting: list[ChangeListener]) -> None:
        # Each listener leaves ``waiting`` before it is called: one cancelled
        # while it ran has heard the event and is not called with it again.
        while waiting:
            listener = waiting.pop(0)
            if listener not in self._listeners:
                continue  # removed meanwhile
            try:
                outcome = listener(event)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("change listener %r failed on %s %r/%r", listener, event.op, event.trace_id, event.key)

    # -- observability -------------------------------------------------------------

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Send an :class:`OperationRecord` of every operation to ``observer``."""
        self._observers.append(observer)

        def remove() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return remove

    def _observe(self, record: OperationRecord) -> None:
        for observer in tuple(self._observers):
            try:
                observer(record)
            except Exception:
                log.exception("observer %r failed", observer)

    async def _run(self, op: str, trace_id: str | None, key: str | None, call: Awaitable[_T], count: int = 1) -> _T:
        if not self._observers:
            result = await call
            if self._queued != self._delivered:
                await self._dispatch()
            return result
        start = time.perf_counter()
        code = "OK"
        try:
            result = await call
        except StateError as e:
            code = e.code
            raise
        except Exception:
            code = "INTERNAL"
            raise
        except BaseException:  # cancelled: not the operation's failure
            code = "CANCELLED"
            raise
        finally:
            duration = time.perf_counter() - start
            if code == "OK" and isinstance(result, TransactionResult) and not result.success:
                code = result.code or "INTERNAL"
            self._observe(OperationRecord(op, trace_id, key, count, duration, code))
        if self._queued != self._delivered:
            await self._dispatch()
        return result

    # -- operations -------------------------------------------------------------

    # The hottest operations return _run's coroutine instead of awaiting it
    # in one of their own: a step's request through the parent pays one
    # coroutine fewer. Awaited, they are what an async method would be.

    def get(self, trace_id: str, key: str) -> Awaitable[Any]:
        """The stored value, or None when missing."""
        return self._run("get", trace_id, key, self.adapter.get(trace_id, key))

    def set(self, trace_id: str, key: str, value: Any) -> Awaitable[Any]:
        """Store a copy of ``value``; returns it."""
        return self._run("set", trace_id, key, self.adapter.set(trace_id, key, value))

    async def delete(self, trace_id: str, key: str) -> Any:
        """Remove the entry; returns the old value (None when missing)."""
        return await self._run("delete", trace_id, key, self.adapter.delete(trace_id, key))

    async def exists(self, trace_id: str, key: str) -> bool:
        """Whether an entry is stored (a stored null counts)."""
        return await self._run("exists", trace_id, key, self.adapter.exists(trace_id, key))

    def increment(self, trace_id: str, key: str, delta: int | float = 1) -> Awaitable[int | float]:
        """Add ``delta`` (missing counts as 0); returns the new number."""
        return self._run("increment", trace_id, key, self.adapter.increment(trace_id, key, delta))

    def decrement(self, trace_id: str, key: str, delta: int | float = 1) -> Awaitable[int | float]:
        """Subtract ``delta`` (no floor); returns the new number."""
        return self._run("decrement", trace_id, key, self.adapter.decrement(trace_id, key, delta))

    async def compare_and_swap(self, trace_id: str, key: str, expected: Any, new_value: Any) -> bool:
        """Store ``new_value`` if the current value JSON-equals ``expected``."""
        return await self._run(
            "compareAndSwap", trace_id, key, self.adapter.compare_and_swap(trace_id, key, expected, new_value)
        )

    async def push(self, trace_id: str, key: str, *items: Any) -> list[Any]:
        """Append items; returns the new array."""
        return await self._run("push", trace_id, key, self.adapter.push(trace_id, key, *items))

    async def unshift(self, trace_id: str, key: str, *items: Any) -> list[Any]:
        """Prepend items, keeping their order; returns the new array."""
        return await self._run("unshift", trace_id, key, self.adapter.unshift(trace_id, key, *items))

    async def pop(self, trace_id: str, key: str) -> Any:
        """Remove and return the last element (None when empty or missing)."""
        return await self._run("pop", trace_id, key, self.adapter.pop(trace_id, key))

    async def shift(self, trace_id: str, key: str) -> Any:
        """Remove and return the first element (None when empty or missing)."""
        return await self._run("shift", trace_id, key, self.adapter.shift(trace_id, key))

    async def set_field(self, trace_id: str, key: str, field: str, value: Any) -> dict[str, Any]:
        """Set one field of an object (missing or null start as {})."""
        return await self._run("setField", trace_id, key, self.adapter.set_field(trace_id, key, field, value))

    async def delete_field(self, trace_id: str, key: str, field: str) -> dict[str, Any]:
        """Remove one field of an object; returns the new object."""
        return await self._run("deleteField", trace_id, key, self.adapter.delete_field(trace_id, key, field))

    async def update(self, trace_id: str, key: str, fn: UpdateFn) -> Any:
        """Store and return ``fn(current)`` atomically (fn gets None when missing)."""
        return await self._run("update", trace_id, key, self.adapter.update(trace_id, key, fn))

    async def atomic_update(self, trace_id: str, key: str, fn: UpdateFn) -> Any:
        """Deprecated alias of :meth:`update`; warns with DeprecationWarning."""
        warnings.warn("atomic_update is deprecated; use update", DeprecationWarning, stacklevel=2)
        return await self._run("update", trace_id, key, self.adapter.update(trace_id, key, fn))

    async def get_group(self, group_id: str) -> list[Any]:
        """The group's values ordered by key."""
        return await self._run("getGroup", group_id, None, self.adapter.get_group(group_id), 0)

    async def keys(self, trace_id: str) -> list[str]:
        """The group's keys, sorted."""
        return await self._run("keys", trace_id, None, self.adapter.keys(trace_id), 0)

    async def groups(self) -> list[str]:
        """Every non-empty group, sorted."""
        return await self._run("groups", None, None, self.adapter.groups(), 0)

    async def clear(self, trace_id: str) -> None:
        """Remove every entry of the group and nothing else."""
        await self._run("clear", trace_id, None, self.adapter.clear(trace_id), 0)

    async def transaction(self, trace_id: str, operations: Sequence[Any]) -> TransactionResult:
        """Run the operations as one all-or-nothing step (see the guide)."""
        count = len(operations) if isinstance(operations, (list, tuple)) else 0
        return await self._run("transaction", trace_id, None, self.adapter.transaction(trace_id, operations), count)

    async def batch(self, trace_id: str, operations: Sequence[Any]) -> BatchResult:
        """Run the operations in order, each atomic on its own."""
        count = len(operations) if isinstance(operations, (list, tuple)) else 0
        return await self._run("batch", trace_id, None, self.adapter.batch(trace_id, operations), count)

    # -- the change feed ------------------------------------------------------------

    def changes(
        self,
        after: str | None = None,
        *,
        groups: Collection[str] | None = None,
        keys: Collection[str] | None = None,
        follow: bool = True,
    ) -> AsyncIterator[Change]:
        """The store's change feed from ``after`` (see :meth:`StateAdapter.changes`)."""
        return self.adapter.changes(after, groups=groups, keys=keys, follow=follow)

    async def history(self, group: str, key: str, limit: int = 100) -> list[Change]:
        """The retained feed records of one entry, newest first, at most ``limit``."""
        return await self.adapter.history(group, key, limit)

    async def feed_info(self) -> dict[str, Any]:
        """``{"first": cursor|None, "last": cursor|None, "retained": n}`` of the store's feed."""
        return await self.adapter.feed_info()

    # camelCase aliases, for code ported from Motia (declared here so type checkers see them).
    getGroup = get_group
    compareAndSwap = compare_and_swap
    setField = set_field
    deleteField = delete_field
    atomicUpdate = atomic_update

    # -- lifecycle ---------------------------------------------------------------

    async def close(self) -> None:
        """Close the adapter."""
        if self._remove_sink is not None:
            self._remove_sink()
            self._remove_sink = None
        await self.adapter.close()

    async def __aenter__(self) -> StateManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
