"""Errors raised inside a Python step; the same codes as everywhere else."""

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
    code = "INVALID_ARGUMENT"


class TypeMismatchError(StateError, TypeError):
    code = "TYPE_MISMATCH"


class ConflictError(StateError):
    code = "CONFLICT"


class LimitExceededError(StateError):
    code = "LIMIT_EXCEEDED"


class UnavailableError(StateError):
    code = "UNAVAILABLE"


class NotFoundError(StateError):
    code = "NOT_FOUND"


class TimeoutStateError(StateError, TimeoutError):
    code = "TIMEOUT"


class StepFailedError(StateError):
    code = "STEP_FAILED"


class InternalError(StateError):
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
        InternalError,
    )
}


def error_from_wire(body: Any) -> StateError:
    """Build the exception for an error body ``{code, message, ...}``."""
    if not isinstance(body, dict):
        return InternalError("malformed error reply: %r" % (body,))
    code = str(body.get("code", "INTERNAL"))
    err = _BY_CODE.get(code, InternalError)(str(body.get("message", code)))
    if code not in _BY_CODE:
        err.details["remote_code"] = code
    return err
