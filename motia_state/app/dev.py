"""``motia-state dev [DIR]``: serve a folder of steps on their triggers, for development.

Reads the configs (exit 2 on a config error), prints what it serves, runs
the app under uvicorn (asyncio) and prints one line per invocation. SIGINT
or SIGTERM stops taking work, lets running invocations finish within the
grace period, and exits 0. ``--watch`` picks up edited, added and removed
step files; a version with a config error is shown and the last good one
keeps serving. A host other than loopback needs a token.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import anyio

from .._urls import redacted
from ..cli._stop import receiver

__all__ = ["add_arguments", "is_loopback", "run_dev"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # a usage or config error: nothing was started
EXIT_UNAVAILABLE = 3  # the store cannot be reached: nothing was served
WATCH_PERIOD = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``dev``."""
    parser.add_argument("dir", nargs="?", default=".", help="the app's folder (default: the current one)")
    parser.add_argument("--state", default="memory:", help="memory: | file:PATH | redis://... (default memory:)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port (default 3000)")
    parser.add_argument("--watch", action="store_true", help="pick up edited, added and removed step files")
    parser.add_argument(
        "--token",
        default=None,
        help="bearer token for /__motia (default: the MOTIA_TOKEN environment variable); "
        "required to bind a host other than loopback",
    )
    parser.add_argument("--grace", type=float, default=10.0, help="seconds running invocations get at shutdown")
    parser.add_argument("--debug", action="store_true", help="include a failed step's stack in 500 answers")
    parser.add_argument(
        "--cors",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages of ORIGIN (e.g. http://localhost:5173, or '*' for any) call the API routes from a "
        "browser; repeat it or separate origins with commas (default: none)",
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback interface (127.0.0.0/8, ::1 or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _fail(out: IO[str], message: str) -> int:
    out.write(f"motia-state dev: {message}\n")
    out.flush()
    return EXIT_USAGE


def _error(e: Any) -> int:
    sys.stderr.write(f"motia-state dev: {e.code}: {e.message}\n")
    # The CLI's exit codes: 3 when the store cannot be reached, 1 otherwise (CORRUPT included).
    return EXIT_UNAVAILABLE if e.code == "UNAVAILABLE" else EXIT_FAILED


def run_dev(args: argparse.Namespace) -> int:
    """Run the dev server until a signal; the exit code."""
    token = args.token if args.token is not None else (os.environ.get("MOTIA_TOKEN") or None)
    if not is_loopback(args.host) and not token:
        return _fail(
            sys.stderr,
            f"refusing to serve on {args.host} without a token: anyone who reaches it could read and change "
            "the state. Give --token T (or MOTIA_TOKEN), or bind 127.0.0.1",
        )
    if not Path(args.dir).is_dir():
        return _fail(sys.stderr, f"{args.dir}: not a folder")
    if not 0 <= args.port <= 65535:
        return _fail(sys.stderr, f"--port {args.port}: expected 0..65535")
    if not args.grace >= 0:
        return _fail(sys.stderr, f"--grace {args.grace}: expected a number of seconds >= 0")
    _configure_logging(quiet=bool(getattr(args, "quiet", False)))
    return anyio.run(_serve, args, token)


def _configure_logging(*, quiet: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    for name in ("motia_state.step", "motia_state.app"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    # The per-invocation lines are printed by the dev server itself.
    logging.getLogger("motia_state.app").setLevel(logging.WARNING)
    if quiet:  # -q hides the steps' logs (the invocation lines are the server's output and stay)
        logging.getLogger("motia_state.step").setLevel(logging.CRITICAL + 1)


def _print(*lines: str) -> None:
    try:
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Whoever read the output went away (`dev | head`): the server goes on,
        # its output goes nowhere from now on (also the flush at exit).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _summary(app: Any, url: str, state: str, token: str | None = None) -> list[str]:
    s = app.summary()
    lines = [f"motia-state dev: {len(s['steps'])} step(s) from {app.root} on state {redacted(state)}"]
    lines.append("  routes:" if s["routes"] else "  routes: none")
    lines += [f"    {r['method']:<6} {r['path']}  -> {r['step']}" for r in s["routes"]]
    lines.append("  topics:" if s["topics"] else "  topics: none")
    lines += [f"    {topic}  -> {', '.join(steps)}" for topic, steps in s["topics"].items()]
    lines.append("  schedules:" if s["schedules"] else "  schedules: none")
    lines += [f"    {c['expression']}  -> {c['step']}" for c in s["schedules"]]
    lines.append("  state triggers:" if s["stateTriggers"] else "  state triggers: none")
    note = "" if s["stateTriggersRunning"] else "  (not running: motia_state.triggers is not installed)"
    for t in s["stateTriggers"]:
        trigger = t["trigger"]
        where = f"{trigger.get('group', '*')}/{trigger['key']}"
        lines.append(f"    {t['name']}: {where}{' (condition)' if 'condition' in trigger else ''}{note}")
    if app.cors.any or app.cors.origins:
        lines.append(
            f"  browser pages allowed to call the routes (CORS): {'any' if app.cors.any else ', '.join(sorted(app.cors.origins))}"
        )
    lines += [f"  not served (no config): {name}" for name in s.get("notServed", ())]
    lines += [f"  not served (TypeScript: compile it to JavaScript): {name}" for name in s.get("typescript", ())]
    # With a token, the page reads it from the fragment (never sent to the server) and opens its session.
    page = f"/__motia/#{quote(token, safe='')}" if token else "/__motia"
    lines.append(f"  workbench: {url}{page}")
    return lines


def _snapshot(root: Path) -> dict[Path, tuple[int, int]]:
    from .discovery import discover

    out: dict[Path, tuple[int, int]] = {}
    for path in discover(root):
        try:
            st = path.stat()
        except OSError:
            continue
        out[path] = (st.st_mtime_ns, st.st_size)
    return out


@contextmanager
def _no_uvicorn_signals(server: Any) -> Iterator[None]:
    # uvicorn would re-raise a captured signal after its shutdown, so a
    # normal stop would end in a KeyboardInterrupt or a death by SIGTERM.
    # The dev server handles the signals itself and exits 0.
    yield


class _Stop:
    """The dev server's signal handling: a first SIGINT/SIGTERM stops gracefully, a second at once.

    Before the server runs (while the configs load) a signal abandons the
    start; afterwards it tells uvicorn to stop accepting connections and
    the app to stop taking work.
    """

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.server: Any = None
        self.app: Any = None
        self.signalled = False
        self.startup = anyio.CancelScope()

    async def watch(self) -> None:
        """Wait for SIGINT/SIGTERM until cancelled; see the class docstring for what each does."""
        async with anyio.create_task_group() as tg, receiver() as signals:
            async for signum in signals:
                if self.signalled:
                    if self.server is not None:
                        self.server.force_exit = True
                        self.app.cancel_running()
                    continue
                self.signalled = True
                _print(f"{signal.Signals(signum).name}: stopping (running invocations get {self.grace:g} s to finish)")
                if self.server is None:
                    self.startup.cancel()
                else:
                    self.server.should_exit = True
                    await self.app.stop_accepting()
                    tg.start_soon(self._stop_after_grace)

    async def _stop_after_grace(self) -> None:
        # The grace period counts from the signal, for every invocation alike
        # (an HTTP request's too): past it they are stopped and answered.
        await anyio.sleep(self.grace)
        self.app.cancel_running()


async def _serve(args: argparse.Namespace, token: str | None) -> int:
    stop = _Stop(args.grace)
    code = EXIT_FAILED
    async with anyio.create_task_group() as tg:
        tg.start_soon(stop.watch)
        try:
            code = await _start(args, token, stop)
        finally:
            tg.cancel_scope.cancel()
    return code


async def _start(args: argparse.Namespace, token: str | None, stop: _Stop) -> int:
    from ..errors import StateError
    from .app import App, InvocationRecord
    from .config import ConfigError

    cors = [origin.strip() for given in getattr(args, "cors", []) for origin in given.split(",") if origin.strip()]
    app = App.from_directory(args.dir, state=args.state, token=token, debug=args.debug, grace=args.grace, cors=cors)
    app.allowed_hosts = (args.host,)
    stop.app = app

    def on_invocation(record: InvocationRecord) -> None:
        outcome = record.outcome if record.error is None else f"{record.outcome}: {record.error.splitlines()[0]}"
        _print(
            f"{time.strftime('%H:%M:%S')} {record.step} [{record.trigger}] "
            f"traceId={record.trace_id} {record.duration * 1000:.1f} ms {outcome}"
        )

    code = EXIT_OK
    try:
        with stop.startup:  # cancelled only by a signal that comes before the server runs
            async with app:
                # A store that cannot be reached fails the start, instead of every request later.
                # Answered here: raised out of the app's task group it would come wrapped in a group.
                assert app.state is not None
                try:
                    await app.state.exists("motia-state", "reachable")
                except StateError as e:
                    return _error(e)
                app.on_invocation.append(on_invocation)
                if getattr(args, "verbose", 0) >= 2 and app.state is not None:
                    # -vv: one line per state operation a step performs (group, key, op, duration, outcome).
                    from ..cli._common import log_operation

                    app.state.add_observer(log_operation)
                code = await _serve_app(app, args, stop, token)
    except ConfigError:
        if not app.registry.errors:
            raise
        for error in app.registry.errors:
            sys.stderr.write(f"config error: {error}\n")
        sys.stderr.write("motia-state dev: fix the config error(s) above; nothing was started\n")
        return EXIT_USAGE
    except StateError as e:  # a bad --state, an unreachable store
        return _fail(sys.stderr, f"{e.code}: {e.message}") if e.code == "INVALID_ARGUMENT" else _error(e)
    if code == EXIT_OK:
        _print("stopped")
    return code


async def _serve_app(app: Any, args: argparse.Namespace, stop: _Stop, token: str | None) -> int:
    import uvicorn

    class Server(uvicorn.Server):
        capture_signals = _no_uvicorn_signals

    config = uvicorn.Config(
        app.asgi,
        host=args.host,
        port=args.port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        # A backstop only: the app stops its invocations at the grace period and answers them itself.
        timeout_graceful_shutdown=int(args.grace) + 5,
    )
    from ..web.serve import browser_host, listen

    sock = listen(args.host, args.port, "dev")
    if sock is None:
        return EXIT_FAILED
    server = Server(config)
    stop.server = server
    url = f"http://{browser_host(args.host)}:{args.port}"

    async def announce() -> None:
        # Once the socket is bound: a server that cannot bind has nothing to announce.
        while not server.started:
            await anyio.sleep(0.02)
        bound = url
        if args.port == 0:  # the OS chose: show the port it gave
            with contextlib.suppress(AttributeError, IndexError, OSError):
                bound = url.rsplit(":", 1)[0] + f":{server.servers[0].sockets[0].getsockname()[1]}"
        _print(*_summary(app, bound, args.state, token))

    async def watch() -> None:
        seen = _snapshot(app.root)
        while True:
            await anyio.sleep(WATCH_PERIOD)
            now = _snapshot(app.root)
            if now == seen:
                continue
            seen = now
            before = app.registry
            registry = await app.reload()
            if registry.errors:
                for error in registry.errors:
                    sys.stderr.write(f"config error: {error}\n")
                if app.registry is before:
                    sys.stderr.write("motia-state dev: nothing reloaded: still serving the last good version\n")
                else:
                    sys.stderr.write(
                        "motia-state dev: the file(s) above keep their last good config (one that does not "
                        "load fails its invocations until it is fixed); every other change is served\n"
                    )
                sys.stderr.flush()
            if app.registry is not before:
                _print("reloaded:", *_summary(app, url, args.state)[1:])

    code = EXIT_OK
    async with anyio.create_task_group() as tg:
        tg.start_soon(announce)
        if args.watch:
            tg.start_soon(watch)
        try:
            await server.serve(sockets=[sock])
        except SystemExit:  # uvicorn exits when it cannot start (it has logged why)
            code = EXIT_FAILED
        finally:
            sock.close()
        if not server.started and not stop.signalled:
            code = EXIT_FAILED
        tg.cancel_scope.cancel()
    await app.stop_accepting()
    return code
