"""The guidance registry: each method by name, what it needs, and how it is built (torch-free).

A ``GuidanceSpec`` names a method, says what it needs from the run (``labels``, a ``classifier``,
a ``guide`` network, the model's ``null_label``) and how to build it: ``build(scale, interval,
context) -> Guidance`` (``adm.sampling.guidance.protocol``). The built-ins are registered here by
``"module:function"`` reference; other packages add methods under the entry-point group
``adm.guidance`` (a ``GuidanceSpec``), chosen with ``--guidance NAME=SCALE``: a plugin's method
is planned, keyed, resumed and applied exactly as a built-in one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from adm.core.errors import UsageError
from adm.core.suggest import did_you_mean

ENTRY_POINTS = "adm.guidance"
NEEDS = frozenset({"labels", "classifier", "guide", "null_label"})


@dataclass(frozen=True)
class GuidanceSpec:
    name: str
    build: str | Callable[..., Any]  # build(scale, interval, context) -> Guidance, or "module:function"
    description: str = ""
    needs: frozenset[str] = frozenset()

    def __post_init__(self):
        unknown = set(self.needs) - NEEDS
        if unknown:
            raise ValueError(f"guidance {self.name!r} needs unknown inputs {sorted(unknown)} (known: {sorted(NEEDS)})")

    @property
    def builder(self) -> Callable[..., Any]:
        if not isinstance(self.build, str):
            return self.build
        module, _, name = self.build.partition(":")
        return getattr(import_module(module), name)


BUILTIN: dict[str, GuidanceSpec] = {
    spec.name: spec
    for spec in (
        GuidanceSpec("classifier", "adm.sampling.guidance.classifier:build",
                     "a noisy classifier's gradient (Dhariwal & Nichol 2021)", frozenset({"labels", "classifier"})),
        GuidanceSpec("cfg", "adm.sampling.guidance.free:build_cfg",
                     "classifier-free: the same network without its label (Ho & Salimans 2022)",
                     frozenset({"labels", "null_label"})),
        GuidanceSpec("autoguidance", "adm.sampling.guidance.free:build_autoguidance",
                     "a weaker model of the same conditioning (Karras et al. 2024)", frozenset({"guide"})),
    )
}


@cache
def available_guidance() -> dict[str, GuidanceSpec]:
    """Built-in methods plus those installed packages register (``adm.guidance``), scanned once."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINTS):
        if ep.name in found:
            continue
        try:
            value = ep.load()
        except Exception as err:  # a broken plugin must not take the CLI down
            raise UsageError(f"guidance plugin {ep.name!r} ({ep.value}) failed to load: {err}") from None
        if not isinstance(value, GuidanceSpec):
            raise UsageError(f"entry point {ep.name!r} of group {ENTRY_POINTS} is not a GuidanceSpec")
        found[ep.name] = value if value.name == ep.name else replace(value, name=ep.name)
    return found


def get_guidance(name: str) -> GuidanceSpec:
    found = available_guidance()
    if name not in found:
        plugins = sorted(set(found) - set(BUILTIN))
        raise UsageError(f"unknown guidance {name!r}",
                         did_you_mean(name, plugins, "installed plugin methods:") if plugins else
                         "no plugin guidance is installed; the built-ins have their own options (--scale, --cfg-scale, "
                         "--autoguidance); `adm samplers` lists the methods")
    return found[name]


def guidance_option(name: str) -> str:
    """The command-line option that sets a method's scale."""
    from adm.sampling.choices import BUILTIN_GUIDANCE

    return BUILTIN_GUIDANCE.get(name, f"--guidance {name}=SCALE")
