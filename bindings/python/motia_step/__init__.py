"""The Python side of a motia-state step: ``ctx.state`` and its errors.

Steps normally need nothing from here (``ctx`` is handed to the handler);
import the errors to catch them by class: ``except motia_step.ConflictError``.
"""

from .errors import (
    CODES,
    ConflictError,
    CorruptStoreError,
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
from .state import BlockingStateManager, RpcStateManager

__all__ = [
    "CODES",
    "BlockingStateManager",
    "ConflictError",
    "CorruptStoreError",
    "CursorExpiredError",
    "InternalError",
    "InvalidArgumentError",
    "LimitExceededError",
    "NotFoundError",
    "RpcStateManager",
    "StateError",
    "StepFailedError",
    "TimeoutStateError",
    "TypeMismatchError",
    "UnavailableError",
    "UpdateFailedError",
]
