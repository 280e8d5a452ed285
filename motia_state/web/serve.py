"""``motia-state workbench --state URL``: the workbench over a store, with no steps.

Binds 127.0.0.1 by default; any other host needs a token (``--token`` or the
``MOTIA_TOKEN`` environment variable). Prints the URL to open (with the
token in its ``#fragment``, which the page trades for a session cookie).
SIGINT/SIGTERM stop the server and exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import anyio

from .._urls import redacted, without_credentials
from ..adapters.factory import create_state_adapter, parse_state_config
from ..cli._stop import receiver
from ..errors import StateError
from ..manager import StateManager
from .endpoints import PREFIX, EventStreams, workbench_app
from .guard import LOOPBACK_HOSTS

__all__ = ["add_arguments", "listen", "run_workbench"]

#: Seconds the requests still running at a stop get to finish.
GRACE = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``workbench`` subcommand's options."""
    parser.add_argument("--state", default="memory:", help="memory: | file:PATH | redis://... (default memory:)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port (default 3000; 0 picks a free one)")
    parser.add_argument(
        "--token",
        default=None,
        help="token every /__motia request needs (default: the MOTIA_TOKEN environment variable); "
        "required when --host is not loopback",
    )


def browser_host(host: str) -> str:
    """The host to print in a server's address for a browser: a bind-everything address is not one.

    A server bound to ``0.0.0.0`` (or ``::``) is reached on this machine at
    loopback, which the workbench always accepts; ``0.0.0.0`` is not an
    address to connect to (Windows never reaches it, and browsers
    increasingly refuse it). An IPv6 literal gets its brackets.
    """
    bare = host.strip("[]")
    if bare == "0.0.0.0":
        return "127.0.0.1"
    if bare == "::":
        return "[::1]"
    return f"[{bare}]" if ":" in bare else host


def listen(host: str, port: int, command: str) -> socket.socket | None:
    """A listening socket on ``host:port`` for the server to use; None (the reason printed) when it cannot be had.

    Bound here rather than by uvicorn, so that a taken port or a host that
    is not one of this machine's addresses is one message saying what to
    do, not the server library's log line.
    """
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        # IPv6 for an IPv6 literal, else IPv4 (as uvicorn binds: "localhost" is 127.0.0.1).
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, family=family, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        print(f"motia-state {command}: cannot listen on {shown}: {e.strerror or e}; check --host", file=sys.stderr)
        return None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        why = e.strerror.lower() if e.strerror else str(e)
        hint = (
            "another server uses that port: stop it, or give another --port (0 picks a free one)"
            if e.errno == errno.EADDRINUSE
            else "check --host and --port"
        )
        print(f"motia-state {command}: cannot listen on {shown}: {why}; {hint}", file=sys.stderr)
        return None
    return sock


@contextlib.contextmanager
def _no_uvicorn_signals(server: Any) -> Iterator[None]:
    # uvicorn re-raises a signal it captured once it has shut down; this
    # command handles SIGINT/SIGTERM itself so a stop exits 0.
    yield


async def _serve(args: argparse.Namespace, token: str | None) -> int:
    import uvicorn

    class Server(uvicorn.Server):
        capture_signals = _no_uvicorn_signals

    async with StateManager(create_state_adapter(args.state)) as state:
        await state.exists("motia-state", "reachable")  # an unreachable store fails the start, not every request
        streams = EventStreams()
        asgi = workbench_app(state, token=token, allowed_hosts=[args.host], streams=streams)
        config = uvicorn.Config(
            asgi,
            host=args.host,
            port=args.port,
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=GRACE,
        )
        server = Server(config)
        sock = listen(args.host, args.port, "workbench")
        if sock is None:
            return 1
        async with anyio.create_task_group() as tg:

            async def watch_signals() -> None:
                async with receiver() as signals:
                    # Kept open until the server is done: a second signal
                    # stops at once instead of raising KeyboardInterrupt.
                    async for _ in signals:
                        if server.should_exit:
                            server.force_exit = True
                        server.should_exit = True
                        streams.close()  # an open page's event stream must not hold up the stop

            async def announce() -> None:
                while not server.started:
                    if server.should_exit:
                        return
                    await anyio.sleep(0.02)
                port = server.servers[0].sockets[0].getsockname()[1] if server.servers else args.port
                host = browser_host(args.host)
                fragment = f"#{quote(token, safe='')}" if token else ""  # the page decodes it
                print(f"motia-state workbench: http://{host}:{port}{PREFIX}/{fragment}", flush=True)

            tg.start_soon(watch_signals)
            tg.start_soon(announce)
            try:
                await server.serve(sockets=[sock])
            except SystemExit:  # uvicorn exits when it cannot start (it has logged why)
                tg.cancel_scope.cancel()
                return 1
            finally:
                sock.close()
            tg.cancel_scope.cancel()
            return 0 if server.started else 1
    return 1


def run_workbench(args: argparse.Namespace) -> int:
    """Run the ``workbench`` subcommand; returns the exit code."""
    token = args.token or os.environ.get("MOTIA_TOKEN") or None
    if args.host not in LOOPBACK_HOSTS and token is None:
        print(
            f"motia-state workbench: --host {args.host} is not loopback: give --token T (or set MOTIA_TOKEN)",
            file=sys.stderr,
        )
        return 2
    try:
        parse_state_config(args.state)
    except StateError as e:
        print(
            f"motia-state workbench: --state {redacted(args.state)}: {e.code}: {without_credentials(e.message)}",
            file=sys.stderr,
        )
        return 2
    try:
        return anyio.run(_serve, args, token)
    except StateError as e:
        print(f"motia-state workbench: {e.code}: {e.message}", file=sys.stderr)
        # The CLI's exit codes: 3 when the store cannot be reached, 2 for bad input, 1 otherwise.
        return {"UNAVAILABLE": 3, "INVALID_ARGUMENT": 2}.get(e.code, 1)
    except KeyboardInterrupt:  # a signal before the server took over the signals: a normal stop
        return 0
