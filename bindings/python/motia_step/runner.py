"""Load a step file and answer the parent's ``invoke`` requests.

The protocol travels on private descriptors that no child process
inherits (see :func:`protocol_fds`); before the step is imported fd 1
becomes a copy of stderr and fd 0 reads /dev/null, so neither ``print`` nor
a raw ``os.write(1, ...)`` nor a stray ``input()`` can touch the channel.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import math
import os
import sys
import threading
import traceback
from typing import Any

from . import eventloop
from .eventloop import SpinSelector, spin_budget
from .rpc import RpcClient, _shown
from .state import BlockingStateManager, RpcStateManager


class Logger:
    """``ctx.logger``: structured log lines sent to the parent's logger."""

    def __init__(self, client: RpcClient, trace_id: str | None) -> None:
        self._client = client
        self._trace_id = trace_id

    def _log(self, level: str, msg: Any, args: Any, fields: dict[str, Any]) -> None:
        record: dict[str, Any] = {}
        # Motia's Python steps pass their fields as one positional dict: logger.info("msg", {"id": 1}).
        if isinstance(args, dict):
            record.update(args)
        elif args is not None:
            record["data"] = args
        record.update(fields)
        # A field named level or traceId never overrides the record's own (as in Node and Ruby).
        record.update(level=level, msg=str(msg), traceId=self._trace_id)
        self._client.notify("log", record)  # a field that is not JSON raises INVALID_ARGUMENT naming it

    def debug(self, msg: Any, args: Any = None, **fields: Any) -> None:
        self._log("debug", msg, args, fields)

    def info(self, msg: Any, args: Any = None, **fields: Any) -> None:
        self._log("info", msg, args, fields)

    def warn(self, msg: Any, args: Any = None, **fields: Any) -> None:
        self._log("warning", msg, args, fields)

    warning = warn

    def error(self, msg: Any, args: Any = None, **fields: Any) -> None:
        self._log("error", msg, args, fields)


class Context:
    """``ctx``: ``trace_id``, ``state``, ``logger``, ``emit`` (and ``traceId``)."""

    def __init__(self, trace_id: str | None, state: Any, logger: Logger, emit: Any, flows: Any, call: Any) -> None:
        self.trace_id = self.traceId = trace_id
        self.state = state
        self.logger = logger
        self.emit = emit
        self.flows = flows
        #: ``call(method, args)``: any method the orchestrator registered.
        self.call = call


def _emit_args(event: Any, data: Any) -> dict[str, Any]:
    if isinstance(event, dict):
        return {"topic": event.get("topic"), "data": event.get("data")}
    return {"topic": event, "data": data}


def describe_failure(e: BaseException) -> "tuple[str, str]":
    """``("Name: message", traceback)`` of a step's exception; never raises.

    A step may raise anything, including an exception whose ``__str__``
    raises: its failure must still become the reply, or the parent would
    wait for it until its timeout.
    """
    try:
        text = str(e)
    except BaseException as inner:  # the step's own code may raise anything
        text = "<str() of the exception raised %s>" % type(inner).__name__
    try:
        stack = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    except BaseException:
        stack = ""
    return "%s: %s" % (type(e).__name__, text), stack


def describe_config(value: Any) -> Any:
    """The config as JSON; a function (a native ``condition``) or a schema object shows as ``{"native": true}``."""
    if isinstance(value, dict):
        return {str(k): describe_config(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [describe_config(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return {"native": True}
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return {"native": True}


def load_step(path: str) -> Any:
    """Import a step file by path (its folder goes on sys.path for siblings)."""
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = "motia_step_file_" + "".join(c if c.isalnum() else "_" for c in os.path.basename(path))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load step file %s" % path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Worker:
    """Serves ``invoke`` and ``shutdown`` for one step module."""

    def __init__(self, step_path: str, read_fd: int, write_fd: int) -> None:
        self.step_path = step_path
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.module: Any = None
        self.load_error: BaseException | None = None
        self.load_stack = ""
        self.selector: SpinSelector | None = None

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.stop = asyncio.Event()
        self.client = RpcClient(loop, self.read_fd, self.write_fd, self.on_request)
        if self.selector is not None:
            self.selector.watched = self.client.in_flight  # spin only while a reply is due
        self.state = RpcStateManager(self.client)
        self.tasks: set = set()
        # Errors nothing handles on the loop (a task's exception nobody
        # retrieves, a callback that raises) are logged as the step's.
        loop.set_exception_handler(self.on_loop_error)
        await self.client.start()
        closed = asyncio.ensure_future(self.client.closed.wait())
        stopped = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait([closed, stopped], return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        stopped.cancel()
        self.client.flush()

    def unhandled(self, e: BaseException | None, what: str = "") -> None:
        """Log an error the step left where nothing handles it, and serve on; never raises.

        An ``error`` record on the parent's log channel, naming the step file,
        with the message and stack (as the Node and Ruby runners log a
        timer's or a thread's exception); only when the channel is gone does
        it go to stderr instead.
        """
        message, stack = describe_failure(e) if e is not None else (what, "")
        step_file = os.path.abspath(self.step_path)
        msg = "%s: an error nothing handled: %s" % (step_file, message)
        record = {"level": "error", "msg": msg, "stepFile": step_file, "error": message, "stack": stack}
        client = getattr(self, "client", None)  # none yet while the step loads
        try:
            if client is not None and not client.closed.is_set():
                client.notify("log", record)
                return
        except BaseException:  # the loop is closed, or the text cannot travel: stderr still has it
            pass
        try:
            sys.stderr.write("motia-state: %s\n%s" % (msg, stack))
            sys.stderr.flush()
        except BaseException:
            pass

    def on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The loop's exception handler: a task's exception nobody retrieved, a callback that raised."""
        self.unhandled(context.get("exception"), str(context.get("message", "an error on the event loop")))

    def on_thread_error(self, args: Any) -> None:
        """``threading.excepthook``: a thread the step started ended with an exception."""
        if args.exc_type is SystemExit:  # how a thread may end on purpose
            return
        self.unhandled(args.exc_value, getattr(args.exc_type, "__name__", "an exception"))

    def on_request(self, frame: dict[str, Any]) -> None:
        """A request of the parent's (its id and method, a string, checked by the client).

        What cannot be served is refused, as the parent refuses a worker's:
        an unknown method NOT_FOUND, a request whose answer nothing could
        carry (no id) or whose args do not fit INVALID_ARGUMENT, each
        reported on stderr.
        """
        method, rid, args = frame.get("method"), frame.get("id"), frame.get("args")
        if method == "shutdown":
            self.stop.set()
            return
        if method not in ("invoke", "config", "condition"):
            message = (
                "a request for an unknown method %s (the Python runner serves invoke, config, condition and shutdown)"
            )
            self.client.refuse(rid, "NOT_FOUND", message % _shown(method))
            return
        if rid is None:
            message = "a request for %s without an id (nothing could carry its answer)" % _shown(method)
            self.client.refuse(None, "INVALID_ARGUMENT", message)
            return
        if method == "config":
            self.answer_config(rid)
            return
        if type(args) is not dict:
            message = "a request for %s whose args are not an object (%s)" % (_shown(method), _shown(args))
            self.client.refuse(rid, "INVALID_ARGUMENT", message)
            return
        serve = self.invoke if method == "invoke" else self.answer_condition
        task = asyncio.ensure_future(serve(rid, args))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def answer_config(self, rid: Any) -> None:
        """Reply with the step's exported ``config`` (null when none), without running the handler."""
        if rid is None:
            return
        if self.load_error is not None:
            self.client.respond_error(rid, "STEP_FAILED", *describe_failure(self.load_error))
            return
        try:
            config = describe_config(getattr(self.module, "config", None))
        except BaseException as e:  # a module __getattr__, a mapping whose items() raises, one nested past recursion
            self.client.respond_error(rid, "STEP_FAILED", "the step's config is not JSON: %s" % describe_failure(e)[0])
            return
        self.respond(rid, config, "the step's config")

    def find_condition(self, trigger: Any) -> Any:
        """The condition function of ``config.triggers[trigger]``, or the module's ``condition`` (trigger null)."""
        if self.load_error is not None:
            raise self.load_error
        if trigger is None:
            fn, where = getattr(self.module, "condition", None), "condition(value, ctx)"
        else:
            triggers = (getattr(self.module, "config", None) or {}).get("triggers") or []
            if isinstance(trigger, bool) or not isinstance(trigger, int) or not 0 <= trigger < len(triggers):
                raise LookupError("config.triggers has no trigger %r" % (trigger,))
            fn, where = triggers[trigger].get("condition"), "config.triggers[%d].condition" % trigger
        if not callable(fn):
            raise AttributeError("step file %s defines no function %s" % (self.step_path, where))
        return fn

    async def answer_condition(self, rid: Any, args: dict[str, Any]) -> None:
        """Reply with the condition function's result as a boolean; its ctx reads state."""
        try:
            fn = self.find_condition(args.get("trigger"))
            trace_id = args.get("traceId")
            logger = Logger(self.client, trace_id)

            async def call(method: str, call_args: Any = None) -> Any:
                return await self.client.request(method, call_args)

            if inspect.iscoroutinefunction(fn):
                ctx = Context(trace_id, self.state, logger, None, None, call)
                ctx.change = args.get("change")
                result = await fn(args.get("value"), ctx)
            else:
                blocking = BlockingStateManager(self.state, self.loop)
                ctx = Context(trace_id, blocking, logger, None, None, None)
                ctx.change = args.get("change")
                result = await self.loop.run_in_executor(None, lambda: fn(args.get("value"), ctx))
            answer = bool(result)  # the result's own __bool__ may raise: that is the condition's failure too
        except BaseException as e:  # the condition's failure is the reply, never our exit
            if rid is not None:
                self.client.respond_error(rid, "STEP_FAILED", *describe_failure(e))
            return
        if rid is not None:
            self.client.respond(rid, answer)

    async def invoke(self, rid: Any, args: dict[str, Any]) -> None:
        try:
            result = await self.run_handler(args)
        except BaseException as e:  # the step's failure is the reply, never our exit (a KeyboardInterrupt too)
            if rid is not None:
                self.client.respond_error(rid, "STEP_FAILED", *describe_failure(e))
            return
        if rid is not None:
            self.respond(rid, result, "the handler's return value")

    def respond(self, rid: Any, value: Any, what: str) -> None:
        """Reply with ``value``; code of the step's own that raises while it is read is STEP_FAILED.

        A dict subclass whose ``items`` raises, say: without an answer the
        parent would wait for one until its timeout.
        """
        try:
            self.client.respond(rid, value)
        except BaseException as e:
            self.client.respond_error(rid, "STEP_FAILED", "%s is not JSON: %s" % (what, describe_failure(e)[0]))

    async def run_handler(self, args: dict[str, Any]) -> Any:
        if self.load_error is not None:
            raise self.load_error
        handler = getattr(self.module, "handler", None)
        if not callable(handler):
            raise AttributeError("step file %s defines no handler(data, ctx)" % self.step_path)
        trace_id = args.get("traceId")
        data = args.get("data")
        logger = Logger(self.client, trace_id)
        if inspect.iscoroutinefunction(handler):

            async def emit(event: Any, data: Any = None) -> Any:
                return await self.client.request("emit", _emit_args(event, data))

            async def call(method: str, call_args: Any = None) -> Any:
                return await self.client.request(method, call_args)

            ctx = Context(trace_id, self.state, logger, emit, args.get("flows"), call)
            call_args = (ctx,) if args.get("contextInFirstArg") else (data, ctx)
            return await handler(*call_args)

        blocking = BlockingStateManager(self.state, self.loop)

        def emit_blocking(event: Any, data: Any = None) -> Any:
            return asyncio.run_coroutine_threadsafe(self._emit(event, data), self.loop).result()

        def call_blocking(method: str, call_args: Any = None) -> Any:
            return asyncio.run_coroutine_threadsafe(self._call(method, call_args), self.loop).result()

        ctx = Context(trace_id, blocking, logger, emit_blocking, args.get("flows"), call_blocking)
        call_args = (ctx,) if args.get("contextInFirstArg") else (data, ctx)
        return await self.loop.run_in_executor(None, lambda: handler(*call_args))

    async def _emit(self, event: Any, data: Any) -> Any:
        return await self.client.request("emit", _emit_args(event, data))

    async def _call(self, method: str, args: Any) -> Any:
        return await self.client.request(method, args)


def protocol_fds() -> "tuple[int, int]":
    """The protocol's (read fd, write fd), private to this process.

    The parent names them in MOTIA_STEP_PROTOCOL_FDS; without it (a worker
    started by hand) they are copies of fds 0 and 1. Either way no process
    the step starts inherits them, and the variable is removed so that it
    cannot mislead one.
    """
    spec = os.environ.pop("MOTIA_STEP_PROTOCOL_FDS", "")
    try:
        read_fd, write_fd = (int(part) for part in spec.split(","))
        if min(read_fd, write_fd) < 3:
            raise ValueError("fds 0, 1 and 2 are not private")
        for fd in (read_fd, write_fd):
            os.set_inheritable(fd, False)  # also checks that fd is open
    except (ValueError, OSError):
        return os.dup(0), os.dup(1)  # os.dup: not inheritable
    return read_fd, write_fd


def main(argv: Any) -> int:
    """``run_step.py <step file>``: serve the step until shutdown or EOF."""
    if len(argv) < 2:
        sys.stderr.write("usage: run_step.py <step file>\n")
        return 2
    read_fd, write_fd = protocol_fds()
    # fds 0 and 1 become harmless (the parent may have done so already).
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr
    worker = Worker(argv[1], read_fd, write_fd)
    # Set before the step loads, so that a hook the step sets itself wins.
    threading.excepthook = worker.on_thread_error
    try:
        worker.module = load_step(argv[1])
    except BaseException as e:  # reported to the parent as the invoke's failure
        worker.load_error = (
            e if isinstance(e, Exception) else RuntimeError("step exited while loading: %s" % describe_failure(e)[0])
        )
        traceback.print_exc()
    worker.selector = SpinSelector(spin_budget())
    eventloop.run(worker.serve(), worker.selector)
    # The parent is done with us: exit now, even if the step left threads
    # running (the interpreter would wait for every non-daemon one).
    sys.stderr.flush()
    os._exit(1 if getattr(getattr(worker, "client", None), "failure", None) else 0)
