"""What every command shares: global options, output, logging, the store, errors and signals."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from .._urls import redacted, without_credentials
from ..errors import (
    InvalidArgumentError,
    StateError,
    StepError,
    StepTimeoutError,
    UnavailableError,
)
from ._stop import signal_name, stopped_by

if TYPE_CHECKING:
    from ..manager import StateManager
    from ..observability import OperationRecord

# The event loop library, the adapters and the manager are imported by the
# functions that use them: building the parser and printing help need none.

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "CliError",
    "Command",
    "Interrupted",
    "Output",
    "add_global_options",
    "default_state",
    "open_store",
    "parse_data",
    "positive_int",
    "seconds",
]

#: Exit codes: done; the work failed; bad usage or input; the store is unavailable; stopped by a signal.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: A command: parsed arguments and the output in, an exit code out.
Command = Callable[[argparse.Namespace, "Output"], Awaitable[int]]

#: The global options and their values when not given (they may come before or after the subcommand).
GLOBAL_DEFAULTS: dict[str, Any] = {
    "verbose": 0,
    "quiet": False,
    "json": False,
    "debug": False,
    "progress": False,
    "backend": "asyncio",
}


def default_state() -> str:
    """The store when ``--state`` is not given: ``$MOTIA_STATE``, else ``memory:``."""
    return os.environ.get("MOTIA_STATE") or "memory:"


class CliError(Exception):
    """A failure the command explains itself: a message, a stable code, an exit code and what to do next."""

    def __init__(
        self, message: str, *, code: str = "INVALID_ARGUMENT", exit_code: int = EXIT_USAGE, hint: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.exit_code = exit_code
        self.hint = hint


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the command's work was cancelled and cleaned up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def add_global_options(parser: argparse.ArgumentParser, *, skip: frozenset[str] = frozenset()) -> None:
    """The options every command takes, before or after its name.

    Their defaults are suppressed here (so a subcommand's parser never
    overwrites a value given before the subcommand) and filled in by
    :func:`fill_global_defaults`. ``skip`` leaves out options a command
    declares itself.
    """
    group = parser.add_argument_group("global options")
    s = argparse.SUPPRESS
    if "state" not in skip:
        group.add_argument(
            "--state",
            default=s,
            metavar="URL",
            help="memory: | file:PATH | redis://... (default: $MOTIA_STATE, else memory:)",
        )
    group.add_argument(
        "-v", "--verbose", action="count", default=s, help="-v shows our own logs, -vv also every state operation"
    )
    group.add_argument("-q", "--quiet", action="store_true", default=s, help="hide step logs and messages")
    group.add_argument("--json", action="store_true", default=s, help="print results as JSON (the default in a pipe)")
    if "debug" not in skip:
        group.add_argument("--debug", action="store_true", default=s, help="add our own traceback to errors")
    group.add_argument(
        "--progress", action="store_true", default=s, help="show progress also when stderr is not a terminal"
    )
    group.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default=s,
        help="the event loop to run on (default asyncio; the Redis adapter needs asyncio)",
    )


def fill_global_defaults(args: argparse.Namespace) -> None:
    """Give every global option its default where the command line did not set it."""
    for name, value in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    if getattr(args, "state", None) is None:
        args.state = default_state()


def seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _int(what: str) -> Callable[[str], int]:
    """A JSON integer's text as an int; one longer than any value may hold is LIMIT_EXCEEDED naming ``what``."""
    from ..values import MAX_INT_DIGITS

    def parse(text: str) -> int:
        if len(text) > MAX_INT_DIGITS:
            raise CliError(
                f"{what}: an integer of {len(text)} characters: values hold integers of at most {MAX_INT_DIGITS}",
                code="LIMIT_EXCEEDED",
                hint="give the number as a string, or a smaller one",
            )
        return int(text)

    return parse


def parse_json(text: str, what: str, source: str | None = None) -> Any:
    """``text`` as strict JSON (no NaN or Infinity); bad JSON is a usage error naming ``what``.

    ``source`` names where the text came from (a file, standard input) when
    it was not the argument itself.
    """
    if source is not None and not text.strip():
        raise CliError(f"{what}: {source} is empty", hint="give a JSON value, e.g. '{\"points\": 5}'")
    try:
        return json.loads(text, parse_constant=_not_json, parse_int=_int(what))
    except ValueError as e:
        raise CliError(f"{what}: not valid JSON: {e}", hint="give a JSON value, e.g. '{\"points\": 5}'") from None
    except RecursionError:
        raise CliError(
            f"{what}: nests too deep to read",
            code="LIMIT_EXCEEDED",
            hint="values nest at most 256 levels deep: flatten the value",
        ) from None


def read_text_arg(text: str, what: str) -> str:
    """``@-`` reads standard input, ``@FILE`` a file, anything else is the text itself."""
    if not text.startswith("@"):
        return text
    name = "standard input" if text == "@-" else text[1:]
    if text == "@-" and sys.stdin is None:
        raise CliError(f"{what}: @- reads standard input, which is closed", hint="give the JSON, or @FILE")
    try:
        data = sys.stdin.buffer.read() if text == "@-" else Path(text[1:]).read_bytes()
    except OSError as e:
        raise CliError(f"{what}: cannot read {name}: {e.strerror or e}", hint="check the file's path") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise CliError(
            f"{what}: {name} is not UTF-8 text: byte 0x{data[e.start]:02x} at byte offset {e.start} (line {line}): "
            f"{e.reason}",
            hint="JSON is read as UTF-8: save the file as UTF-8",
        ) from None


def text_source(text: str) -> str | None:
    """Where ``read_text_arg`` reads ``text`` from: a file, standard input, or None for the text itself."""
    if not text.startswith("@"):
        return None
    return "standard input" if text == "@-" else text[1:]


def parse_data(text: str | None) -> Any:
    """``--data JSON|@FILE|@-``: the step's input (None when not given)."""
    if text is None:
        return None
    return parse_json(read_text_arg(text, "--data"), "--data", text_source(text))


class Output:
    """Where a command writes: results on stdout (JSON in a pipe or with --json), the rest on stderr."""

    def __init__(self, args: argparse.Namespace, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        #: Results as JSON: asked for, or stdout is not a terminal.
        self.json = bool(args.json) or not self.stdout.isatty()
        #: Errors as JSON only when asked for: a person reads them, also in a pipe.
        self.json_errors = bool(args.json)
        self.quiet = bool(args.quiet)
        self.debug = bool(args.debug)
        self.progress_shown = bool(args.progress) or self.stderr.isatty()

    def console(self, stderr: bool = False) -> Any:
        """A rich console on stdout or stderr (imported only when a human reads)."""
        from rich.console import Console

        return Console(file=self.stderr if stderr else self.stdout, highlight=False, soft_wrap=True)

    def data(self, value: Any, human: Callable[[Any], Any] | None = None) -> None:
        """Print a result: JSON, or ``human(value)`` (a rich renderable or text) on a terminal."""
        if self.json or human is None:
            self.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
            self.stdout.flush()
            return
        self.console().print(human(value))

    def line(self, value: Any) -> None:
        """One JSON line on stdout, flushed (for streams: watch, follow)."""
        self.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
        self.stdout.flush()

    def message(self, text: str) -> None:
        """A message for the person (stderr; hidden by -q)."""
        if not self.quiet:
            self.stderr.write(text + "\n")
            self.stderr.flush()

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A progress bar on stderr (done / total, rate, time left) when shown; yields ``advance(n)``."""
        if not self.progress_shown or self.quiet:
            yield lambda n: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            Task,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task: Task) -> Text:
                return Text(f"{task.speed or 0:,.0f}/s")

        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(), TimeRemainingColumn()]
        with Progress(*columns, console=self.console(stderr=True), transient=False) as bar:
            task = bar.add_task(description, total=total)

            def advance(n: int) -> None:
                bar.advance(task, n)

            yield advance


# -- logging ---------------------------------------------------------------------------------------


class _StepFormatter(logging.Formatter):
    """Step logs as the step wrote them (already prefixed with the step's name); ours with our level and name."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "motia_state.step":
            return record.getMessage()
        return f"{record.levelname.lower()} {record.name}: {record.getMessage()}"


def configure_logging(args: argparse.Namespace, stream: IO[str] | None = None) -> None:
    """Step logs on stderr unless -q; our own logs with -v; every state operation with -vv."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_StepFormatter())
    root = logging.getLogger("motia_state")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.DEBUG if args.verbose >= 2 else logging.INFO if args.verbose >= 1 else logging.WARNING)
    step = logging.getLogger("motia_state.step")
    step.setLevel(logging.CRITICAL + 1 if args.quiet else logging.INFO)
    logging.getLogger("motia_state.operations").setLevel(logging.DEBUG if args.verbose >= 2 else logging.WARNING)


_ops_log = logging.getLogger("motia_state.operations")


def log_operation(record: OperationRecord) -> None:
    """An observer for -vv: one line per state operation with group, key, op, duration and outcome."""
    if _ops_log.isEnabledFor(logging.DEBUG):
        key = record.key if record.key is not None else f"({record.key_count} entries)"
        _ops_log.debug(
            "%s %s %s %.3f ms %s", record.op, record.trace_id or "-", key, record.duration * 1000, record.code
        )


# -- the store ------------------------------------------------------------------------------------


def check_store_url(
    url: str, args: argparse.Namespace, *, refuse_memory: str | None = None, option: str = "--state"
) -> dict[str, Any]:
    """Validate a store URL before anything runs: a usage error (exit 2) when it is malformed or refused.

    ``option`` is how messages name the URL (``--from`` and ``--to`` for migrate).
    """
    from ..adapters.factory import parse_state_config

    try:
        config = parse_state_config(url)
    except InvalidArgumentError as e:
        raise CliError(
            f"{option} {redacted(url)}: {e.message}", hint="use memory:, file:PATH or redis://HOST:PORT/DB"
        ) from None
    if refuse_memory and config["adapter"] == "memory":
        raise CliError(
            f"{refuse_memory} refuses the memory: store: it lives only in this process, so the data would vanish",
            hint="give a store that outlives the command: --state file:PATH or --state redis://...",
        )
    if config["adapter"] == "redis":
        _check_redis_url(config.get("url", ""), option)
    if config["adapter"] == "file":
        config["present"] = _check_file_path(config["path"], url, option)
    if config["adapter"] == "redis" and args.backend == "trio":
        raise CliError(
            "the Redis adapter needs asyncio (it uses redis-py's asyncio client); --backend trio cannot use it",
            hint="drop --backend trio, or use a memory: or file: store under trio",
        )
    return config


def _check_file_path(path: str, url: str, option: str) -> bool:
    """Whether a file store is at ``path``; a usage error when the path can never be a store."""
    from ..adapters.factory import check_file_store_path

    try:
        return check_file_store_path(path)
    except InvalidArgumentError as e:
        raise CliError(
            f"{option} {redacted(url)}: {e.message.removeprefix('path: ')}",
            hint=_FILE_PATH_HINT,
        ) from None


_FILE_PATH_HINT = "give a store's folder (file:PATH), or a path where a new folder can be created"


def _check_redis_url(url: str, option: str) -> None:
    """A URL that cannot be read, or a database that is not a number (it would silently be database 0): refuse it."""
    from urllib.parse import urlsplit

    if not url.startswith("redis"):
        return
    unreadable = f"{option} {redacted(url)}: not a URL that can be read"
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise CliError(f"{unreadable}: {e}", hint="write it as redis://HOST:PORT/DB") from None
    path = parts.path.strip("/")
    if "@" in path:  # the authority ended at a / of the user name or password: the rest reads as the path
        raise CliError(
            f"{option} {redacted(url)}: a / before the @ ends the host part of a URL",
            hint="write a / in a user name or password as %2F",
        )
    if path and not path.isdigit():
        raise CliError(
            f"{option} {redacted(url)}: the database {path!r} is not a number",
            hint="give the database as a number: redis://HOST:PORT/0",
        )
    try:
        parts.port  # noqa: B018 (raises for a port that is not a number in range)
    except ValueError as e:
        raise CliError(f"{unreadable}: {e}", hint="write it as redis://HOST:PORT/DB") from None


@contextlib.asynccontextmanager
async def open_store(
    url: str,
    args: argparse.Namespace,
    *,
    refuse_memory: str | None = None,
    metrics: bool = False,
    existing: bool = False,
    option: str = "--state",
) -> AsyncIterator[StateManager]:
    """A StateManager over ``url``, checked to be reachable before the command does anything (else exit 3).

    ``existing``: the command only reads, so a file store that is not there
    is an error (a mistyped path), not a new empty store left behind.
    ``option`` is how messages name the URL.
    """
    from ..adapters.factory import create_state_adapter
    from ..manager import StateManager

    config = check_store_url(url, args, refuse_memory=refuse_memory, option=option)
    if existing and config["adapter"] == "file" and not config["present"]:
        what = ": the folder holds none" if Path(config["path"]).is_dir() else ""
        raise CliError(
            f"{option} {redacted(url)}: no store there{what} (nothing was created)",
            hint="check the path; a command that writes (state set, import, dev) creates the store",
        )
    try:
        adapter = create_state_adapter(url)
    except InvalidArgumentError as e:
        hint = _FILE_PATH_HINT if config["adapter"] == "file" else ""
        raise CliError(f"{option} {redacted(url)}: {e.message.removeprefix('path: ')}", hint=hint) from None
    manager = StateManager(adapter, metrics=metrics)
    manager.add_observer(log_operation)
    async with manager:
        ping = getattr(adapter, "ping", None)
        if ping is not None:
            await ping()
        else:
            await manager.groups()
        yield manager


# -- errors ---------------------------------------------------------------------------------------

_HINTS = {
    "INVALID_ARGUMENT": "check the command's arguments (motia-state COMMAND --help)",
    "UNAVAILABLE": "check that the store is running and reachable, then run the command again",
    "CORRUPT": "run `motia-state validate --state URL` to list the damage; the file store's docs say how to repair",
    "STEP_FAILED": "fix the step (its stack is above) and run it again",
    "TIMEOUT": "give the step more time with --timeout SECONDS, or make it faster",
    "LIMIT_EXCEEDED": "make the value or the result smaller",
    "CONFLICT": "run it again: another writer changed the entry meanwhile",
    "TYPE_MISMATCH": "the entry holds another type than the operation needs: read it with `state get`",
    "CURSOR_EXPIRED": "start again from the feed's first record (without --after), or reset the trigger",
}


def exit_code_for(error: BaseException) -> int:
    """The exit code of an error: usage 2, unavailable 3, otherwise the work failed (1)."""
    if isinstance(error, CliError):
        return error.exit_code
    if isinstance(error, UnavailableError):
        return EXIT_UNAVAILABLE
    if isinstance(error, InvalidArgumentError):
        return EXIT_USAGE
    return EXIT_FAILED


def _step_stack(stack: str) -> str:
    """The step's own frames: the runner's frames (our bindings' and runtime's files) are left out.

    A frame's source line and its ``^^^`` markers are indented under it, so
    they go with it.
    """
    keep: list[str] = []
    skipping = False
    for line in stack.splitlines():
        stripped = line.strip()
        if _is_frame(stripped):
            skipping = _is_runner_frame(stripped)
            if skipping:
                continue
        elif skipping and line[:1].isspace():
            continue
        else:
            skipping = False
        keep.append(line)
    return "\n".join(keep)


_RUNNER_MARKERS = (
    "motia_state/runtime",
    "motia_state/rpc",
    "motia_state/_bindings",
    "bindings/python/",
    "bindings/node/",
    "bindings/ruby/",
    "motia_state_runner",
    "step_runner",
    "node:internal",
    "<frozen ",
)


def _is_frame(line: str) -> bool:
    return line.startswith(("File ", "at ")) or (":in " in line and line.split(":", 1)[0].endswith(".rb"))


def _is_runner_frame(line: str) -> bool:
    return _is_frame(line) and any(marker in line for marker in _RUNNER_MARKERS)


def _without_highlight(message: str) -> str:
    """A message without the source line and ``^^^`` markers an interpreter appended (Ruby's error_highlight)."""
    lines = message.splitlines()
    out: list[str] = []
    for line in lines:
        if line.strip() and set(line.strip()) == {"^"} and out:
            out.pop()
            continue
        out.append(line)
    return "\n".join(out).rstrip()


def error_document(error: BaseException) -> dict[str, Any]:
    """The error as data: code, message, what to do, and the step's own stack when a step failed."""
    if isinstance(error, CliError):
        return {"code": error.code, "message": error.message, "hint": error.hint or _HINTS.get(error.code, "")}
    if isinstance(error, StateError):
        code = error.code
        doc: dict[str, Any] = {"code": code, "message": _without_highlight(error.message)}
        if isinstance(error, StepTimeoutError):
            doc["hint"] = _HINTS["TIMEOUT"]
        else:
            doc["hint"] = _HINTS.get(code, "")
        if isinstance(error, StepError):
            if error.step:
                doc["step"] = error.step
            if error.stack:
                doc["stack"] = _step_stack(error.stack)
            elif code == "STEP_FAILED":
                doc["hint"] = "fix the step and run it again"
        return doc
    if isinstance(error, OSError):
        return {"code": "INVALID_ARGUMENT", "message": str(error), "hint": "check the path and its permissions"}
    return {"code": "INTERNAL", "message": f"{type(error).__name__}: {error}", "hint": "run again with --debug"}


def report_error(error: BaseException, out: Output) -> int:
    """Write ``error`` as one readable message on stderr (JSON with --json) and return its exit code."""
    doc = error_document(error)
    doc["message"] = without_credentials(doc["message"])
    code = exit_code_for(error)
    if isinstance(error, OSError) and not isinstance(error, StateError):
        code = EXIT_USAGE
    if out.debug:
        import traceback

        doc["traceback"] = without_credentials("".join(traceback.format_exception(error)))
    if out.json_errors:
        out.stderr.write(json.dumps({"error": doc}, ensure_ascii=False) + "\n")
    else:
        lines = [f"motia-state: error [{doc['code']}]: {doc['message']}"]
        if doc.get("stack"):
            lines.append("")
            lines.extend("  " + line for line in doc["stack"].rstrip().splitlines())
            lines.append("")
        if doc.get("hint"):
            lines.append(f"  what to do: {doc['hint']}")
        if doc.get("traceback"):
            lines.append("")
            lines.append(doc["traceback"].rstrip())
        out.stderr.write("\n".join(lines) + "\n")
    out.stderr.flush()
    return code


def fail(message: str, *, code: str = "INVALID_ARGUMENT", exit_code: int = EXIT_USAGE, hint: str = "") -> NoReturn:
    """Raise a :class:`CliError`."""
    raise CliError(message, code=code, exit_code=exit_code, hint=hint)


# -- running a command ----------------------------------------------------------------------------


async def until_signalled(command: Command, args: argparse.Namespace, out: Output) -> int:
    """Run ``command``; SIGINT or SIGTERM cancels it, so its workers are killed and its store closed.

    The signals stay caught until that cleanup is over: a second Ctrl-C
    cannot cut it short. A signal that comes once the command has returned
    its exit code changes nothing: the work is done, and the code stands.
    """
    import anyio

    from ._stop import receiver

    received: int | None = None
    code = EXIT_INTERRUPTED
    completed = False
    failure: Exception | None = None  # raised after the task group, not as a group
    async with receiver() as signals, anyio.create_task_group() as tg:
        work = anyio.CancelScope()

        async def watch() -> None:
            nonlocal received
            async for signum in signals:
                if completed:
                    return
                if received is None:
                    received = signum
                work.cancel()

        tg.start_soon(watch)
        with work:
            try:
                code = await command(args, out)
                completed = True
            except Exception as e:
                failure = e
                completed = not work.cancel_called
        tg.cancel_scope.cancel()
    if received is not None and not completed:
        raise Interrupted(received)
    if failure is not None:
        raise failure
    return code


def run_command(command: Command, args: argparse.Namespace, out: Output) -> int:
    """Run an async command on the chosen event loop, and turn every outcome into an exit code."""
    import anyio

    try:
        return anyio.run(until_signalled, command, args, out, backend=args.backend)
    except (Interrupted, KeyboardInterrupt) as e:
        # A KeyboardInterrupt: a stop before the command took over the signals (``_stop``).
        name = e.args[0] if isinstance(e, Interrupted) else signal_name(stopped_by(e) or signal.SIGINT)
        out.stderr.write(f"motia-state: interrupted by {name}; everything it started was stopped\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of the output went away (`state watch | head -1`): stop quietly, as
        # Unix tools do; the output was cut short, so not exit 0. Later writes (the flush
        # at exit) go nowhere instead of failing again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.stdout.fileno())
            os.close(devnull)
        return EXIT_FAILED
    except Exception as e:  # the last line of defence: one readable message, not a traceback
        return report_error(e, out)
