"""motia-state: one shared, atomic state for polyglot workflow steps.

The public API, re-exported: everything a user needs is named in
``__all__`` below (a test fails if it and the real exports drift). Adapters
store state; the StateManager adds events and observability;
``motia_state.runtime`` runs step files and ``motia_state.rpc`` speaks the
protocol. The other modules are internal: import from here.

The names are imported on first use (module ``__getattr__``), so that
``import motia_state`` and the ``motia-state`` command start quickly: a
command that never opens a store never pays for the adapters, the event
loop library or Redis's client.
"""

import typing

from ._version import __version__

if typing.TYPE_CHECKING:
    from .adapters.base import StateAdapter
    from .adapters.factory import create_state_adapter
    from .adapters.file import CorruptStoreError, FileStateAdapter
    from .adapters.memory import MemoryStateAdapter
    from .adapters.redis import FallbackStateAdapter, RedisStateAdapter
    from .errors import (
        CODES,
        ConflictError,
        CursorExpiredError,
        InternalError,
        InvalidArgumentError,
        LimitExceededError,
        NotFoundError,
        StateError,
        StepFailedError,
        TimeoutStateError,
        TypeMismatchError,
        UnavailableError,
        UpdateFailedError,
    )
    from .manager import ChangeListener, StateManager
    from .observability import MetricsSummary, Observer, OperationRecord
    from .records import (
        BatchItemResult,
        BatchOperation,
        BatchResult,
        Change,
        StateChange,
        StateOperation,
        TransactionResult,
    )
    from .values import Limits

__all__ = [
    "CODES",
    "BatchItemResult",
    "BatchOperation",
    "BatchResult",
    "Change",
    "ChangeListener",
    "ConflictError",
    "CorruptStoreError",
    "CursorExpiredError",
    "InternalError",
    "InvalidArgumentError",
    "Limits",
    "LimitExceededError",
    "FallbackStateAdapter",
    "FileStateAdapter",
    "MemoryStateAdapter",
    "MetricsSummary",
    "NotFoundError",
    "Observer",
    "OperationRecord",
    "RedisStateAdapter",
    "StateAdapter",
    "StateChange",
    "StateError",
    "StateManager",
    "StateOperation",
    "StepFailedError",
    "TimeoutStateError",
    "TransactionResult",
    "TypeMismatchError",
    "UnavailableError",
    "UpdateFailedError",
    "__version__",
    "create_state_adapter",
]

#: Where each public name lives (the module, relative to this package).
_SOURCES: dict[str, str] = {
    "StateAdapter": ".adapters.base",
    "create_state_adapter": ".adapters.factory",
    "CorruptStoreError": ".adapters.file",
    "FileStateAdapter": ".adapters.file",
    "MemoryStateAdapter": ".adapters.memory",
    "FallbackStateAdapter": ".adapters.redis",
    "RedisStateAdapter": ".adapters.redis",
    **dict.fromkeys(
        (
            "CODES",
            "ConflictError",
            "CursorExpiredError",
            "InternalError",
            "InvalidArgumentError",
            "LimitExceededError",
            "NotFoundError",
            "StateError",
            "StepFailedError",
            "TimeoutStateError",
            "TypeMismatchError",
            "UnavailableError",
            "UpdateFailedError",
        ),
        ".errors",
    ),
    "ChangeListener": ".manager",
    "StateManager": ".manager",
    "MetricsSummary": ".observability",
    "Observer": ".observability",
    "OperationRecord": ".observability",
    **dict.fromkeys(
        (
            "BatchItemResult",
            "BatchOperation",
            "BatchResult",
            "Change",
            "StateChange",
            "StateOperation",
            "TransactionResult",
        ),
        ".records",
    ),
    "Limits": ".values",
}


def __getattr__(name: str) -> typing.Any:
    """A public name, imported from its module on first use (then cached here)."""
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(source, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names as well as the ones already imported (``dir(motia_state)``)."""
    return sorted(set(globals()) | set(__all__))
