"""The workbench's triggers endpoints against ``motia-state dev``'s real state-trigger runner."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..app.devserver import DevServer
from .steps import write_trigger_app

J = {"content-type": "application/json"}


def _state_row(server: DevServer) -> dict[str, Any]:
    body = server.client.get("/__motia/triggers").json()
    assert body["running"] is True, body
    rows: list[dict[str, Any]] = [t for t in body["triggers"] if t["kind"] == "state"]
    [row] = rows
    return row


def _wait_dead(server: DevServer, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead: list[dict[str, Any]] = _state_row(server)["dead"]
        if len(dead) >= count:
            return dead
        time.sleep(0.1)
    raise AssertionError(f"no {count} state-trigger dead letter(s) within {timeout} s:\n{server.output()}")


def _set(server: DevServer, group: str, key: str, value: Any) -> None:
    r = server.client.post("/__motia/state", json={"groupId": group, "key": key, "value": value}, headers=J)
    assert r.status_code == 200, r.text


def test_dev_server_lists_retries_and_drops_state_trigger_dead_letters(tmp_path: Path) -> None:
    root = write_trigger_app(tmp_path / "app")
    with DevServer(root) as server:
        server.start(tmp_path)
        row = _state_row(server)
        assert row["dead"] == [] and row["state"] == "running"
        events = [t for t in server.client.get("/__motia/triggers").json()["triggers"] if t["kind"] == "events"]
        assert events == [{"name": "events", "kind": "events", "dead": []}]

        _set(server, "billing", "hold", True)
        _set(server, "o1", "order", {"n": 1})
        [dead] = _wait_dead(server, 1)
        assert "billing on hold" in dead["error"] and dead["change"]["key"] == "order"
        assert _state_row(server)["deadLetters"] == 1
        name = _state_row(server)["name"]
        retry = f"/__motia/triggers/{name}/dead/{dead['id']}/retry"

        # Still on hold: the retry runs and fails, and the letter stays.
        assert server.client.post(retry, headers=J).json() == {"retried": True, "succeeded": False}
        assert [d["id"] for d in _state_row(server)["dead"]] == [dead["id"]]

        # The app's dead-letter list holds the state trigger's too, with its kind, and retries it by id.
        listed = server.client.get("/__motia/dead-letters").json()
        assert [(d["kind"], d["trigger"], d["id"]) for d in listed] == [("state", name, dead["id"])]
        assert listed[0]["change"]["key"] == "order" and "billing on hold" in listed[0]["error"]
        again = server.client.post(f"/__motia/dead-letters/{dead['id']}/retry", headers=J)
        assert again.json() == {"retried": True, "succeeded": False}
        assert [d["id"] for d in server.client.get("/__motia/dead-letters").json()] == [dead["id"]]

        _set(server, "billing", "hold", False)
        assert server.client.post(retry, headers=J).json() == {"retried": True, "succeeded": True}
        assert _state_row(server)["dead"] == []
        seen = server.client.get("/__motia/state", params={"group": "billing"}).json()
        assert {"groupId": "billing", "key": "seen"} in [{"groupId": e["groupId"], "key": e["key"]} for e in seen]
        assert next(e for e in seen if e["key"] == "seen")["value"] == [{"n": 1}]
        assert server.client.post(retry, headers=J).status_code == 404

        # A second failure, dropped without running it.
        _set(server, "billing", "hold", True)
        _set(server, "o2", "order", {"n": 2})
        [second] = _wait_dead(server, 1)
        gone = server.client.delete(f"/__motia/triggers/{name}/dead/{second['id']}", headers=J)
        assert gone.status_code == 204
        assert _state_row(server)["dead"] == []
        assert server.client.delete(f"/__motia/triggers/{name}/dead/{second['id']}", headers=J).status_code == 404
        assert server.client.delete(f"/__motia/triggers/nope/dead/{second['id']}", headers=J).status_code == 404

        # A third, dropped through the app's dead-letter list.
        _set(server, "o3", "order", {"n": 3})
        [third] = _wait_dead(server, 1)
        assert [d["kind"] for d in server.client.get("/__motia/dead-letters").json()] == ["state"]
        assert server.client.delete(f"/__motia/dead-letters/{third['id']}", headers=J).status_code == 204
        assert _state_row(server)["dead"] == [] and server.client.get("/__motia/dead-letters").json() == []
        assert server.client.delete(f"/__motia/dead-letters/{third['id']}", headers=J).status_code == 404
        assert server.stop() == 0
