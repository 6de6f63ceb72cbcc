"""Names a package exports but imports only on first use, so that importing it stays cheap.

``adm --help`` must start without torch, yet ``adm.sampling``, ``adm.training`` and
``adm.evaluation`` export names from modules that need it. Each of those packages declares which
submodule defines each name and gets its module-level ``__getattr__``/``__dir__`` from here::

    __getattr__, __dir__ = lazy_exports(__name__, {"Denoiser": "denoiser", ...})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``where`` maps each exported name to the
    submodule (relative to ``package``) that defines it. A name is imported once, then cached as an
    ordinary module attribute."""
    names = sorted(where)

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__
