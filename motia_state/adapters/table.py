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

from collections.abc import Callable, Sequence
from typing import Any

from ..feed import FeedRing
from ..ops import UNCHANGED, check_size, parse_transaction, run_batch, run_transaction
from ..records import BatchResult, StateChange, TransactionResult, parse_operations
from ..values import MISSING, Limits, copy_value, is_reserved_group

__all__ = ["StateTable"]


class StateTable:
    """group -> key -> value, with a journal of what each operation wrote."""

    __slots__ = ("data", "feed", "journal", "limits")

    def __init__(self, limits: Limits) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.limits = limits
        #: When not None, every write appends a StateChange here; the owner
        #: drains it after each operation (events, the file log).
        self.journal: list[StateChange] | None = None
        #: When the journal is off and this is set, every write goes straight
        #: to this change feed (nothing else needs to hear of it).
        self.feed: FeedRing | None = None

    def write(self, group: str, key: str, op: str, new: Any) -> None:
        """Store ``new`` (``MISSING`` removes the entry), journaling the change."""
        entries = self.data.get(group)
        old = MISSING if entries is None else entries.get(key, MISSING)
        if new is MISSING:
            if entries is not None and key in entries:
                del entries[key]
                if not entries:
                    del self.data[group]
        elif entries is None:
            self.data[group] = {key: new}
        else:
            entries[key] = new
        if self.journal is not None:
            self.journal.append(StateChange.of(group, key, op, old, new))
        elif self.feed is not None:
            self.feed.put(group, key, op, old, new)

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
