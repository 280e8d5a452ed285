"""What the runtime refuses before any process starts: a step it cannot run, bad settings, bad input.

:func:`resolve_command` finds the argv of a step file (or says why there is
none); :func:`check_frame_limit` and :func:`check_timeout` hold the
settings of :func:`~motia_state.runtime.call_step_file` and
:class:`~motia_state.runtime.WorkerPool`; :func:`encode_invoke` checks a
step's input (:func:`check_input`) and encodes it once, within the frame
limit.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from ..errors import InvalidArgumentError, LimitExceededError, StateError, StepError
from ..rpc.frames import encode_request
from ..values import Limits, is_unicode
from .runners import command_for, language_of, runner_exists

__all__ = [
    "WRAP_DEPTH",
    "check_frame_limit",
    "check_input",
    "check_timeout",
    "encode_invoke",
    "resolve_command",
]

#: Levels an input may wrap around values as deep as state holds (as a
#: step's result may; every runner parses that deep): a step can be given
#: what it could read.
WRAP_DEPTH: Final = 64

#: Room in a frame beside a transaction's or batch's results (the reply's
#: envelope, ids, error texts): a result the adapter accepted always fits.
_REPLY_ROOM: Final = 1024 * 1024


def resolve_command(path: str | os.PathLike[str], interpreters: Mapping[str, str] | None) -> list[str]:
    """The argv that runs a step file; StepError at once when the file, runner or interpreter is missing."""
    step = Path(path).name
    if not Path(path).is_file():
        raise StepError(f"step file not found: {path}", step=step)
    argv = command_for(path, interpreters)
    if argv is None:
        raise StepError(f"no runner for {step!r}: use .py, .js, .cjs, .mjs or .rb", step=step)
    language = language_of(path)
    if language is not None and not runner_exists(language):
        raise StepError(f"this installation has no {language} runner for {step}", step=step)
    if shutil.which(argv[0]) is None:
        raise StepError(f"interpreter {argv[0]!r} for {step} was not found", step=step)
    return argv


def check_frame_limit(max_frame_bytes: object, limits: Limits) -> int:
    """``max_frame_bytes`` if it can serve a state with ``limits``; else InvalidArgumentError.

    A transaction's or batch's results may be as large as
    ``limits.max_result_bytes``; the frame that carries them back to the
    worker must have room for them, or a committed write could not be
    reported as stored.
    """
    if isinstance(max_frame_bytes, bool) or not isinstance(max_frame_bytes, int) or max_frame_bytes < 1:
        raise InvalidArgumentError(f"max_frame_bytes: expected a positive integer, got {max_frame_bytes!r}")
    max_result = limits.max_result_bytes
    if max_frame_bytes < max_result + _REPLY_ROOM:
        raise InvalidArgumentError(
            f"max_frame_bytes: {max_frame_bytes} leaves no room for a transaction's results: it must be at least "
            f"the state's max_result_bytes ({max_result}) + {_REPLY_ROOM}"
        )
    return max_frame_bytes


def check_timeout(timeout: object) -> None:
    """InvalidArgumentError unless ``timeout`` is None or a number of seconds >= 0 (NaN is not)."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise InvalidArgumentError(f"timeout: expected None or a number of seconds >= 0, got {timeout!r}")


def check_input(data: Any, max_depth: int) -> None:
    """Refuse a step input that JSON cannot carry as it is; no recursion, whatever its depth.

    InvalidArgumentError (naming where) for NaN, infinities, bytes and other
    non-JSON objects, a key that is not a string, a lone surrogate, a cycle;
    LimitExceededError past ``max_depth`` levels of nesting. Integers are
    not held to the state's digit limit: the step decides what to do with
    its input.
    """
    on_path: set[int] = set()  # containers between the root and the value in hand: a cycle
    # (value, its depth, where: (parent's where, key) or None for the root, leaving?)
    stack: list[tuple[Any, int, Any, bool]] = [(data, 0, None, False)]
    while stack:
        value, depth, where, leaving = stack.pop()
        if leaving:
            on_path.discard(id(value))
            continue
        if value is None or isinstance(value, (bool, int)):
            continue
        if isinstance(value, str):
            if not is_unicode(value):
                raise InvalidArgumentError(f"data must be JSON: a string with a lone surrogate at {_where(where)}")
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidArgumentError(f"data must be JSON: {value!r} is not a JSON number at {_where(where)}")
            continue
        if not isinstance(value, (dict, list, tuple)):
            raise InvalidArgumentError(
                f"data must be JSON: {type(value).__name__} is not a JSON type at {_where(where)}"
            )
        if depth >= max_depth:
            raise LimitExceededError(f"data is nested deeper than {max_depth} levels at {_where(where)}")
        if id(value) in on_path:
            raise InvalidArgumentError(f"data must be JSON: it contains itself at {_where(where)}")
        on_path.add(id(value))
        stack.append((value, depth, where, True))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or not is_unicode(key):
                    raise InvalidArgumentError(f"data must be JSON: object key {key!r} at {_where(where)}")
                stack.append((item, depth + 1, (where, key), False))
        else:
            for index, item in enumerate(value):
                stack.append((item, depth + 1, (where, index), False))


def _where(where: Any) -> str:
    keys: list[Any] = []
    while where is not None:
        where, key = where
        keys.append(key)
    return "$" + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in reversed(keys))


def encode_invoke(
    step: str, data: Any, trace_id: str, max_frame_bytes: int, limits: Limits, *, context_first: bool = False
) -> msgspec.Raw:
    """The ``invoke`` args, encoded once (``context_first``: the handler gets its context alone).

    ``trace_id`` must be a non-empty string (InvalidArgumentError). ``data``
    must be JSON (see :func:`check_input`), nested at most ``WRAP_DEPTH``
    levels deeper than the state's values may be; its size is bounded by the
    frame limit alone: LimitExceededError when the frame would be over it.
    """
    if not isinstance(trace_id, str) or not trace_id:
        # A runner would refuse it only once its process had started, and as
        # the step's failure rather than the caller's bad argument.
        raise InvalidArgumentError(f"trace_id: expected a non-empty string, got {trace_id!r}")
    try:
        check_input(data, limits.max_depth + WRAP_DEPTH)
        args = {"data": data, "traceId": trace_id}
        if context_first:
            args["contextInFirstArg"] = True
        encoded = msgspec.json.encode(args)
    except StateError as e:
        raise type(e)(f"the input of {step}: {e.message}") from None
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"the input of {step}: trace_id must be JSON text") from None
    except (ValueError, OverflowError) as e:  # an integer past Python's conversion limit
        raise LimitExceededError(f"the input of {step} cannot be encoded: {e}") from None
    # The frame carries these bytes as they are.
    invoke_args = msgspec.Raw(encoded)
    invoke_size = len(encode_request(1, "invoke", invoke_args))
    if invoke_size > max_frame_bytes:
        # The worker would drop the frame unread and never answer.
        raise LimitExceededError(
            f"the input of {step} encodes to {invoke_size} bytes, over the {max_frame_bytes}-byte frame limit"
        )
    return invoke_args
