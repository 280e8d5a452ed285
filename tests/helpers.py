"""Shared test helpers: tools that CI must have, and a fresh-state RPC method."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import motia_state as ms
from motia_state.rpc import CallContext, HandlerTable

from .conformance import limits_kwargs

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie counts as dead (its parent is gone or will reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        # The state follows the parenthesised name, which may itself hold spaces.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def require_tool(name: str) -> str:
    """Path of ``name``; skip without it locally, fail without it on CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if ON_CI:
            pytest.fail(f"{message} (CI=true: a missing tool is a failure, not a skip)")
        pytest.skip(message)
    return path


#: The interpreter a step file of each extension needs (Python: the one running the tests).
STEP_TOOLS = {"py": None, "js": "node", "rb": "ruby"}


def step_file(folder: Path, stem: str, ext: str, source: str) -> Path:
    """Write ``stem.step.ext`` (``source`` dedented) into ``folder``, once its language's interpreter is known to be here."""
    tool = STEP_TOOLS[ext]
    if tool is not None:
        require_tool(tool)
    path = folder / f"{stem}.step.{ext}"
    path.write_text(textwrap.dedent(source))
    return path


def reset_handlers(manager: ms.StateManager) -> HandlerTable:
    """An orchestrator method ``test.reset``: fresh state with the given limits."""
    table = HandlerTable()

    async def reset(args: dict[str, Any], ctx: CallContext) -> None:
        limits = limits_kwargs({"limits": args.get("limits") or {}})
        manager.adapter = ms.MemoryStateAdapter(limits=ms.Limits(**limits))

    table.register("test.reset", Any, reset)
    return table


def _bindable(*ports: int) -> bool:
    import socket

    try:
        with contextlib.ExitStack() as stack:
            for port in ports:
                stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def free_port() -> int:
    """A TCP port nobody listens on right now, below Linux's ephemeral range (32768 and up).

    The port is bound by a child that starts after this returns (or again
    after a restart): a port from the ephemeral range could be taken
    meanwhile as the local end of some outgoing connection (any process's),
    and the child would fail to bind it.
    """
    import random

    for _ in range(200):
        port = random.randrange(10000, 32000)
        if _bindable(port):
            return port
    raise RuntimeError("no free port")


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, both below the ephemeral range.

    A node that a test stops and starts again on the same ports must not
    find one of them taken meanwhile by an outgoing connection (the
    client's reconnects).
    """
    import random

    for _ in range(200):
        port = random.randrange(10000, 22000)
        if _bindable(port, port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisServer:
    """A throwaway redis-server on a free port, in its own directory."""

    def __init__(self, directory: str, *, appendfsync: str | None = None, cluster: bool = False) -> None:
        self.directory = directory
        self.port = free_cluster_port() if cluster else free_port()
        self.appendfsync = appendfsync
        self.cluster = cluster
        self.proc: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import subprocess
        import time

        server = require_tool("redis-server")
        args = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory, "--save", ""]
        if self.appendfsync:
            args += ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        else:
            args += ["--appendonly", "no"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import socket

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


class RedisClusterServers:
    """Three redis-server primaries joined into one cluster, the slots split evenly."""

    def __init__(self, directory: str) -> None:
        self.nodes = [RedisServer(directory, cluster=True) for _ in range(3)]

    @property
    def port(self) -> int:
        return self.nodes[0].port

    def start(self) -> RedisClusterServers:
        import time

        import redis

        for node in self.nodes:
            node.start()
        clients = [redis.Redis(port=node.port) for node in self.nodes]
        try:
            bounds = [0, 5461, 10923, 16384]
            for i, client in enumerate(clients):
                client.execute_command("CLUSTER ADDSLOTS", *range(bounds[i], bounds[i + 1]))
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER MEET", "127.0.0.1", node.port)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                infos = [c.cluster("INFO") for c in clients]  # redis-py parses it into a dict
                if all(i["cluster_state"] == "ok" and int(i["cluster_known_nodes"]) == 3 for i in infos):
                    return self
                time.sleep(0.05)
            raise RuntimeError("the redis cluster did not come up")
        finally:
            for client in clients:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


# -- child processes (tests/scripts/state_writer.py) -----------------------------

ROOT = Path(__file__).resolve().parent.parent
WRITER = Path(__file__).parent / "scripts" / "state_writer.py"


def start_child(config: dict[str, Any], job: str, count: int) -> subprocess.Popen[str]:
    """A state_writer.py child on ``config``, stopped after "ready" until go()."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), json.dumps(config), job, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


def go(*procs: subprocess.Popen[str]) -> None:
    """Release children waiting after "ready"."""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def rest_of_output(proc: subprocess.Popen[str]) -> str:
    """Everything the child printed after "ready" (readline may have buffered some)."""
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdin.close()
    out = proc.stdout.read()
    proc.stdout.close()
    proc.wait(timeout=60)
    return out


def finish(proc: subprocess.Popen[str]) -> list[int]:
    out = rest_of_output(proc)
    assert proc.returncode == 0, proc.returncode
    return [int(line) for line in out.split()]
