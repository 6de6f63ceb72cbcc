"""Opt-in: ``import guided_diffusion...`` (and ``improved_diffusion...``, ``cm...``) resolves to adm.

``install()`` puts a finder first on ``sys.meta_path`` that answers for three packages and their
modules: ``guided_diffusion`` (→ ``adm.compat``), improved-diffusion's ``improved_diffusion`` (→
``adm.compat.improved``) and consistency_models' ``cm`` (→ ``adm.compat.cm``); each
``<package>.<name>`` is the very adm module, not a copy, so ``guided_diffusion.unet.ResBlock is
adm.compat.unet.ResBlock``. Nothing happens at import time; ``uninstall()`` removes the finder and
the aliases, and ``installed()`` does both around a block. A module of an original that adm does
not provide (its training code) fails to import with a message saying so.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from adm.core.errors import UsageError


@dataclass(frozen=True)
class AliasedPackage:
    """An original package adm stands in for: its adm package and the modules provided."""

    target: str
    modules: tuple[str, ...]
    training: tuple[str, ...]  # the original's training modules, not provided (training is `adm train`)

    def module(self, name: str) -> str:
        """The adm module behind the original's module ``name`` (the package's ``module_path``)."""
        if self.target == "adm.compat":
            return f"adm.compat.{name}"
        return importlib.import_module(self.target).module_path(name)


_TRAINING = ("fp16_util", "image_datasets", "resample", "train_util")
PACKAGES = {
    "guided_diffusion": AliasedPackage(
        "adm.compat", ("dist_util", "gaussian_diffusion", "logger", "losses", "nn", "respace", "script_util", "unet"),
        _TRAINING,
    ),
    "improved_diffusion": AliasedPackage(
        "adm.compat.improved",
        ("dist_util", "gaussian_diffusion", "logger", "losses", "nn", "respace", "script_util", "unet"), _TRAINING,
    ),
    "cm": AliasedPackage(
        "adm.compat.cm",
        ("dist_util", "karras_diffusion", "logger", "losses", "nn", "random_util", "script_util", "unet"), _TRAINING,
    ),
}
PACKAGE = "guided_diffusion"  # the first of them
MODULES = PACKAGES[PACKAGE].modules


def _package_of(fullname: str) -> str | None:
    top = fullname.partition(".")[0]
    return top if top in PACKAGES else None


def _target(fullname: str) -> str:
    """The adm module behind ``<package>`` or ``<package>.<name>``."""
    top, _, name = fullname.partition(".")
    package = PACKAGES[top]
    if not name:
        return package.target
    if name in package.modules:
        return package.module(name)
    provided = ", ".join(package.modules)
    why = " (training is `adm train`)" if name in package.training else ""
    raise ModuleNotFoundError(
        f"No module named {fullname!r}: {package.target} provides {top}.{{{provided}}}{why}", name=fullname
    )


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``<package>[.name]`` and loads it as the existing adm module."""

    def __init__(self):
        self._own_specs: dict[str, object] = {}

    def find_spec(self, fullname, path=None, target=None):
        if _package_of(fullname) is None:
            return None
        _target(fullname)  # an unknown module fails here, with the list of what there is
        return importlib.util.spec_from_loader(fullname, self, is_package="." not in fullname)

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
    return [name for name in sys.modules if _package_of(name) is not None]


def _is_ours(name: str) -> bool:
    return getattr(sys.modules[name], "__name__", "").startswith("adm.compat")


def install() -> None:
    """From now on the three packages and their modules are adm's (idempotent)."""
    if _finder() is not None:
        return
    foreign = [n for n in _aliases() if not _is_ours(n)]
    if foreign:
        top = foreign[0].partition(".")[0]
        raise UsageError(
            f"{foreign[0]} is already imported (the original package)",
            hint=f"call adm.compat.install() before anything imports {top}",
        )
    sys.meta_path.insert(0, _Finder())


def uninstall() -> None:
    """Remove the finder and the aliases it made (idempotent)."""
    finder = _finder()
    if finder is not None:
        sys.meta_path.remove(finder)
    for name in _aliases():
        if _is_ours(name):
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
