"""Packages whose names are imported on first use (PEP 562), so the command line starts fast."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    namespace: dict[str, Any], sources: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of the package whose ``globals()`` is ``namespace``.

    Its name ``n`` lives in its module ``sources[n]`` (relative to the
    package), and is imported from there on first use, then kept in the
    namespace, so later uses cost what an eager import's would. Any other
    name that is one of the package's submodules is that submodule,
    imported on first use with every module of ``sources``, as an eager
    import of the names made them all attributes (``motia_state.adapters.file``).
    """
    package: str = namespace["__name__"]
    public: list[str] = namespace["__all__"]

    def __getattr__(name: str) -> Any:
        source = sources.get(name)
        if source is None:
            # A submodule (``motia_state.errors`` after ``import motia_state``) was an
            # attribute while the package imported its names eagerly: it still is.
            if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
                for module in set(sources.values()):  # what the eager imports loaded, subpackages' modules too
                    importlib.import_module(module, package)
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(public))

    return __getattr__, __dir__
