"""Two token-guarded servers on one host keep their sessions apart.

Browsers do not scope cookies by port, so ``motia-state dev`` on one port
and ``motia-state workbench`` on another (both on 127.0.0.1) share one
cookie jar: each server's session cookie has a name of its own, and
signing in to one never signs the browser out of the other.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from ..app.devserver import DevServer
from ..helpers import step_file
from .server import WorkbenchServer

STEP = """
config = {"name": "Hello", "triggers": [{"type": "api", "method": "GET", "path": "/hello"}]}

def handler(req, ctx):
    return {"status": 200, "body": "hi"}
"""


def test_a_dev_server_and_a_workbench_on_one_host_keep_their_own_sessions(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    step_file(root, "hello", "py", STEP)
    store = tmp_path / "bench-store"
    with (
        DevServer(root, "--token", "dev-t0ken").start(tmp_path) as dev,
        WorkbenchServer(f"file:{store}", token="bench-t0ken") as bench,
        httpx.Client(timeout=30.0) as browser,  # one cookie jar for both, as a browser has
    ):
        servers = {"dev": (dev.url, "dev-t0ken"), "bench": (bench.base, "bench-t0ken")}
        for base, _token in servers.values():
            assert browser.get(f"{base}/__motia/state").status_code == 401
        names = set()
        for base, token in servers.values():
            signed_in = browser.post(f"{base}/__motia/session", json={"token": token})
            assert signed_in.status_code == 204
            cookie = signed_in.headers["set-cookie"]
            names.add(cookie.split("=", 1)[0])
            lowered = cookie.lower()
            assert "httponly" in lowered and "samesite=strict" in lowered and token not in cookie
        for name, (base, _token) in servers.items():
            answer = browser.get(f"{base}/__motia/state")  # no Bearer: the session cookie alone
            assert answer.status_code == 200, (name, answer.text)
        assert names == {f"motia_session_{dev.port}", f"motia_session_{bench.base.rsplit(':', 1)[1]}"}
