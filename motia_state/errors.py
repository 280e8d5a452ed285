"""Error vocabulary: one root, one subclass per stable error code.

Codes are the contract (they travel on the wire and are the same in every
language); messages are for people. Callers branch on ``.code`` or on the
class, never on the message text.

Internal module: every error class is re-exported by ``motia_state``.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "CODES",
    "ConflictError",
    "CorruptStoreError",
    "CursorExpiredError",
    "InternalError",
    "InvalidArgumentError",
    "LimitExceededError",
    "NotFoundError",
    "StateError",
    "StepError",
    "StepFailedError",
    "StepTimeoutError",
    "TimeoutStateError",
    "TypeMismatchError",
    "UnavailableError",
    "UpdateFailedError",
    "error_for_code",
]


class StateError(Exception):
    """Root of every error motia-state raises on purpose; carries ``.code``."""

    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        #: Extra, code-specific facts (e.g. ``failed_index`` or ``stack``).
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.details))


def _rebuild(cls: type[StateError], message: str, details: dict[str, Any]) -> StateError:
    return cls(message, **details)


class InvalidArgumentError(StateError, ValueError):
    """An argument or an operation record is malformed."""

    code = "INVALID_ARGUMENT"


class TypeMismatchError(StateError, TypeError):
    """The stored value has the wrong type for the operation."""

    code = "TYPE_MISMATCH"


class ConflictError(StateError):
    """A transaction guard did not match, or ``update`` ran out of retries."""

    code = "CONFLICT"


class LimitExceededError(StateError):
    """A name, value, frame or operation list is over its configured limit."""

    code = "LIMIT_EXCEEDED"


class UnavailableError(StateError):
    """The storage backend cannot be reached, or the adapter is closed."""

    code = "UNAVAILABLE"


class NotFoundError(StateError):
    """An RPC method that no handler serves."""

    code = "NOT_FOUND"


class TimeoutStateError(StateError, TimeoutError):
    """A step or a request ran past its time."""

    code = "TIMEOUT"


class StepFailedError(StateError):
    """A step's handler raised."""

    code = "STEP_FAILED"


class StepError(StepFailedError):
    """A step failed: its handler raised, its worker died, or it could not start.

    Raised by the runtime (``call_step_file``, ``WorkerPool.call``).
    ``message`` and ``stack`` come from the handler's exception when there
    is one; ``exit_code`` and ``stderr_tail`` when the worker died.
    """

    def __init__(
        self,
        message: str,
        *,
        stack: str | None = None,
        exit_code: int | None = None,
        stderr_tail: str = "",
        step: str | None = None,
    ) -> None:
        super().__init__(message, stack=stack, exit_code=exit_code, stderr_tail=stderr_tail, step=step)
        self.stack = stack
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.step = step


class StepTimeoutError(StepError, TimeoutError):
    """A step ran past its timeout; the runtime killed its process group."""

    code = "TIMEOUT"


class UpdateFailedError(StateError):
    """An ``update`` fn raised inside a transaction or batch.

    The message carries the exception's own message; ``details["exception"]``
    (and ``__cause__``) hold the exception object itself.
    """

    code = "UPDATE_FAILED"


class CursorExpiredError(StateError):
    """A change-feed cursor is older than what the feed still retains."""

    code = "CURSOR_EXPIRED"


class CorruptStoreError(StateError):
    """Stored data is damaged (a file store's log or snapshot).

    Not retryable: the store must be repaired or restored from a copy. From
    the file store, ``details`` has ``file`` and ``offset``, and opening with
    ``repair=True`` keeps everything before the damage.
    """

    code = "CORRUPT"


class InternalError(StateError):
    """A bug: anything not covered by another code."""

    code = "INTERNAL"


_BY_CODE: dict[str, type[StateError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        TypeMismatchError,
        ConflictError,
        LimitExceededError,
        UnavailableError,
        NotFoundError,
        TimeoutStateError,
        StepFailedError,
        UpdateFailedError,
        CursorExpiredError,
        CorruptStoreError,
        InternalError,
    )
}

#: Every stable error code, in the order of the contract's table.
CODES: tuple[str, ...] = tuple(_BY_CODE)


def error_for_code(code: str, message: str, **details: Any) -> StateError:
    """Build the exception for a wire error code (unknown codes become INTERNAL)."""
    cls = _BY_CODE.get(code, InternalError)
    err = cls(message, **details)
    return err
