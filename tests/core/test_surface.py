"""Error codes and classes, messages, and the public surface (``__all__``, camelCase aliases)."""

from __future__ import annotations

import inspect
import pickle
import subprocess
import sys
from typing import Any

import pytest

import motia_state as ms
from motia_state.errors import CODES, error_for_code


def test_error_classes_match_codes_and_builtin_bases() -> None:
    assert issubclass(ms.TypeMismatchError, TypeError)
    assert issubclass(ms.InvalidArgumentError, ValueError)
    assert issubclass(ms.TimeoutStateError, TimeoutError)
    assert set(CODES) == {
        "INVALID_ARGUMENT", "TYPE_MISMATCH", "CONFLICT", "LIMIT_EXCEEDED", "UNAVAILABLE",
        "NOT_FOUND", "TIMEOUT", "STEP_FAILED", "UPDATE_FAILED", "CURSOR_EXPIRED", "CORRUPT", "INTERNAL",
    }  # fmt: skip
    for code in CODES:
        err = error_for_code(code, "m", extra=1)
        assert err.code == code and isinstance(err, ms.StateError)
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is type(err) and again.details == {"extra": 1}


async def test_error_messages_name_what_was_wrong(state: Any) -> None:
    with pytest.raises(ms.InvalidArgumentError, match="delta must be a finite number, got bool"):
        await state.increment("g", "k", True)
    with pytest.raises(ms.InvalidArgumentError, match="key must be a non-empty string, got an empty string"):
        await state.set("g", "", 1)
    with pytest.raises(ms.InvalidArgumentError, match="field: expected a non-empty string, got an empty string"):
        await state.set_field("g", "k", "", 1)
    result = await state.transaction(
        "g",
        [
            {"type": "set", "key": "a", "value": 1},
            {"type": "set", "key": "a", "value": 1},
            {"type": "setField", "key": "k", "field": 3, "value": 1},
        ],
    )
    assert result.failed_index == 2 and result.code == "INVALID_ARGUMENT"
    assert result.error is not None and "$.operations[2].field" in result.error


async def test_closed_adapter_refuses_operations() -> None:
    async with ms.StateManager() as manager:
        await manager.set("g", "k", 1)
    with pytest.raises(ms.UnavailableError):
        await manager.get("g", "k")


def test_public_all_matches_exports() -> None:
    exported = {
        name
        for name in dir(ms)
        if (not name.startswith("_") or name == "__version__") and not inspect.ismodule(getattr(ms, name))
    }
    assert set(ms.__all__) == exported


def test_camel_case_aliases_exist() -> None:
    for name in ("getGroup", "compareAndSwap", "setField", "deleteField", "atomicUpdate"):
        assert callable(getattr(ms.StateManager, name))
        assert callable(getattr(ms.StateAdapter, name))


async def test_adapter_camel_case_aliases_call_the_adapters_own_methods() -> None:
    adapter = ms.MemoryStateAdapter()
    assert await adapter.compareAndSwap("g", "k", None, {"a": 1}) is True
    assert await adapter.setField("g", "k", "b", 2) == {"a": 1, "b": 2}
    assert await adapter.deleteField("g", "k", "a") == {"b": 2}
    assert await adapter.getGroup("g") == [{"b": 2}]
    with pytest.warns(DeprecationWarning):
        assert await adapter.atomicUpdate("g", "n", lambda v: 1) == 1


def test_the_package_modules_are_attributes_after_a_plain_import() -> None:
    # The names are imported on first use; the modules that held them were
    # attributes of the package after ``import motia_state``, and still are.
    code = (
        "import motia_state, motia_state.app as app\n"
        "assert motia_state.errors.StateError is motia_state.StateError\n"
        "assert motia_state.adapters.file.FileStateAdapter is motia_state.FileStateAdapter\n"
        "assert motia_state.records.Change is motia_state.Change\n"
        "assert app.config.parse_step_config is app.parse_step_config\n"
        "for missing in ('nope', '_nope'):\n"
        "    assert not hasattr(motia_state, missing) and not hasattr(app, missing)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
