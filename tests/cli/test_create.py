"""``motia-state create``: the template app runs as is under ``dev``, driven over HTTP."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import pytest

from ..app.devserver import DevServer
from ..helpers import require_tool
from ._cli import cli


def _eventually(probe: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.mark.parametrize("lang", ["python", "node", "ruby"])
def test_the_template_app_runs_under_dev(lang: str, tmp_path: Path) -> None:
    if lang != "python":
        require_tool({"node": "node", "ruby": "ruby"}[lang])
    made = cli("create", "shop", "--lang", lang, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["lang"] == lang
    store = f"file:{tmp_path / 'state'}"
    with DevServer(tmp_path / "shop", "--state", store) as server:
        server.start(tmp_path)
        c = server.client
        assert c.put("/stock/apple", json={"quantity": 10}).json() == {"stock": 10}
        first = c.post("/orders", json={"item": "apple", "quantity": 7})
        assert first.status_code == 201 and first.json()["id"] == "order-1"
        second = c.post("/orders", json={"item": "apple", "quantity": 7})
        assert second.json()["id"] == "order-2"

        def status(order: str) -> str | None:
            s = c.get(f"/orders/{order}").json()["status"]
            return None if s == "placed" else str(s)

        assert _eventually(lambda: status("order-1")) == "reserved"
        assert _eventually(lambda: status("order-2")) == "out-of-stock", "the check kept the stock from going below 0"
        assert c.get("/orders/order-9").status_code == 404
        assert c.post("/orders", json={"item": 3}).status_code == 400
        if importlib.util.find_spec("motia_state.triggers") is not None:
            alerts = _eventually(lambda: _alerts(store, tmp_path))
            assert alerts == {"apple": 3}
        code = server.stop()
    assert code == 0, "dev stopped by a signal exits 0"
    assert json.loads(cli("state", "get", "stock", "apple", "--state", store).stdout) == 3


def _alerts(store: str, cwd: Path) -> Any:
    return json.loads(cli("state", "get", "alerts", "low-stock", "--state", store, cwd=cwd).stdout)


def test_create_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "shop").mkdir()
    proc = cli("create", "shop", cwd=tmp_path)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert list((tmp_path / "shop").iterdir()) == []
