"""``codemod`` and ``bindings`` from the command line, and the bindings importable by name in steps."""

from __future__ import annotations

import json
from pathlib import Path

from ..helpers import require_tool
from ._cli import cli

STEP_JS = """// atomicUpdate in a comment stays
exports.handler = async (data, ctx) => {
  const note = "ctx.state.atomicUpdate( in a string stays";
  return ctx.state.atomicUpdate("g", "n", (v) => (v || 0) + 1);
};
"""


def test_codemod_rewrites_and_check_reports(tmp_path: Path) -> None:
    step = tmp_path / "steps" / "a.step.js"
    step.parent.mkdir()
    step.write_text(STEP_JS)
    check = cli("codemod", "--check", str(tmp_path / "steps"))
    assert check.returncode == 1, check.stderr
    assert json.loads(check.stdout)["changed"] == [str(step)]
    assert step.read_text() == STEP_JS, "--check changes nothing"
    done = cli("codemod", str(tmp_path / "steps"))
    assert done.returncode == 0, done.stderr
    text = step.read_text()
    assert 'ctx.state.update("g"' in text
    assert "// atomicUpdate in a comment stays" in text and '"ctx.state.atomicUpdate( in a string stays"' in text
    assert cli("codemod", "--check", str(step)).returncode == 0


def test_codemod_reports_read_modify_write(tmp_path: Path) -> None:
    step = tmp_path / "b.step.py"
    step.write_text(
        "async def handler(data, ctx):\n"
        "    n = await ctx.state.get('g', 'n')\n"
        "    await ctx.state.set('g', 'n', n + 1)\n"
    )
    proc = cli("codemod", str(step))
    assert proc.returncode == 0
    findings = json.loads(proc.stdout)["findings"]
    assert findings and findings[0]["line"] == 3


def test_codemod_on_a_missing_path_is_bad_input(tmp_path: Path) -> None:
    assert cli("codemod", str(tmp_path / "nope")).returncode == 2


def test_codemod_reports_an_undecodable_file_and_still_does_the_others(tmp_path: Path) -> None:
    bad = tmp_path / "bad.step.py"
    data = b"async def handler(data, ctx):\n    return await ctx.state.atomic_update('g', 'n', f)  # \xff\n"
    bad.write_bytes(data)
    good = tmp_path / "good.step.js"
    good.write_text(STEP_JS)
    for args in (("--check",), ()):
        proc = cli("codemod", *args, str(tmp_path))
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        report = json.loads(proc.stdout)
        assert report["errors"] == [
            {
                "path": str(bad),
                "message": report["errors"][0]["message"],
                "code": "INVALID_ARGUMENT",
            }
        ]
        assert "at byte offset 87 (line 2)" in report["errors"][0]["message"]
        assert f"error [INVALID_ARGUMENT]: {bad}: cannot decode as utf-8 at byte offset 87" in proc.stderr
        assert report["changed"] == [str(good)]
        assert bad.read_bytes() == data
    assert 'ctx.state.update("g"' in good.read_text()


def test_bindings_prints_where_they_are() -> None:
    proc = cli("bindings", "--lang", "node")
    assert proc.returncode == 0
    assert (Path(proc.stdout.strip()) / "motia-state" / "index.js").is_file()
    assert (Path(cli("bindings", "--lang", "ruby").stdout.strip()) / "motia_state.rb").is_file()
    doc = json.loads(cli("bindings").stdout)
    assert Path(doc["node"]["types"]).is_file()


def test_node_steps_require_the_binding_by_name(tmp_path: Path) -> None:
    require_tool("node")
    step = tmp_path / "n.step.js"
    step.write_text(
        "const ms = require('motia-state');\n"
        "exports.handler = async (data, ctx) => {\n"
        "  try { await ctx.state.increment('g', 's', 1); } catch (e) { return [e instanceof ms.StateError, e.code]; }\n"
        "};\n"
    )
    proc = cli("run", str(step), "--state", f"file:{tmp_path / 's'}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) is None
    cli("state", "set", "g", "s", '"text"', "--state", f"file:{tmp_path / 's'}")
    proc = cli("run", str(step), "--state", f"file:{tmp_path / 's'}")
    assert json.loads(proc.stdout) == [True, "TYPE_MISMATCH"]


def test_ruby_steps_require_the_binding_by_name(tmp_path: Path) -> None:
    require_tool("ruby")
    step = tmp_path / "r.step.rb"
    step.write_text(
        'require "motia_state"\n'
        "def handler(data, ctx)\n"
        "  ctx.state.increment('g', 's', 1)\n"
        "  nil\n"
        "rescue MotiaState::Error => e\n"
        "  [e.class.name, e.code]\n"
        "end\n"
    )
    store = f"file:{tmp_path / 's'}"
    cli("state", "set", "g", "s", '"text"', "--state", store)
    proc = cli("run", str(step), "--state", store)
    assert proc.returncode == 0, proc.stderr
    name, code = json.loads(proc.stdout)
    assert code == "TYPE_MISMATCH" and name.startswith("MotiaState::")


def test_an_apps_own_node_modules_copy_wins(tmp_path: Path) -> None:
    require_tool("node")
    own = tmp_path / "node_modules" / "motia-state"
    own.mkdir(parents=True)
    (own / "index.js").write_text("module.exports = { mine: true };\n")
    (tmp_path / "s.step.js").write_text("exports.handler = async () => require('motia-state').mine === true;\n")
    proc = cli("run", str(tmp_path / "s.step.js"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) is True


def test_bench_measures_each_operation_and_leaves_the_store_clean(tmp_path: Path) -> None:
    store = f"file:{tmp_path / 's'}"
    cli("state", "set", "mine", "k", "1", "--state", store)
    proc = cli("bench", "-n", "200", "--rounds", "1", "--state", store)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["operation"] for r in rows][:2] == ["increment", "update"]
    assert all(r["opsPerSecond"] > 0 for r in rows)
    assert json.loads(cli("state", "ls", "--state", store).stdout) == [{"group": "mine", "keys": 1}]
