"""The workbench over a real uvicorn server: the edges that an in-process transport cannot show."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx

from .server import WorkbenchServer

J = {"content-type": "application/json"}


def raw_request(base: str, request: bytes) -> bytes:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_real_server_serves_state_and_stops_on_sigterm_with_0(tmp_path: Path) -> None:
    server = WorkbenchServer(f"file:{tmp_path / 'store'}").start()
    try:
        r = httpx.post(
            server.base + "/__motia/state", content=json.dumps({"groupId": "g", "key": "k", "value": [1]}), headers=J
        )
        assert r.status_code == 200 and r.json()["value"] == [1]
        listed = httpx.get(server.base + "/__motia/state").json()
        assert listed[0]["groupId"] == "g" and listed[0]["type"] == "array"
        page = httpx.get(server.base + "/__motia/")
        assert page.status_code == 200 and "<html" in page.text
    finally:
        assert server.stop() == 0


def test_rebinding_host_is_refused_on_the_wire(tmp_path: Path) -> None:
    with WorkbenchServer("memory:") as server:
        port = server.base.rsplit(":", 1)[1]
        answer = raw_request(
            server.base,
            f"GET /__motia/state HTTP/1.1\r\nHost: attacker.example:{port}\r\nConnection: close\r\n\r\n".encode(),
        )
        assert answer.startswith(b"HTTP/1.1 403")
        answer = raw_request(
            server.base, f"GET /__motia/state HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        assert answer.startswith(b"HTTP/1.1 200")
        body = b'{"groupId": "g", "key": "k", "value": 1}'
        form = raw_request(
            server.base,
            b"POST /__motia/state HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\nContent-Type: text/plain\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body,
        )
        assert form.startswith(b"HTTP/1.1 415")


def test_token_from_the_printed_url_opens_a_session(tmp_path: Path) -> None:
    with WorkbenchServer("memory:", token="t0k") as server:
        assert server.url.endswith("/__motia/#t0k")
        assert httpx.get(server.base + "/__motia/state").status_code == 401
        with httpx.Client(base_url=server.base) as c:
            ok = c.post("/__motia/session", content=json.dumps({"token": "t0k"}), headers=J)
            assert ok.status_code == 204
            assert c.get("/__motia/state").status_code == 200


def test_non_loopback_host_without_token_exits_2() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "motia_state.cli", "workbench", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--token" in done.stderr
