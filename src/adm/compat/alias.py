"""Opt-in: ``import guided_diffusion...`` resolves to ``adm.compat``'s modules.

``install()`` puts a finder first on ``sys.meta_path`` that answers for the package
``guided_diffusion`` (→ ``adm.compat``) and its modules of the same names (→ ``adm.compat.unet``,
...): the very module objects, not copies, so ``guided_diffusion.unet.ResBlock is
adm.compat.unet.ResBlock``. Nothing happens at import time; ``uninstall()`` removes the finder and
the aliases, and ``installed()`` does both around a block. A module of the original that adm does
not provide (its training code) fails to import with a message saying so.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from adm.core.errors import UsageError

PACKAGE = "guided_diffusion"
MODULES = ("dist_util", "gaussian_diffusion", "logger", "losses", "nn", "respace", "script_util", "unet")
_TRAINING = ("fp16_util", "image_datasets", "resample", "train_util")


def _target(fullname: str) -> str:
    """The adm module behind ``guided_diffusion`` or ``guided_diffusion.<name>``."""
    if fullname == PACKAGE:
        return "adm.compat"
    name = fullname[len(PACKAGE) + 1 :]
    if name in MODULES:
        return f"adm.compat.{name}"
    provided = ", ".join(MODULES)
    why = " (training is `adm train`)" if name in _TRAINING else ""
    raise ModuleNotFoundError(
        f"No module named {fullname!r}: adm.compat provides {PACKAGE}.{{{provided}}}{why}", name=fullname
    )


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``guided_diffusion[.name]`` and loads it as the existing adm module."""

    def __init__(self):
        self._own_specs: dict[str, object] = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname != PACKAGE and not fullname.startswith(PACKAGE + "."):
            return None
        _target(fullname)  # an unknown module fails here, with the list of what there is
        return importlib.util.spec_from_loader(fullname, self, is_package=fullname == PACKAGE)

    def create_module(self, spec):
        module = importlib.import_module(_target(spec.name))
        self._own_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        # importlib has just set the alias's spec on the adm module (it always does): give it
        # back its own, so the module stays adm.compat.X for reload, pickling and tracebacks.
        module.__spec__ = self._own_specs.pop(module.__spec__.name)


def _finder() -> _Finder | None:
    return next((f for f in sys.meta_path if isinstance(f, _Finder)), None)


def _aliases() -> list[str]:
    return [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]


def install() -> None:
    """From now on ``guided_diffusion`` and its modules are ``adm.compat``'s (idempotent)."""
    if _finder() is not None:
        return
    foreign = [n for n in _aliases() if not getattr(sys.modules[n], "__name__", "").startswith("adm.compat")]
    if foreign:
        raise UsageError(
            f"{foreign[0]} is already imported (the original package)",
            hint="call adm.compat.install() before anything imports guided_diffusion",
        )
    sys.meta_path.insert(0, _Finder())


def uninstall() -> None:
    """Remove the finder and the ``guided_diffusion`` aliases it made (idempotent)."""
    finder = _finder()
    if finder is not None:
        sys.meta_path.remove(finder)
    for name in _aliases():
        if getattr(sys.modules[name], "__name__", "").startswith("adm.compat"):
            del sys.modules[name]


def is_installed() -> bool:
    return _finder() is not None


@contextmanager
def installed() -> Iterator[None]:
    """The alias for the length of a block (restored to not installed afterwards, if it was not)."""
    already = is_installed()
    install()
    try:
        yield
    finally:
        if not already:
            uninstall()
