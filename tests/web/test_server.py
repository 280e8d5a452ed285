"""The workbench over a real uvicorn server: the edges that an in-process transport cannot show."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import httpx

import motia_state as ms

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


def read_events(response: httpx.Response, count: int) -> list[dict[str, str]]:
    """The first ``count`` server-sent events of a streaming response (comments skipped)."""
    events: list[dict[str, str]] = []
    event: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                events.append(event)
                event = {}
                if len(events) == count:
                    return events
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        event[name] = value
    return events


def test_change_stream_delivers_writes_of_another_process_and_resumes(tmp_path: Path) -> None:
    store = tmp_path / "store"

    def write(fn: Any) -> Any:
        async def go() -> Any:
            async with ms.FileStateAdapter(str(store)) as adapter:
                return await fn(adapter)

        return asyncio.run(go())

    write(lambda a: a.set("g", "before", 0))  # committed before the stream: not sent
    with WorkbenchServer(f"file:{store}") as server, httpx.Client(base_url=server.base, timeout=10) as c:
        with c.stream("GET", "/__motia/state/changes") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            write(lambda a: a.set("g", "k", 1))
            write(lambda a: a.increment("g", "k", 2))
            first, second = read_events(response, 2)
        assert first["event"] == "change" and json.loads(first["data"])["key"] == "k"
        data = json.loads(second["data"])
        assert (data["op"], data["newValue"], data["oldValue"], second["id"]) == ("increment", 3, 1, data["cursor"])
        # A reconnecting EventSource sends Last-Event-ID: it gets what followed, nothing twice.
        with c.stream("GET", "/__motia/state/changes", headers={"Last-Event-ID": first["id"]}) as response:
            [again] = read_events(response, 1)
        assert again["id"] == second["id"]
        history = c.get("/__motia/state/history", params={"groupId": "g", "key": "k"}).json()["changes"]
        assert [h["newValue"] for h in history] == [3, 1]


def test_an_oversized_body_is_413_without_being_stored(tmp_path: Path) -> None:
    with WorkbenchServer("memory:") as server:
        body = b'{"groupId": "g", "key": "k", "value": "' + b"x" * (17 * 1024 * 1024) + b'"}'
        r = httpx.post(server.base + "/__motia/state", content=body, headers=J, timeout=30)
        assert r.status_code == 413 and r.json()["code"] == "LIMIT_EXCEEDED"
        assert httpx.get(server.base + "/__motia/state").json() == []


def test_an_open_change_stream_does_not_hold_up_a_stop(tmp_path: Path) -> None:
    # A browser tab showing the page keeps its event stream open: SIGTERM
    # must still stop the server at once, with exit 0 and no traceback.
    import signal
    import time

    server = WorkbenchServer(f"file:{tmp_path / 'store'}").start()
    assert server.proc is not None and server.proc.stderr is not None
    try:
        with httpx.Client(base_url=server.base, timeout=10) as c, c.stream("GET", "/__motia/state/changes") as r:
            lines = r.iter_lines()  # kept: dropping the iterator would close the stream
            assert next(lines).startswith(":")  # the stream is open
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            code = server.proc.wait(20)
            took = time.monotonic() - started
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    errors = server.proc.stderr.read()
    server.stop()
    assert code == 0, errors
    assert took < 8, f"stopping took {took:.1f} s"  # not the 10 s uvicorn would give the open stream
    assert "Traceback" not in errors and "ERROR" not in errors, errors


def _workbench_exit(*args: str) -> Any:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "motia_state.cli", "workbench", "--port", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_a_bad_or_unreachable_store_is_one_message_and_the_contracts_exit_code(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    broken = tmp_path / "store"
    (broken / "lock").mkdir(parents=True)  # a store whose lock file cannot be opened
    (broken / "log").write_bytes(b"")
    for state, code, needle in (
        ("bogus:", 2, "INVALID_ARGUMENT"),
        (f"file:{blocker}/store", 2, "INVALID_ARGUMENT"),  # a path inside a file can never be a store
        (f"file:{broken}", 3, "UNAVAILABLE"),  # a store is there, but cannot be opened
        ("redis://127.0.0.1:1/0", 3, "UNAVAILABLE"),  # nothing listens there
    ):
        proc = _workbench_exit("--state", state)
        assert proc.returncode == code, (state, proc.stdout, proc.stderr)
        assert needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert "__motia" not in proc.stdout  # nothing is announced that is not served


def test_a_taken_port_is_one_message_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        import subprocess
        import sys

        cmd = [sys.executable, "-m", "motia_state.cli", "workbench", "--port", str(port)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "address already in use" in proc.stderr and "--port" in proc.stderr and "ERROR:" not in proc.stderr
    assert "__motia" not in proc.stdout
