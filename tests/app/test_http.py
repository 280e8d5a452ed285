"""What an API step's return value becomes on the wire, including the values no HTTP server can send."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from motia_state.app.http import response_for

from .devserver import DevServer

ECHO = """
config = {"name": "Echo", "triggers": [{"type": "api", "method": "POST", "path": "/echo"}]}

def handler(req, ctx):
    return req["body"]
"""

UNSENDABLE = [
    {"status": 99999},
    {"status": 99},
    {"status": 100},
    {"status": 199},
    {"status": 600},
    {"status": -1, "body": 1},
    {"status": 200, "headers": {"x-a": "b\nc"}},
    {"status": 200, "headers": {"x-a": "b\rSet-Cookie: a=b"}},
    {"status": 200, "headers": {"bad name": "x"}},
    {"status": 200, "headers": {"x-price": "5 €"}},
    {"status": 200, "headers": {"x-näme": "x"}},
    {"status": 200, "headers": {"": "x"}},
    {"status": 200, "headers": {"content-length": "3"}, "body": "hello"},
    {"status": 200, "headers": {"Transfer-Encoding": "chunked"}, "body": "hello"},
]


@pytest.mark.parametrize("result", UNSENDABLE, ids=[json.dumps(r) for r in UNSENDABLE])
def test_a_response_no_server_can_send_is_a_clear_500(result: dict[str, Any]) -> None:
    response = response_for(result)
    assert response.status_code == 500
    body = json.loads(bytes(response.body))
    assert body["code"] == "STEP_FAILED" and "the step's response" in body["error"]


def test_sendable_responses_keep_their_status_and_headers() -> None:
    r = response_for({"status": 201, "headers": {"X-Id": 7, "Location": "/x"}, "body": {"a": 1}})
    assert r.status_code == 201 and r.headers["x-id"] == "7" and r.headers["location"] == "/x"
    assert json.loads(bytes(r.body)) == {"a": 1}
    assert response_for({"status": 599}).status_code == 599
    assert response_for({"status": 200}).status_code == 200
    assert response_for({"status": 204, "body": "dropped"}).body == b""


def test_over_the_wire_an_unsendable_response_answers_500_and_the_server_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "echo.step.py").write_text(ECHO)
    with DevServer(root).start(tmp_path) as server:
        for result in UNSENDABLE:
            r = server.client.post("/echo", json=result)
            assert r.status_code == 500 and r.json()["code"] == "STEP_FAILED", result
        assert server.client.post("/echo", json={"status": 202, "body": [1]}).json() == [1]
        assert server.stop(signal.SIGTERM) == 0
        assert "Traceback" not in server.stderr, server.stderr


def test_a_body_nested_past_the_parsers_depth_is_413_not_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "echo.step.py").write_text(ECHO)
    with DevServer(root).start(tmp_path) as server:
        r = server.client.post("/echo", content="[" * 5000 + "]" * 5000, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == "LIMIT_EXCEEDED", r.text
        assert server.stop(signal.SIGTERM) == 0
        assert "Traceback" not in server.stderr, server.stderr
