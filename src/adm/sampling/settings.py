"""How to sample, as a typed settings object, and the plan it resolves to on a model's schedule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import Field, model_validator

from adm.core.errors import UsageError
from adm.core.validation import validated
from adm.diffusion.grids import make_grid
from adm.diffusion.karras import Schedule
from adm.sampling.choices import DEFAULT_SOLVER_STEPS, SamplingChoices
from adm.sampling.registry import SamplerOptions, SamplerSpec, available_samplers, get_sampler

RESOLVED = {"sampler": "ddpm", "scale": 0.0, "cfg_scale": 0.0, "autoguidance": 0.0, "clip_denoised": True,
            "precision": "fp32"}  # what unset choices mean here
STRONG_GUIDANCE = 4.0  # classifier scales from which single-step high-order solvers are warned about
SCORE_SHIFT_CHAIN = "ddim"  # the original's guided DDIM, whose score shift diverges above the schedule's start


class SamplerSettings(SamplingChoices):
    """How to sample: the choices (``adm.sampling.choices``) resolved, plus the sampler's options.

    ``steps`` is a respacing spec for ``--spacing respaced`` (``"250"``, ``"ddim25"``) and a number
    of network evaluations otherwise; None means the caller's default. ``spacing`` None means the
    sampler's own default. ``guidance_interval`` (lo, hi) limits the classifier to lo ≤ t/T ≤ hi;
    None means the whole trajectory, except that guided ``ddim`` skips the levels above the
    schedule's start (``default_interval``). ``threshold`` is the quantile of dynamic
    thresholding (None: plain clipping, if ``clip_denoised``). The other choices left unset take
    ``RESOLVED``.
    """

    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _resolved(cls, values: Any) -> Any:
        if isinstance(values, dict):
            values = {**values, **{k: v for k, v in RESOLVED.items() if values.get(k) is None}}
        return values

    def methods(self) -> tuple[tuple[str, float, tuple[float, float]], ...]:
        """The guidance methods this run applies, as (name, scale, interval): those with a scale > 0.

        The one place that decides which guidance a run has; the plan, the API and the samplers ask
        it (``guided``, ``uses``).
        """
        chosen = [("classifier", self.scale, self.guidance_interval or (0.0, 1.0)),
                  ("cfg", self.cfg_scale, self.cfg_interval or (0.0, 1.0)),
                  ("autoguidance", self.autoguidance, self.autoguidance_interval or (0.0, 1.0)),
                  *((name, scale, (0.0, 1.0)) for name, scale in sorted((self.guidance or {}).items()))]
        return tuple(method for method in chosen if method[1] > 0)

    @property
    def guided(self) -> bool:
        """Whether any guidance method is applied."""
        return bool(self.methods())

    def uses(self, need: str) -> bool:
        """Whether a method of this run needs ``need`` (labels, classifier, guide, null_label)."""
        from adm.sampling.guidance.registry import get_guidance

        return any(need in get_guidance(name).needs for name, _, _ in self.methods())

    @classmethod
    def make(cls, **values: Any) -> SamplerSettings:
        """Validate at the edge: a bad value is a one-line error naming the option."""
        return validated(cls, values)

    def plan(self, schedule: Schedule, *, max_timestep: float | None = None) -> SamplingPlan:
        """The sampler, its validated options and the grid on ``schedule`` (done once per run)."""
        spec = get_sampler(self.sampler)
        options = spec.parse_options(self.options)
        spacing = self.spacing or spec.spacing
        if spec.chain_only and not schedule.discrete:
            works = ", ".join(name for name, s in available_samplers().items() if not getattr(s, "chain_only", False))
            raise UsageError(f"{spec.name} walks a discrete Gaussian chain, and this model ({schedule.describe()}) has none",
                             f"use one of: {works}")
        if spacing == "respaced" and not schedule.discrete:
            raise UsageError("--spacing respaced needs a discrete chain of timesteps", "use --spacing karras, logsnr or time")
        if spec.chain_only and spacing != "respaced":
            raise UsageError(f"{spec.name} walks the model's respaced chain", "drop --spacing or use a solver such as dpm++2m")
        if spec.grid is not None:
            if self.spacing is not None:
                raise UsageError(f"{spec.name} takes its levels from --steps, not --spacing", "drop --spacing")
            top = None if max_timestep is None else float(schedule.sigma_at(max_timestep))
            sigmas = spec.make_grid(schedule, self.steps or "1", options, top)
            return SamplingPlan(self.model_copy(update={"guidance_interval": self.guidance_interval or (0.0, 1.0)}),
                                spec, options, spacing, sigmas, [], [])
        steps = self.steps or (str(schedule.num_steps) if spacing == "respaced" else DEFAULT_SOLVER_STEPS)
        warnings: list[str] = []
        if spacing != "respaced":  # a count of evaluations → of grid levels
            if not steps.strip().isdigit() or int(steps) < 1:
                raise UsageError(f"--steps {steps!r}: {spec.name} takes a number of network evaluations (1 or more), "
                                 "e.g. 20", "respacings such as ddim25 or 10,15,20 are for --sampler ddpm or ddim")
            levels = spec.levels_for(int(steps))
            warnings += self._too_many_levels(spec, schedule, steps, levels)
            steps = str(levels)
        sigmas = make_grid(schedule, spacing, steps, max_timestep=max_timestep)
        if spec.single_step_order > 1 and self.scale >= STRONG_GUIDANCE and self.threshold is None:
            warnings.append(
                f"{spec.name} is a single-step high-order solver; at classifier scale {self.scale:g} such solvers "
                "are known to degrade: consider --threshold 0.995 or a multistep sampler (dpm++2m, unipc)"
            )
        interval, note = self.default_interval(spec, schedule, sigmas)
        settings = self if interval == self.guidance_interval else self.model_copy(update={"guidance_interval": interval})
        return SamplingPlan(settings, spec, options, spacing, sigmas, warnings, [note] if note else [])

    @staticmethod
    def _too_many_levels(spec: SamplerSpec, schedule: Schedule, steps: str, levels: int) -> list[str]:
        """A solver asked for more levels than the model has timesteps: legal, but only slower."""
        if levels <= schedule.num_steps or not schedule.discrete:
            return []
        return [f"--steps {steps} gives {spec.name} {levels} noise levels, more than the {schedule.num_steps} timesteps "
                "the model was trained on: the extra evaluations cost time without adding accuracy; "
                f"use --steps {spec.evaluations(schedule.num_steps)} or fewer"]

    def default_interval(self, spec: SamplerSpec, schedule: Schedule,
                         sigmas: torch.Tensor) -> tuple[tuple[float, float], str | None]:
        """The guidance interval to use, and a note when it is not the one asked for.

        A given interval is used as it is (``0,1`` is the original's exact path). Unset, the
        classifier guides the whole trajectory, except in guided ``ddim`` on a chain whose top
        lies above the schedule's start (t = 999 of a cosine schedule, √ᾱ ≈ 5e-5): there the
        original's score shift re-derives x_0 from the shifted ε without clipping it again and
        divides the shift by √ᾱ, which turns the samples into noise. The classifier then starts
        at the schedule's start instead (docs/sampling.md has the measurements).
        """
        if self.guidance_interval is not None:
            return self.guidance_interval, None
        top = float(schedule.tau_at(sigmas[0]))
        if self.scale <= 0 or spec.name != SCORE_SHIFT_CHAIN or top <= schedule.start_timestep + 1e-6:
            return (0.0, 1.0), None
        hi = schedule.start_timestep / schedule.num_steps
        return (0.0, hi), (
            f"guided {spec.name} skips the classifier above t/T {hi:g} (timesteps over {schedule.start_timestep}): at "
            "the top of this schedule the original's guided DDIM turns samples into noise; "
            "--guidance-interval 0,1 runs the original exactly"
        )

    def key(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class SamplingPlan:
    """Settings resolved against a schedule: what every batch of a run reuses."""

    settings: SamplerSettings
    spec: SamplerSpec
    options: SamplerOptions
    spacing: str
    sigmas: torch.Tensor  # the grid: float64, decreasing
    warnings: list[str] = field(default_factory=list)  # something the user may want to change
    notes: list[str] = field(default_factory=list)  # a default chosen for the user, said once

    @property
    def guided(self) -> bool:
        return self.settings.guided

    def needs_labels(self, class_cond: bool) -> bool:
        """Labels are needed by a class-conditional network and by guidance towards a class."""
        return class_cond or self.settings.uses("labels")

    @property
    def evaluations(self) -> int:
        """Network evaluations per sample (what --steps counts)."""
        levels = int((self.sigmas > 0).sum())
        return self.spec.evaluations(levels)

    def key(self) -> dict[str, Any]:
        """Everything about the sampler that changes the images."""
        return {
            **self.settings.key(), "options": self.options.model_dump(mode="json"), "spacing": self.spacing,
            "grid": [float(s) for s in self.sigmas], "evaluations": self.evaluations,
        }
