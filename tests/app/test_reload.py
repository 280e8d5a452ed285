"""Reloading an app while one of its step files is broken: that file keeps its last good config, the rest moves on."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import motia_state as ms
from motia_state.app import App

from ..helpers import require_tool

ROUTE = """
config = {{"name": "{name}", "triggers": [{{"type": "api", "method": "GET", "path": "/{path}"}}]}}

def handler(req, ctx):
    return {{"step": "{name}", "version": {version}}}
"""
BROKEN = {
    "py": 'config = {"name": "B", "triggers": [\n',
    "js": "exports.config = { name: 'B', triggers: [ }\n",
    "rb": 'CONFIG = { name: "B", triggers: [ }\n',
}


def route(name: str, path: str, version: int = 1) -> str:
    return ROUTE.format(name=name, path=path, version=version)


@pytest.mark.parametrize("lang", ["py", "js", "rb"])
async def test_a_broken_step_file_does_not_hold_back_the_changes_beside_it(tmp_path: Path, lang: str) -> None:
    require_tool({"py": "python3", "js": "node", "rb": "ruby"}[lang])
    (tmp_path / "a.step.py").write_text(route("A", "a"))
    (tmp_path / "b.step.py").write_text(route("B", "b"))
    async with App.from_directory(tmp_path, state=ms.MemoryStateAdapter()) as app:
        transport = httpx.ASGITransport(app=app.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            assert (await client.get("/b")).json() == {"step": "B", "version": 1}
            # B moves to a new file, half written (a syntax error in its language), while C is added and A changes.
            (tmp_path / "b.step.py").unlink()
            (tmp_path / f"b2.step.{lang}").write_text(BROKEN[lang])
            (tmp_path / "c.step.py").write_text(route("C", "c"))
            (tmp_path / "a.step.py").write_text(route("A", "a2", version=2))
            registry = await app.reload()
            assert [e.file for e in registry.errors] == [f"b2.step.{lang}"]
            assert "does not load" in str(registry.errors[0])
            assert (await client.get("/c")).json() == {"step": "C", "version": 1}
            assert (await client.get("/a2")).json() == {"step": "A", "version": 2}
            assert (await client.get("/a")).status_code == 404
            # B's last good config came from a file that is gone: it is not kept.
            assert (await client.get("/b")).status_code == 404
            assert sorted(app.steps) == ["A", "C"]

            # A file that fails to load keeps its own last good config (its route stays;
            # its invocations fail until it is fixed), and a step removed beside it leaves.
            (tmp_path / f"b2.step.{lang}").unlink()
            (tmp_path / "b.step.py").write_text(route("B", "b", version=3))
            assert not (await app.reload()).errors
            assert (await client.get("/b")).json() == {"step": "B", "version": 3}
            (tmp_path / "b.step.py").write_text(BROKEN["py"])
            (tmp_path / "c.step.py").unlink()
            assert [e.file for e in (await app.reload()).errors] == ["b.step.py"]
            assert (await client.get("/c")).status_code == 404
            r = await client.get("/b")
            assert r.status_code == 500 and r.json()["code"] == "STEP_FAILED"
            assert sorted(app.steps) == ["A", "B"]


async def test_a_kept_config_that_clashes_with_a_new_one_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.step.py").write_text(route("A", "a"))
    async with App.from_directory(tmp_path, state=ms.MemoryStateAdapter()) as app:
        before = app.registry
        (tmp_path / "a.step.py").write_text(BROKEN["py"])
        (tmp_path / "other.step.py").write_text(route("A", "other"))  # A's name, while A's file keeps it
        registry = await app.reload()
        assert registry.errors and app.registry is before
        assert sorted(app.steps) == ["A"] and app.steps["A"].path.name == "a.step.py"
