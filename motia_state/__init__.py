"""motia-state: one shared, atomic state for polyglot workflow steps.

The public API, re-exported. Adapters store state; the StateManager adds
events and observability; ``motia_state.runtime`` runs step files.
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
    InternalError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    StateError,
    StepFailedError,
    TimeoutStateError,
    TypeMismatchError,
    UnavailableError,
)
from .manager import ChangeListener, StateManager
from .observability import MetricsSummary, Observer, OperationRecord
from .records import (
    BatchItemResult,
    BatchOperation,
    BatchResult,
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
    "ChangeListener",
    "ConflictError",
    "CorruptStoreError",
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
    "__version__",
    "create_state_adapter",
]
