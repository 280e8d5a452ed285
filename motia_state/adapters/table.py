"""An in-process state table: the pure ops applied to a dict of groups.

Shared by the memory adapter (which wraps it in a lock) and the file adapter
(which also appends what it wrote to its log). The table is synchronous and
holds no lock of its own: its caller provides atomicity.

Groups are dicts of their own, so group-wide operations (``get_group``,
``keys``, ``clear``) cost O(size of the group), never O(all state); a group
disappears when its last entry goes, so ``groups()`` lists only live ones.

Internal module: the memory and file adapters hold their state in it.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from ..feed import _CONTEXT_USED, _FIXED_SIZE, _OVERHEAD, _SMALL, _WRITE_CONTEXT, FeedRing, _encode
from ..ops import UNCHANGED, check_size, parse_transaction, run_batch, run_transaction
from ..predicates import Predicate, predicate_holds
from ..records import BatchResult, StateChange, TransactionResult, parse_operations
from ..values import MISSING, Limits, copy_value, is_reserved_group

__all__ = ["StateTable"]

# Bound once: a write with the feed on reads them every time.
_clock = time.time
_write_context = _WRITE_CONTEXT.get
_FIXED = _FIXED_SIZE


def key_before(order: list[str], key: str) -> str:
    """The key just before ``key`` in ``order`` ("" when it is the first: keys are non-empty)."""
    index = bisect_right(order, key) - 2
    return order[index] if index >= 0 else ""


class StateTable:
    """group -> key -> value, with a journal of what each operation wrote."""

    __slots__ = ("_group_order", "_key_order", "data", "feed", "journal", "limits")

    def __init__(self, limits: Limits) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.limits = limits
        #: When not None, every write appends a StateChange here; the owner
        #: drains it after each operation (events, the file log).
        self.journal: list[StateChange] | None = None
        #: When the journal is off and this is set, every write goes straight
        #: to this change feed (nothing else needs to hear of it).
        self.feed: FeedRing | None = None
        # Sorted names kept for paged listing (scan), rebuilt lazily: a write
        # that adds or removes an entry only drops what it made stale, so
        # the write path stays a dict operation.
        self._group_order: list[str] | None = None
        self._key_order: dict[str, list[str]] = {}

    def reordered(self) -> None:
        """Forget the sorted names; call after changing ``data`` other than through :meth:`write`."""
        self._group_order = None
        self._key_order = {}

    def write(self, group: str, key: str, op: str, new: Any, size: int = -1) -> None:
        """Store ``new`` (``MISSING`` removes the entry), journaling the change.

        ``size``, when not negative, is the encoded size of ``new``, known
        to the caller: the feed then does not encode ``new`` to size its
        record.
        """
        entries = self.data.get(group)
        old: Any = MISSING if entries is None else entries.get(key, MISSING)
        if new is MISSING:
            if entries is not None and key in entries:
                del entries[key]
                self._key_order.pop(group, None)
                if not entries:
                    del self.data[group]
                    self._group_order = None
        elif entries is None:
            self.data[group] = {key: new}
            self._group_order = None
        else:
            if old is MISSING:
                self._key_order.pop(group, None)
            entries[key] = new
        if self.journal is not None:
            self.journal.append(StateChange.of(group, key, op, old, new))
        elif self.feed is not None:
            # FeedRing.put, inlined: every write with the feed on and nobody
            # else listening comes through here.
            ring = self.feed
            if size < 0:
                t = type(new)
                size = 24 if t in _FIXED or (t is int and -_SMALL < new < _SMALL) else len(_encode(new))
            t = type(old)
            size += _OVERHEAD + len(group) + len(key)
            size += 24 if t in _FIXED or (t is int and -_SMALL < old < _SMALL) else len(_encode(old))
            info: Any = op
            if _CONTEXT_USED[0]:
                depth, origin = _write_context()
                if depth or origin is not None:
                    info = (op, depth, origin)
            slots = ring.slots
            slots.extend((group, key, old, new, _clock(), info))
            ring.sizes.append(size)
            ring.room -= size
            if ring.room < 0 or len(slots) > ring.limit:
                ring.settle()

    def read(self, group: str, key: str) -> Any:
        """The stored value or ``MISSING`` (not a copy: do not hand it out)."""
        entries = self.data.get(group)
        return MISSING if entries is None else entries.get(key, MISSING)

    def apply(self, group: str, key: str, op: str, fn: Callable[..., tuple[Any, Any]], *args: Any) -> Any:
        """Apply one pure op to one entry, store what it produced, return (a copy of) its result."""
        new, result = fn(self.read(group, key), *args)
        if new is not UNCHANGED:
            self.write(group, key, op, new)
        return copy_value(result)

    def apply_growing(self, group: str, key: str, op: str, fn: Callable[..., tuple[Any, Any]], *args: Any) -> Any:
        """As :meth:`apply`, for ops whose result can outgrow the value limit."""
        new, result = fn(self.read(group, key), *args)
        if new is not UNCHANGED:
            check_size(new, self.limits)
            self.write(group, key, op, new)
        return copy_value(result)

    def get_group(self, group: str) -> list[Any]:
        """Values of the group ordered by key (copies)."""
        entries = self.data.get(group)
        if not entries:
            return []
        return [copy_value(entries[k]) for k in sorted(entries)]

    def keys(self, group: str) -> list[str]:
        """Sorted keys of the group."""
        entries = self.data.get(group)
        return sorted(entries) if entries else []

    def groups(self) -> list[str]:
        """Sorted names of the non-empty groups (the runtime's reserved groups hidden)."""
        return sorted(group for group in self.data if not is_reserved_group(group))

    def scan(
        self,
        after: tuple[str, str] | None,
        limit: int,
        *,
        group: str | None = None,
        where: Predicate | None = None,
        budget: int = 10_000,
    ) -> tuple[list[tuple[str, str, Any]], tuple[str, str] | None]:
        """One page of entries in (group, key) order, strictly after ``after``.

        Returns the page (copies of the values) and the position to continue
        from, or None at the end. Only ``group`` is read when given; reserved
        groups are skipped; ``where`` (a parsed predicate) is asked of each value here,
        next to the data. At most ``budget`` entries are examined, so a
        filter that matches little returns a short page with a position
        rather than holding the caller's lock over the whole table.
        """
        if group is not None:
            groups: list[str] = [group] if group in self.data else []
        else:
            if self._group_order is None:
                self._group_order = sorted(self.data)
            groups = self._group_order
        start = 0 if after is None or group is not None else bisect_right(groups, after[0]) - 1
        page: list[tuple[str, str, Any]] = []
        examined = 0
        for index in range(max(start, 0), len(groups)):
            name = groups[index]
            if after is not None and name < after[0]:
                continue
            if is_reserved_group(name):
                continue
            entries = self.data[name]
            order = self._key_order.get(name)
            if order is None:
                order = self._key_order[name] = sorted(entries)
            first = bisect_right(order, after[1]) if after is not None and name == after[0] else 0
            for key in order[first:]:
                if len(page) >= limit:
                    return page, (page[-1][0], page[-1][1])
                if examined >= budget:
                    return page, (name, key_before(order, key))
                examined += 1
                value = entries[key]
                if where is None or predicate_holds(where, value):
                    page.append((name, key, copy_value(value)))
        return page, None

    def clear(self, group: str) -> None:
        """Remove the group, journaling one deletion per entry (in key order)."""
        entries = self.data.get(group)
        if not entries:
            return
        if self.journal is None and self.feed is None:
            del self.data[group]
            return
        for key in sorted(entries):
            self.write(group, key, "clear", MISSING)

    def transaction(self, group: str, raw_ops: Sequence[Any], *, allow_update: bool = True) -> TransactionResult:
        """Validate every record, then run them all or nothing."""
        ops = parse_transaction(raw_ops, self.limits, allow_update=allow_update)
        if isinstance(ops, TransactionResult):
            return ops
        result, staged = run_transaction(ops, lambda key: self.read(group, key), self.limits)
        for key, (op, new) in staged.items():
            if not (new is MISSING and self.read(group, key) is MISSING):
                self.write(group, key, op, new)
        return result

    def batch(self, group: str, raw_ops: Sequence[Any], *, allow_update: bool = True) -> BatchResult:
        """Run each record on its own (a bad one fails alone), then commit what they wrote, in order."""
        ops = parse_operations(raw_ops, limits=self.limits, allow_update=allow_update, collect=True)
        result, writes = run_batch(ops, lambda key: self.read(group, key), self.limits)
        for key, op, new in writes:
            self.write(group, key, op, new)
        return result
