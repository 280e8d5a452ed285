"""A real ``motia-state dev`` server in a subprocess, driven over HTTP by the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from ..helpers import free_port


class DevServer:
    """``motia-state dev DIR`` on a free port; ``with DevServer(dir) as s: s.client.get(...)``."""

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        # MOTIA_TOKEN only when a test gives it: the developer's own must not leak in.
        self.env = {k: v for k, v in os.environ.items() if k != "MOTIA_TOKEN"}
        self.env.update(env or {})
        self.proc: subprocess.Popen[str] | None = None
        self.client = httpx.Client(base_url=self.url, timeout=30.0)
        self._out: Path | None = None
        self._err: Path | None = None

    def start(self, tmp: Path, wait: bool = True) -> DevServer:
        """Start the server (stdout/stderr into files under ``tmp``) and wait until it answers."""
        self._out, self._err = tmp / f"dev-{self.port}.out", tmp / f"dev-{self.port}.err"
        argv = [sys.executable, "-m", "motia_state.cli", "dev", str(self.root), "--port", str(self.port), *self.args]
        with open(self._out, "w") as out, open(self._err, "w") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, env=self.env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll until the server answers HTTP; fail with its output when it exits first."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the dev server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                self.client.get("/__motia/ready-probe")
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"the dev server did not answer within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        """Its stdout and stderr so far."""
        out = self._out.read_text() if self._out and self._out.exists() else ""
        err = self._err.read_text() if self._err and self._err.exists() else ""
        return f"--- stdout\n{out}--- stderr\n{err}"

    @property
    def stdout(self) -> str:
        """Its stdout so far."""
        return self._out.read_text() if self._out and self._out.exists() else ""

    @property
    def stderr(self) -> str:
        """Its stderr so far."""
        return self._err.read_text() if self._err and self._err.exists() else ""

    def wait_output(self, needle: str, timeout: float = 20.0, stream: str = "stdout") -> str:
        """Wait until ``needle`` shows in stdout (or stderr)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.stdout if stream == "stdout" else self.stderr
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} never showed:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the dev server did not stop within {timeout} s:\n{self.output()}") from None

    def __enter__(self) -> DevServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
