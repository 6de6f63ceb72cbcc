"""The registry of training tasks: what a run dir's ``kind`` means (torch-free).

A training *task* is one objective: diffusion models (``adm train``), noisy classifiers (``adm
train-classifier``), or one a package adds. A ``TaskSpec`` says everything the shared machinery
needs to know about it, so that a new objective is one task module, its config and one entry
here; the run rule (``adm.training.runs``), the run dir's ``config.json`` (``adm.training.rundir``),
training presets and the sampling commands' run-kind checks (``adm.api.sources``) all consult it:

* ``kind``: the name written into ``config.json`` (and ``RunRequest.kind``);
* ``config``: its config class (a ``CommonTrainConfig`` subclass, or a ``"module:Class"``
  reference); the run rule validates the layered values into it;
* ``fit``: ``fit(run: ResolvedRun, *, dist=None, on_progress=None, resume=False) -> TrainResult``
  (or a ``"module:function"`` reference), which trains the resolved run into ``run.run_dir``,
  usually through ``adm.training.engine.run_task`` (resume, DDP, precision, EMA, signals and
  checkpoints are the engine's, shared by every kind);
* ``flags``: the network flag set its runs record and read back, ``"model"`` (``model_flags``:
  ``ModelFlags`` / ``SuperResFlags``) or ``"classifier"`` (``classifier_flags``); ``noise``: it
  also records the noising process (``diffusion_flags``), as the classifier does;
* ``generator``: its weights are a generator that ``adm sample --run-dir`` / ``adm edit
  --run-dir`` (and ``--guide-model``) can sample with the recorded model flags;
* ``losses``: the named losses its config's ``loss`` field chooses among (``"module:name"``
  references or callables, the first one the default); what a loss is called with is the task's
  own business (the diffusion task's: ``adm.diffusion.losses.ChainLoss``);
* ``document``: ``document(run) -> dict``, the ``config.json`` its ``fit`` will write (what
  ``--dry-run`` prints); None: the resolved flags with the data's class count filled in;
* ``sampling``: ``sampling(doc) -> {sampler: {option: value}}``, the sampler options a run of this
  kind is sampled with unless the user gives them (a distillation: ``cm``'s ``karras_steps``, the
  grid it was distilled on); None: the samplers' own defaults;
* ``description`` (one line) and ``command`` (what trains it, for messages).

Other packages register tasks under the entry-point group ``adm.training_tasks``; the entry
point is a ``TaskSpec`` and its name is the kind. Built-in kinds cannot be overridden, and the
group is scanned (once per process) only when a kind that is not built in is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from adm.core.errors import UsageError
from adm.core.suggest import did_you_mean
from adm.presets.types import FlagSet
from adm.training.config import (
    ClassifierTrainConfig,
    CommonTrainConfig,
    TrainConfig,
    make_config,
    option_name,
)

FitFn = Callable[..., Any]  # fit(run: ResolvedRun, *, dist=None, on_progress=None, resume=False) -> TrainResult
DocumentFn = Callable[[Any], dict[str, Any]]  # document(run: ResolvedRun) -> the config.json dict
SamplingFn = Callable[[dict[str, Any]], dict[str, dict[str, Any]]]  # sampling(config.json) -> options per sampler
ENTRY_POINTS = "adm.training_tasks"
FLAG_KEYS: dict[str, str] = {"model": "model_flags", "classifier": "classifier_flags"}  # config.json key per flag set
NOISE_KEY = "diffusion_flags"


@cache
def _resolve(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(import_module(module), name)


def _resolved(value: Any) -> Any:
    """A ``"module:name"`` reference imported now (built-ins stay torch-free until they run)."""
    return _resolve(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class TaskSpec:
    """One training objective and what the run bookkeeping needs to know about it (module docstring)."""

    kind: str
    config: type[CommonTrainConfig] | str
    fit: FitFn | str
    flags: FlagSet = "model"
    noise: bool = False
    generator: bool = False
    description: str = ""
    command: str = ""
    losses: Mapping[str, Callable[..., Any] | str] = field(default_factory=dict)
    document: DocumentFn | str | None = None
    sampling: SamplingFn | str | None = None

    def __post_init__(self):
        if self.flags not in FLAG_KEYS:
            raise ValueError(f"training task {self.kind!r}: flags must be one of {sorted(FLAG_KEYS)}, got {self.flags!r}")
        if self.generator and self.flags != "model":
            raise ValueError(f"training task {self.kind!r}: only a task recording model flags can yield a generator")

    @property
    def config_class(self) -> type[CommonTrainConfig]:
        return _resolved(self.config)

    @property
    def fit_fn(self) -> FitFn:
        return _resolved(self.fit)

    @property
    def document_fn(self) -> DocumentFn | None:
        return None if self.document is None else _resolved(self.document)

    def sampler_defaults(self, doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The options each sampler takes by default for a run of this kind (``doc``: its config.json)."""
        return dict(_resolved(self.sampling)(doc)) if self.sampling is not None else {}

    @property
    def flags_key(self) -> str:
        """Where ``config.json`` records the network's flags."""
        return FLAG_KEYS[self.flags]

    @property
    def trains(self) -> str:
        """How messages name the task: ``classifier run (adm train-classifier)``."""
        return f"{self.kind} run ({self.command})" if self.command else f"{self.kind} run"

    def make_config(self, values: dict[str, Any]) -> CommonTrainConfig:
        """``values`` validated into the task's config, its ``loss`` (when it has one) among ``losses``."""
        config = make_config(self.config_class, values)
        if self.losses and "loss" in type(config).model_fields:
            self._check_loss(config.loss)
        return config

    def loss(self, name: str) -> Callable[..., Any]:
        """The loss called ``name`` (imported now); a name the task has not is a one-line error."""
        self._check_loss(name)
        return _resolved(self.losses[name])

    def _check_loss(self, name: str) -> None:
        if name not in self.losses:
            raise UsageError(f"{self.kind} training has no loss {name!r} ({option_name('loss')})",
                             did_you_mean(name, self.losses, "its losses:"))


BUILTIN: dict[str, TaskSpec] = {
    spec.kind: spec
    for spec in (
        TaskSpec("diffusion", TrainConfig, "adm.training.diffusion:fit_run", generator=True, command="adm train",
                 description="a diffusion model or upsampler: the ADM objective on the original's chain",
                 losses={"ddpm": "adm.diffusion.losses:ChainLoss"}, document="adm.training.diffusion:run_document"),
        TaskSpec("classifier", ClassifierTrainConfig, "adm.training.classifier:fit_run", flags="classifier", noise=True,
                 command="adm train-classifier",
                 description="the noisy classifier that guides sampling: cross-entropy on noised images"),
        TaskSpec("distillation", "adm.training.distill_config:DistillConfig", "adm.training.distill:fit_run",
                 generator=True, command="adm distill",
                 description="a consistency model distilled from a teacher adm samples (1-2 step sampling with cm)",
                 losses={"pseudo-huber": "adm.training.distill:pseudo_huber", "l2": "adm.training.distill:l2"},
                 sampling="adm.training.distill:sampling_defaults"),
    )
}


class _LazyTask:
    """An entry point loaded only when its kind is asked for (a broken plugin breaks only itself)."""

    def __init__(self, ep):
        self.ep = ep

    def load(self) -> TaskSpec:
        try:
            value = self.ep.load()
            if not isinstance(value, TaskSpec):
                raise TypeError(f"it is a {type(value).__name__}, not a TaskSpec")
        except Exception as err:  # a broken plugin must not take the CLI down
            raise UsageError(f"training task plugin {self.ep.name!r} ({self.ep.value}) failed to load: {err}") from None
        return value if value.kind == self.ep.name else replace(value, kind=self.ep.name)


@cache
def _plugins() -> dict[str, _LazyTask]:
    """The ``adm.training_tasks`` entry points not shadowing a built-in kind (scanned once)."""
    return {ep.name: _LazyTask(ep) for ep in entry_points(group=ENTRY_POINTS) if ep.name not in BUILTIN}


@cache
def _loaded(kind: str) -> TaskSpec:
    return _plugins()[kind].load()


def task_kinds() -> list[str]:
    """Every kind a run dir may have: the built-ins, then the installed plugins' (sorted)."""
    return [*BUILTIN, *sorted(_plugins())]


def find_task(kind: Any) -> TaskSpec | None:
    """The task of ``kind`` (built-in or from a plugin), or None when no installed task has it."""
    if not isinstance(kind, str):
        return None
    if kind in BUILTIN:
        return BUILTIN[kind]
    return _loaded(kind) if kind in _plugins() else None


def get_task(kind: str) -> TaskSpec:
    """The task of ``kind``; an unknown one is a one-line error naming the kinds there are."""
    spec = find_task(kind)
    if spec is None:
        raise UsageError(f"unknown training task {kind!r}", unknown_kind_hint(kind))
    return spec


def unknown_kind_hint(kind: Any) -> str:
    """Close kinds, else the installed ones (a package adds others under ``adm.training_tasks``)."""
    return did_you_mean(str(kind), task_kinds(), "known kinds:")
