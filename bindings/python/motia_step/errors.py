"""Errors raised inside a Python step; the same codes as everywhere else.

The code-to-class map is declared once, in :data:`ERRORS`; the core's
vocabulary (``motia_state.errors``) is held to it by the drift tests.
"""

from __future__ import annotations

from typing import Any


class StateError(Exception):
    """Root of every motia-state error; ``.code`` is the stable error code."""

    code = "INTERNAL"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidArgumentError(StateError, ValueError):
    """An argument is malformed, or a value is not JSON (raised before anything is sent)."""

    code = "INVALID_ARGUMENT"


class TypeMismatchError(StateError, TypeError):
    """The stored value has the wrong type for the operation."""

    code = "TYPE_MISMATCH"


class ConflictError(StateError):
    """A transaction guard did not match, or ``update`` ran out of retries."""

    code = "CONFLICT"


class LimitExceededError(StateError):
    """A key, value, frame or operation list is over its limit; nothing was stored."""

    code = "LIMIT_EXCEEDED"


class UnavailableError(StateError):
    """The storage backend cannot be reached, or the channel to the parent is closed."""

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


class UpdateFailedError(StateError):
    """An update fn raised inside a transaction or batch."""

    code = "UPDATE_FAILED"


class CursorExpiredError(StateError):
    """A change-feed cursor is older than what the feed retains."""

    code = "CURSOR_EXPIRED"


class CorruptStoreError(StateError):
    """Stored data is damaged; not retryable (repair or restore)."""

    code = "CORRUPT"


class InternalError(StateError):
    """A bug: anything not covered by another code."""

    code = "INTERNAL"


#: Every stable error code and its class, in the order of the contract's table.
ERRORS: dict[str, type[StateError]] = {
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

#: The codes alone.
CODES: tuple[str, ...] = tuple(ERRORS)


def error_from_wire(body: Any) -> StateError:
    """Build the exception for an error body ``{code, message, ...}``."""
    if not isinstance(body, dict):
        return InternalError("malformed error reply: %r" % (body,))
    code = str(body.get("code", "INTERNAL"))
    err = ERRORS.get(code, InternalError)(str(body.get("message", code)))
    if code not in ERRORS:
        err.details["remote_code"] = code
    return err
