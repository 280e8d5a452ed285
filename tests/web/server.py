"""A real workbench server in a child process, for the tests that need real HTTP (and the browser)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from types import TracebackType

import httpx


class WorkbenchServer:
    """``motia-state workbench --state URL --port 0`` in a child; ``url`` is the page's address."""

    def __init__(self, state_url: str, *, token: str | None = None, host: str = "127.0.0.1") -> None:
        self.state_url = state_url
        self.token = token
        self.host = host
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.base = ""

    def start(self) -> WorkbenchServer:
        cmd = [sys.executable, "-m", "motia_state.cli", "workbench", "--state", self.state_url, "--port", "0"]
        cmd += ["--host", self.host]
        if self.token:
            cmd += ["--token", self.token]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("MOTIA_TOKEN", None)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"(http://\S+?)(/__motia/)(#\S+)?$", line.strip())
        if not found:
            self.proc.kill()
            raise RuntimeError(
                f"the workbench did not start: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}"
            )
        self.base = found.group(1)
        self.url = found.group(1) + found.group(2) + (found.group(3) or "")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(self.base + "/__motia/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        return self

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode

    def __enter__(self) -> WorkbenchServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
