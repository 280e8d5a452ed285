"""A regular (non-editable) install in a fresh venv finds the runners."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import anyio
import filelock
import msgspec
import pytest

from ..helpers import require_tool

ROOT = Path(__file__).resolve().parents[2]


def sniffio_or_none() -> object:
    try:
        import sniffio

        return sniffio
    except ImportError:
        return None


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_a_step(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("motia_state-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # The dependencies come from this interpreter's site-packages (no
    # download; a plain path line processes none of that folder's .pth
    # files, so an editable motia_state there stays invisible): the package
    # itself exists only in the wheel.
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = {str(Path(m.__file__).parent.parent) for m in (msgspec, anyio, filelock, sniffio_or_none()) if m is not None}
    (Path(site) / "motia_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True)
    step = tmp_path / "hello.step.py"
    step.write_text("async def handler(data, ctx):\n    return await ctx.state.increment(ctx.trace_id, 'n', data)\n")
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(step: Path, data: str) -> object:
        out = subprocess.run(
            [str(env_dir / "bin" / "motia-state"), "run", str(step), "--data", data],
            cwd=work,
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout)

    assert run(step, "41") == 41
    # The other runners and the Redis script ship in the wheel too.
    for ext, source in (
        ("js", "exports.handler = async (data, ctx) => ctx.state.increment(ctx.traceId, 'n', data)\n"),
        ("rb", "def handler(data, ctx)\n  ctx.state.increment(ctx.trace_id, 'n', data)\nend\n"),
    ):
        require_tool({"js": "node", "rb": "ruby"}[ext])
        polyglot = tmp_path / f"hello.step.{ext}"
        polyglot.write_text(source)
        assert run(polyglot, "2") == 2
    lua = subprocess.run(
        [str(py), "-c", "from motia_state.adapters.redis.program import SOURCE; print(len(SOURCE))"],
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
    )
    assert int(lua.stdout) > 1000
    where = subprocess.run(
        [str(py), "-c", "from motia_state.runtime import bindings_dir; print(bindings_dir())"],
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert where.startswith(str(env_dir)) and where.endswith("_bindings")


def test_the_python_shim_parses_as_python_3_8() -> None:
    # The shim runs under whatever Python a user points it at, down to 3.8.
    import ast

    from motia_state.runtime.runners import bindings_dir

    files = sorted((bindings_dir() / "python").rglob("*.py"))
    assert len(files) >= 6
    for path in files:
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 8))
