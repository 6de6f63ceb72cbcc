"""The registry of named presets and downloadable artifacts, filled from entry points.

A plugin is a callable registered under the entry-point group ``adm.presets``; it receives the
registry and adds to it::

    # pyproject.toml of a third-party package
    [project.entry-points."adm.presets"]
    mymodels = "mypackage.adm_presets:register"

    # mypackage/adm_presets.py
    def register(registry):
        registry.add_artifact(Artifact(name="my-64", url="https://.../my64.pt", filename="my64.pt"))
        registry.add_preset(Preset(name="my64", ...))

adm's own presets register the same way (``adm.presets.builtin:register``), so there is one path
for everybody. Nothing is loaded at import time: ``default_registry()`` builds the registry on first
use and caches it for the process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from adm.core.errors import UsageError
from adm.core.suggest import did_you_mean
from adm.presets.types import Artifact, FlagSet, Preset, TrainKind, TrainPreset, flag_set
from adm.spec.flags import (
    ClassifierFlags,
    ModelFlags,
    SuperResFlags,
    parse_flags,
    parse_model_flags,
    split_flag_string,
)

ENTRY_POINT_GROUP = "adm.presets"


class Registry:
    """Named presets and artifacts; names are unique across plugins."""

    def __init__(self) -> None:
        self._presets: dict[str, Preset] = {}
        self._artifacts: dict[str, Artifact] = {}
        self._training: dict[tuple[TrainKind, str], TrainPreset] = {}
        self.plugin_errors: list[str] = []

    def add_preset(self, preset: Preset) -> None:
        if preset.name in self._presets:
            raise ValueError(f"preset {preset.name!r} is registered twice")
        self._presets[preset.name] = preset

    def add_artifact(self, artifact: Artifact) -> None:
        if artifact.name in self._artifacts:
            raise ValueError(f"artifact {artifact.name!r} is registered twice")
        self._artifacts[artifact.name] = artifact

    def add_training_preset(self, preset: TrainPreset) -> None:
        key = (preset.kind, preset.name)
        if key in self._training:
            raise ValueError(f"training preset {preset.name!r} ({preset.kind}) is registered twice")
        self._training[key] = preset

    def training_presets(self, kind: TrainKind) -> dict[str, TrainPreset]:
        return {name: p for (k, name), p in self._training.items() if k == kind}

    @property
    def all_training_presets(self) -> list[TrainPreset]:
        """Every registered training preset (of every kind), in registration order."""
        return list(self._training.values())

    def training_presets_named(self, name: str) -> dict[TrainKind, TrainPreset]:
        """The registered training presets called ``name``, by kind (diffusion, classifier, ...)."""
        return {kind: p for (kind, n), p in self._training.items() if n == name}

    def lookup(self, name: str) -> tuple[Preset | None, dict[TrainKind, TrainPreset]]:
        """What ``name`` means: a released preset, training presets, or both (``adm presets NAME``).

        A name nobody registered is a one-line error suggesting close names of either sort.
        """
        training = self.training_presets_named(name)
        if name not in self._presets and not training:
            known = {*self._presets, *(n for _, n in self._training)}
            raise UsageError(f"unknown preset {name!r}", did_you_mean(name, sorted(known), "adm presets"))
        return self._presets.get(name), training

    def training_preset(self, name: str, kind: TrainKind, flags: FlagSet | None = None) -> TrainPreset:
        """A training preset; a released preset without one gets its flags and default values.

        ``flags`` is the flag set the task of ``kind`` trains (``adm.training.tasks``): a released
        preset serves a model-flag task with its model, a classifier task only when it has a classifier.
        """
        if (kind, name) in self._training:
            return self._training[(kind, name)]
        classifier = flag_set(kind, flags) == "classifier"
        released = self._presets.get(name)
        if released is not None and (not classifier or released.classifier_flags is not None):
            return TrainPreset(name=name, kind=kind, released=name, unknown=("all training values",))
        known = set(self.training_presets(kind)) | {
            n for n, p in self._presets.items() if not classifier or p.classifier_flags is not None
        }
        what = "training preset" if kind == "diffusion" else f"{kind} training preset"
        raise UsageError(f"unknown {what} {name!r}", did_you_mean(name, sorted(known), "adm presets"))

    def network_flags(self, preset: TrainPreset, flags: FlagSet | None = None) -> ModelFlags | SuperResFlags | ClassifierFlags:
        """The network a training preset trains: its own flags, or its released preset's with its
        ``changes`` (``flags``: the flag set of its task, as for ``training_preset``)."""
        classifier = flag_set(preset.kind, flags) == "classifier"
        if preset.flags is not None:
            if classifier:
                return parse_flags(ClassifierFlags, preset.flags)
            return parse_model_flags(preset.flags)
        released = self.preset(preset.released or preset.name)
        if classifier and released.classifier_flags is None:
            raise UsageError(f"preset {released.name!r} has no classifier")
        network = released.classifier_flags if classifier else released.model_flags
        return network.replace(**split_flag_string(preset.changes)) if preset.changes else network

    @property
    def presets(self) -> dict[str, Preset]:
        return dict(self._presets)

    @property
    def artifacts(self) -> dict[str, Artifact]:
        return dict(self._artifacts)

    def preset(self, name: str) -> Preset:
        if name not in self._presets:
            raise UsageError(f"unknown preset {name!r}", did_you_mean(name, self._presets, "adm presets"))
        return self._presets[name]

    def artifact(self, name: str) -> Artifact:
        if name not in self._artifacts:
            raise UsageError(f"unknown artifact {name!r}", did_you_mean(name, self._artifacts, "adm download --list"))
        return self._artifacts[name]

    def load_plugins(self, plugins: Iterable[tuple[str, Callable[[Registry], None]]]) -> Registry:
        """Run each plugin's ``register``; a broken third-party plugin is recorded, not fatal."""
        for name, register in plugins:
            try:
                register(self)
            except Exception as err:  # a broken plugin must not take the CLI down
                self.plugin_errors.append(f"plugin {name!r} failed: {err}")
        return self


BUILTIN = EntryPoint(name="builtin", value="adm.presets.builtin:register", group=ENTRY_POINT_GROUP)  # as pyproject.toml


def installed_plugins() -> list[tuple[str, Callable[[Registry], None]]]:
    """Entry points of group ``adm.presets``, adm's built-ins first so names are stable.

    A source tree that was never pip-installed has no entry points: adm's own is added then, and
    loaded the way every entry point is (by name, so this module imports no preset module).
    """
    eps = list(entry_points(group=ENTRY_POINT_GROUP))
    if all(ep.value != BUILTIN.value for ep in eps):
        eps.append(BUILTIN)
    eps.sort(key=lambda ep: (ep.value != BUILTIN.value, ep.name))
    loaded = []
    for ep in eps:
        try:
            loaded.append((ep.name, ep.load()))
        except Exception as err:
            loaded.append((ep.name, _failing(err)))
    return loaded


def _failing(err: Exception) -> Callable[[Registry], None]:
    def register(_: Registry) -> None:
        raise err

    return register


@cache
def default_registry() -> Registry:
    """The registry of every installed plugin (built once per process)."""
    return Registry().load_plugins(installed_plugins())
