"""motia-state: one shared, atomic state for polyglot workflow steps.

The public API, re-exported: everything a user needs is named in
``__all__`` below (a test fails if it and the real exports drift). Adapters
store state; the StateManager adds events and observability;
``motia_state.runtime`` runs step files and ``motia_state.rpc`` speaks the
protocol. The other modules are internal: import from here.
"""

from ._version import __version__
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
