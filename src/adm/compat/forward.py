"""A compat package that stands for another codebase's package: its names, imported on first use.

``adm.compat.cm`` and ``adm.compat.improved`` each map the original's names to the submodule that
defines them (``homes``), their own modules (``submodules``) and guided-diffusion's modules that
the codebases share unchanged (``shared``, which are ``adm.compat``'s own).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def forwarding(package: str, homes: Mapping[str, str], submodules: Iterable[str], shared: Iterable[str]
               ) -> tuple[Callable[[str], str], Callable[[str], Any], Callable[[], list[str]]]:
    """``module_path``, ``__getattr__`` and ``__dir__`` for ``package``."""
    submodules, shared = tuple(submodules), tuple(shared)

    def module_path(name: str) -> str:
        """The adm module that stands for the original's ``<package>.<name>``."""
        return f"adm.compat.{name}" if name in shared else f"{package}.{name}"

    def __getattr__(name: str) -> Any:
        if name in homes:
            value = getattr(importlib.import_module(module_path(homes[name])), name)
        elif name in submodules or name in shared:
            value = importlib.import_module(module_path(name))
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *homes, *submodules, *shared})

    return module_path, __getattr__, __dir__
