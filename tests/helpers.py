"""Shared test helpers: tools that CI must have, and a fresh-state RPC method."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

import motia_state as ms
from motia_state.rpc import CallContext, HandlerTable

from .conformance import limits_kwargs

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """Path of ``name``; skip without it locally, fail without it on CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if ON_CI:
            pytest.fail(f"{message} (CI=true: a missing tool is a failure, not a skip)")
        pytest.skip(message)
    return path


def reset_handlers(manager: ms.StateManager) -> HandlerTable:
    """An orchestrator method ``test.reset``: fresh state with the given limits."""
    table = HandlerTable()

    async def reset(args: dict[str, Any], ctx: CallContext) -> None:
        limits = limits_kwargs({"limits": args.get("limits") or {}})
        manager.adapter = ms.MemoryStateAdapter(limits=ms.Limits(**limits))

    table.register("test.reset", Any, reset)
    return table
