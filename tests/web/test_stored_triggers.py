"""The standalone workbench's triggers, read and edited through the store a real TriggerRunner wrote.

``motia-state workbench --state file:...`` runs no trigger: it lists what the
runtimes left in the store (positions, lag, dead letters), drops dead
letters, and asks for retries that a runtime running the trigger picks up
(answering 202 "queued" when none runs it now). The runtime is a real
TriggerRunner in its own process, its handler failing on demand.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .server import WorkbenchServer
from .stored import Runtime, handled, start_failing

J = {"content-type": "application/json"}


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    started: list[Runtime] = []
    yield started
    for runtime in started:
        runtime.kill()


def triggers(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/__motia/triggers")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_until(condition: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_with_no_runtime_running_it_lists_drops_and_queues_a_retry_the_next_runtime_runs(
    tmp_path: Path, runtimes: list[Runtime]
) -> None:
    store, work = tmp_path / "store", tmp_path / "work"
    runtime = start_failing(store, work, runtimes, ["a", "b"])
    dead_ids = runtime.view()["dead"]
    runtime.stop()
    (work / "fail").unlink()

    with WorkbenchServer(f"file:{store}") as server, httpx.Client(base_url=server.base) as client:
        body = triggers(client)
        assert body["running"] is False  # no runner in the workbench's process
        [row] = body["triggers"]
        assert (row["name"], row["kind"], row["state"], row["runtimes"]) == ("scores", "state", "idle", 0)
        assert row["trigger"] == {"type": "state", "key": "*", "group": "users"}
        assert row["deadLetters"] == 2 and row["behind"] == 0
        assert sorted(d["id"] for d in row["dead"]) == sorted(dead_ids)
        assert [(d["change"]["key"], d["attempts"], d["retry"]) for d in row["dead"]] == [
            ("a", 2, None),
            ("b", 2, None),
        ]
        assert "refused a" in row["dead"][0]["error"]
        # /dead-letters lists them as an app does: each with its kind and trigger.
        listed = client.get("/__motia/dead-letters").json()
        assert [(d["kind"], d["trigger"], d["id"]) for d in listed] == [
            ("state", "scores", d["id"]) for d in row["dead"]
        ]

        a, b = row["dead"][0]["id"], row["dead"][1]["id"]
        # A retry with no runtime running is a request, said so: nothing ran.
        r = client.post(f"/__motia/triggers/scores/dead/{a}/retry", headers=J)
        assert r.status_code == 202, r.text
        queued = r.json()
        assert queued["queued"] is True and queued["retried"] is False and queued["state"] == "requested"
        assert "no runtime runs trigger 'scores'" in queued["why"]
        assert [d["retry"] for d in triggers(client)["triggers"][0]["dead"]] == ["requested", None]
        assert handled(work) == []

        assert client.delete(f"/__motia/dead-letters/{b}", headers=J).status_code == 204
        again = client.delete(f"/__motia/triggers/scores/dead/{b}", headers=J)
        assert again.status_code == 404 and again.json()["code"] == "NOT_FOUND"
        assert client.delete("/__motia/triggers/nope/dead/x", headers=J).status_code == 404
        assert client.post(f"/__motia/triggers/scores/dead/{b}/retry", headers=J).status_code == 404
        assert client.post("/__motia/dead-letters/zz/retry", headers=J).status_code == 404
        assert [d["id"] for d in triggers(client)["triggers"][0]["dead"]] == [a]

        # The next runtime running the trigger picks the queued retry up; it succeeds and leaves the list.
        runtimes.append(runtime := Runtime(f"file:{store}", work))
        wait_until(lambda: "a" in handled(work), "the queued retry to run")
        wait_until(lambda: triggers(client)["triggers"][0]["dead"] == [], "the dead letter to leave the list")
        assert handled(work) == ["a"]  # b was dropped: never run again
        row = triggers(client)["triggers"][0]
        assert (row["state"], row["runtimes"]) == ("running", 1)
        runtime.stop()


def test_a_retry_asked_through_the_standalone_workbench_runs_in_the_running_runtime(
    tmp_path: Path, runtimes: list[Runtime]
) -> None:
    store, work = tmp_path / "store", tmp_path / "work"
    runtime = start_failing(store, work, runtimes, ["a"])
    with WorkbenchServer(f"file:{store}") as server, httpx.Client(base_url=server.base, timeout=30) as client:
        [row] = triggers(client)["triggers"]
        assert (row["state"], row["runtimes"]) == ("running", 1)
        [dead] = row["dead"]
        retry = f"/__motia/triggers/scores/dead/{dead['id']}/retry"

        # Still failing: the runtime ran it and it failed again; the letter stays.
        r = client.post(retry, headers=J)
        assert r.status_code == 200, r.text
        assert r.json() == {"retried": True, "succeeded": False, "error": "RuntimeError('refused a')"}
        assert [d["id"] for d in triggers(client)["triggers"][0]["dead"]] == [dead["id"]]
        assert [d["retry"] for d in triggers(client)["triggers"][0]["dead"]] == [None]  # its outcome was read

        (work / "fail").unlink()
        r = client.post(retry, headers=J)
        assert r.json() == {"retried": True, "succeeded": True}
        assert handled(work) == ["a"]
        assert triggers(client)["triggers"][0]["dead"] == []
        runtime.wait(lambda view: view["dead"] == [], "the runtime to forget the dead letter")
    runtime.stop()
