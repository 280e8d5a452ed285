"""Fixtures of the core tests."""

from __future__ import annotations

from typing import Any

import pytest

import motia_state as ms


@pytest.fixture(params=["bare", "managed"])
def state(request: pytest.FixtureRequest) -> Any:
    """A memory adapter, bare or behind a StateManager."""
    adapter = ms.MemoryStateAdapter()
    return adapter if request.param == "bare" else ms.StateManager(adapter)
