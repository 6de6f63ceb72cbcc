"""What a user chooses about sampling, declared once.

``SamplingChoices`` holds the fields both sides of the API boundary share: the API's
``SamplingOptions`` extends it with what only the front end knows (the preset's defaults are
filled in later, ``eta`` as a shorthand, ``compile``), and ``SamplerSettings`` is the same choices
resolved (nothing left unset but the guidance interval, which the plan decides). Each field's
type, range, validation and help text live here only. No torch: ``adm --help`` builds its options
from these fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from adm.core.errors import UsageError
from adm.sampling.registry import BUILTIN

Precision = Literal["fp32", "fp16", "bf16"]
DEFAULT_SOLVER_STEPS = "20"  # network evaluations for a solver when nothing else says

_CHAINS = "/".join(name for name, spec in BUILTIN.items() if spec.chain_only)  # the built-ins, from the registry
_SOLVERS = ", ".join(name for name, spec in BUILTIN.items() if spec.steps_kind == "evaluations")
_OWN = "/".join(name for name, spec in BUILTIN.items() if spec.steps_kind == "own grid")
SAMPLER_HELP = f"{', '.join(BUILTIN)} or a plugin's (`adm samplers`); unset: the preset's"
STEPS_HELP = (
    f"solvers ({_SOLVERS}): network evaluations, e.g. 20; {_CHAINS}: a respacing, "
    f'"250", "ddim25", "10,15,20"; {_OWN}: evaluations or the reference\'s indices into its Karras grid, "1", '
    f'"0,22,39"; when unset: the flags\' --timestep_respacing ({_CHAINS}), else the preset\'s '
    f"(same kind of sampler), else every step of the model's chain ({_CHAINS}, as the original), 1 ({_OWN}) or "
    f"{DEFAULT_SOLVER_STEPS}"
)


# the built-in guidance methods and the option that sets each one's scale
BUILTIN_GUIDANCE = {"classifier": "--scale", "cfg": "--cfg-scale", "autoguidance": "--autoguidance"}


def check_interval(interval: tuple[float, float]) -> tuple[float, float]:
    """A guidance interval (lo, hi) in fractions of the schedule's T: 0 <= lo <= hi <= 1."""
    lo, hi = interval
    if not 0.0 <= lo <= hi <= 1.0:
        raise UsageError(f"the guidance interval must satisfy 0 <= lo <= hi <= 1, got {lo:g},{hi:g}")
    return interval


class SamplingChoices(BaseModel):
    """Sampler, steps, grid, guidance, x̂₀ correction, precision; None: not chosen."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sampler: str | None = Field(None, description=SAMPLER_HELP)
    steps: str | None = Field(None, description=STEPS_HELP)
    spacing: str | None = Field(None, description="where the steps lie: respaced (the original's chain), time, "
                                "logsnr or karras; unset: the sampler's")
    scale: float | None = Field(None, ge=0, description="classifier scale; unset: the preset's (0: no classifier)")
    guidance_interval: tuple[float, float] | None = Field(None, description="apply the classifier only where "
                                                          "LO <= t/T <= HI; it is not run elsewhere")
    cfg_scale: float | None = Field(None, ge=0, description="classifier-free guidance w: conditional + w·(conditional "
                                    "- unconditional); 0: conditional, unguided; needs a model trained with "
                                    "--label-dropout; unset: the preset's")
    cfg_interval: tuple[float, float] | None = Field(None, description="apply classifier-free guidance only where "
                                                     "LO <= t/T <= HI (the unconditional pass is skipped elsewhere)")
    autoguidance: float | None = Field(None, ge=0, description="autoguidance w: model + w·(model - guide model); 0: "
                                       "unguided (Karras et al.'s w is this + 1); needs --guide-model; unset: the preset's")
    autoguidance_interval: tuple[float, float] | None = Field(None, description="apply autoguidance only where "
                                                              "LO <= t/T <= HI")
    guidance: dict[str, float] | None = Field(None, description="a plugin's guidance method at a scale, NAME=SCALE "
                                              "(`adm samplers` lists the installed methods)")
    threshold: float | None = Field(None, gt=0.5, le=1.0, description="dynamic thresholding of x0 at this quantile "
                                    "(e.g. 0.995) instead of clipping; helps strong guidance")
    clip_denoised: bool | None = Field(None, description="clamp the x0 estimate to [-1, 1]; unset: the preset's, "
                                       "else on, as the original")
    precision: Precision | None = Field(None, description="fp32, bf16 or fp16; unset: fp16 on CUDA for models "
                                        "released with use_fp16, else fp32 (on CPUs with native bf16, bf16 is the fast "
                                        "choice for ImageNet-size networks: docs/performance.md)")

    @field_validator("steps", mode="before")
    @classmethod
    def _steps_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("guidance_interval", "cfg_interval", "autoguidance_interval")
    @classmethod
    def _interval(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if value is None else check_interval(value)

    @field_validator("guidance")
    @classmethod
    def _plugin_guidance(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for name, scale in (value or {}).items():
            if name in BUILTIN_GUIDANCE:
                raise ValueError(f"{name} has its own option ({BUILTIN_GUIDANCE[name]}): use it instead of --guidance")
            if scale < 0:
                raise ValueError(f"the scale of guidance {name} must be >= 0, got {scale:g}")
        return value
