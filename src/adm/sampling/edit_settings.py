"""How to edit (``adm edit``'s own options) as a typed settings object. No torch here: the CLI
builds its options from it when `adm` starts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from adm.core.errors import UsageError

if TYPE_CHECKING:
    from adm.sampling.settings import SamplingPlan


class EditSettings(BaseModel):
    """How to edit; validated at the edge, part of the run's key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strength: float = Field(0.6, gt=0.0, le=1.0, description="start at network time strength·(T − 1), at most the schedule's start; 1 (from pure noise) by default with a mask")
    invert: bool = Field(False, description="start from the DDIM inversion of the input, not fresh noise")
    inpaint: Literal["x0", "repaint"] = Field("x0", description="how masked edits keep the known pixels")
    jumps: int = Field(1, ge=1, description="repaint: passes over each stretch of jump_length steps")
    jump_length: int = Field(10, ge=1, description="repaint: steps per stretch")
    invert_iterations: int = Field(1, ge=0, le=10, description="with --invert: fixed-point refinements of each "
                                   "inversion step (0: plain DDIM inversion; each costs one evaluation per step)")

    def max_timestep(self, num_steps: int) -> float:
        return self.strength * (num_steps - 1)

    def check(self, plan: SamplingPlan, masked: bool) -> None:
        spec = plan.spec
        if self.invert and spec.name != "ddim":
            raise UsageError(f"--invert inverts with DDIM; regenerate with --sampler ddim, not {spec.name}",
                             "inversion needs the deterministic DDIM path back")
        if self.invert and plan.options.model_dump().get("eta", 0.0) != 0.0:
            raise UsageError("--invert needs eta 0 (a deterministic path)", "drop --eta / --sampler-opt eta")
        if self.inpaint == "repaint" and spec.name != "ddpm":
            raise UsageError(f"--inpaint repaint resamples the ancestral chain: use --sampler ddpm, not {spec.name}",
                             "or --inpaint x0, which works with every sampler")
        if (self.jumps > 1 or self.inpaint == "repaint") and not masked:
            raise UsageError("--inpaint repaint / --jumps need a --mask")
