"""The sampler registry: each sampler with its typed options, default grid and properties.

A ``SamplerSpec`` is what a front-end needs to know about a sampler: the function (see
``adm.sampling.samplers`` for the shared signature), a pydantic model of its options (validated
here, so a typo is a one-line error naming what the sampler accepts), its default spacing, how
many network evaluations a step costs (``--steps`` counts evaluations), and whether it draws
noise. Other packages register samplers under the entry-point group ``adm.samplers``: the entry
point is a ``SamplerSpec`` (or a bare function with the shared signature and no options), and a
plugin gets exactly the powers a built-in one has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adm.core.errors import UsageError
from adm.core.suggest import did_you_mean
from adm.diffusion.spacings import SPACINGS

if TYPE_CHECKING:
    from torch import Tensor

SamplerFn = Callable[..., "Tensor"]
ENTRY_POINTS = "adm.samplers"

FinalOrder = Literal["dpm-solver", "unipc", "k-diffusion"]
# adm's default for dpm++2m, dpm++2m-sde and unipc, chosen by measurement on digits
# (docs/sampling.md, "Final-step order"); one value, so that dpm++2m-sde with η = 0 is dpm++2m.
DEFAULT_FINAL_ORDER: FinalOrder = "unipc"


class SamplerOptions(BaseModel):
    """Options of a sampler that has none; subclass it to declare some (non-finite numbers are
    refused for every subclass, as ``adm.core.validation`` refuses them for all settings)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class DDIMOptions(SamplerOptions):
    eta: float = Field(0.0, ge=0, le=1, description="noise of each step: 0 deterministic, 1 like DDPM")


FINAL_ORDER_HELP = ("which reference's rule sets the last steps' order: dpm-solver lowers it (the last step first "
                    "order) below 10 solver steps, unipc at any count, k-diffusion never; solver steps = evaluations "
                    "− 1. The default was chosen by measurement on digits (docs/sampling.md, Final-step order)")


class DPMSolverOptions(SamplerOptions):
    order: int = Field(2, ge=1, le=2, description="1: first order (DDIM-like), 2: second-order multistep")
    final_order: FinalOrder = Field(DEFAULT_FINAL_ORDER, description=FINAL_ORDER_HELP)


class SDEOptions(DPMSolverOptions):
    eta: float = Field(1.0, ge=0, description="1 solves the reverse SDE, 0 the ODE (dpm++2m)")


class HeunOptions(SamplerOptions):
    s_churn: float = Field(0.0, ge=0, description="EDM's churn: noise added before each step (0: the deterministic ODE)")
    s_tmin: float = Field(0.0, ge=0, description="churn only at sigma >= this")
    s_tmax: float | None = Field(None, ge=0, description="churn only at sigma <= this (unset: no upper limit)")
    s_noise: float = Field(1.0, gt=0, description="scale of the churn noise")


class ConsistencyOptions(SamplerOptions):
    karras_steps: int = Field(40, ge=2, description="levels of the Karras grid that --steps' indices point into "
                                                       "(consistency_models' --steps)")


class UniPCOptions(SamplerOptions):
    order: int = Field(2, ge=1, le=3, description="order of the predictor (the corrector adds one)")
    variant: Literal["bh1", "bh2"] = Field("bh2", description="B(h) = h (bh1) or e^h − 1 (bh2)")
    final_order: FinalOrder = Field(DEFAULT_FINAL_ORDER, description=FINAL_ORDER_HELP)


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler and what front-ends need to know about it.

    ``function`` is the sampler itself or, for the built-ins, a ``"module:name"`` reference
    imported on first use: listing samplers and validating their options needs no torch.
    """

    name: str
    function: SamplerFn | str
    options: type[SamplerOptions] = SamplerOptions
    description: str = ""
    spacing: str = "logsnr"  # default grid (adm.diffusion.grids.SPACINGS)
    evals_per_step: int = 1  # network evaluations per step (the final step to σ = 0 costs one)
    stochastic: bool = False  # draws fresh noise at every step
    chain_only: bool = False  # walks the model's respaced chain (ddpm, ddim)
    single_step_order: int = 1  # > 1: a single-step high-order method, fragile under strong guidance
    grid: str | None = None  # "module:function" building its own grid from --steps (see ``make_grid``)

    @property
    def steps_kind(self) -> str:
        """What its ``--steps`` mean: a respacing of the chain, its own grid's spec, or evaluations."""
        return "respacing" if self.chain_only else "own grid" if self.grid is not None else "evaluations"

    @property
    def fn(self) -> SamplerFn:
        """The sampler function (a reference imported now)."""
        return _resolve(self.function) if isinstance(self.function, str) else self.function

    def __post_init__(self):
        if self.spacing not in SPACINGS:
            raise ValueError(f"sampler {self.name!r}: unknown default spacing {self.spacing!r}")

    def parse_options(self, given: Mapping[str, Any]) -> SamplerOptions:
        """Validate options (strings from the command line are converted by their declared types)."""
        try:
            return self.options(**dict(given))
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            known = ", ".join(self.options.model_fields) or "none"
            if first["type"] == "extra_forbidden":
                raise UsageError(f"sampler {self.name} has no option {key!r}", f"its options: {known}") from None
            raise UsageError(f"bad value for sampler option {key}: {first['msg']}", f"options of {self.name}: {known}") from None

    def make_grid(self, schedule, steps: str, options: SamplerOptions, sigma_max: float | None):
        """This sampler's own grid for ``steps`` (only when ``grid`` is set)."""
        return _resolve(self.grid)(schedule, steps, options, sigma_max)

    def levels_for(self, evaluations: int) -> int:
        """Grid levels (non-zero σ) that cost at most ``evaluations`` network evaluations."""
        return max(1, (evaluations - 1) // self.evals_per_step + 1)

    def evaluations(self, levels: int) -> int:
        return (levels - 1) * self.evals_per_step + 1

    def __call__(self, denoiser, x: Tensor, sigmas: Tensor, *, noise, callback=None,
                 options: SamplerOptions | None = None) -> Tensor:
        values = (options or self.options()).model_dump()
        return self.fn(denoiser, x, sigmas, noise=noise, callback=callback, **values)


BUILTIN: dict[str, SamplerSpec] = {
    spec.name: spec
    for spec in (
        SamplerSpec("ddpm", "adm.sampling.samplers:sample_ddpm", description="ancestral sampling on the respaced chain (the original)",
                    spacing="respaced", stochastic=True, chain_only=True),
        SamplerSpec("ddim", "adm.sampling.samplers:sample_ddim", DDIMOptions, description="DDIM on the respaced chain (the original)",
                    spacing="respaced", chain_only=True),
        SamplerSpec("dpm++2m", "adm.sampling.samplers:sample_dpmpp_2m", DPMSolverOptions,
                    description="DPM-Solver++(2M): second-order multistep ODE solver"),
        SamplerSpec("dpm++2m-sde", "adm.sampling.samplers:sample_dpmpp_2m_sde", SDEOptions,
                    description="SDE-DPM-Solver++(2M): its stochastic form", stochastic=True),
        SamplerSpec("heun", "adm.sampling.samplers:sample_heun", HeunOptions,
                    description="Heun's method on Karras sigmas (2 evaluations a step), with EDM's optional churn",
                    spacing="karras", evals_per_step=2, single_step_order=2),
        SamplerSpec("cm", "adm.sampling.samplers:sample_consistency", ConsistencyOptions,
                    description="consistency models: --steps 1 (one step) or the reference's indices (0,22,39)",
                    spacing="karras", stochastic=True, grid="adm.sampling.samplers:consistency_levels"),
        SamplerSpec("unipc", "adm.sampling.unipc:sample_unipc", UniPCOptions, description="UniPC: multistep predictor-corrector"),
    )
}


@cache
def _resolve(reference: str) -> SamplerFn:
    module, _, name = reference.partition(":")
    return getattr(import_module(module), name)


def _as_spec(name: str, value: Any) -> SamplerSpec:
    if isinstance(value, SamplerSpec):
        return value if value.name == name else replace(value, name=name)
    if callable(value):
        return SamplerSpec(name, value, description=(value.__doc__ or "").strip().split("\n")[0])
    raise TypeError(f"entry point {name!r} of group {ENTRY_POINTS} is neither a SamplerSpec nor a function")


@cache
def available_samplers() -> dict[str, SamplerSpec]:
    """Built-in samplers plus those installed packages register (``adm.samplers`` entry points).

    Built-in names cannot be overridden. Scanned once per process.
    """
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINTS):
        if ep.name not in found:
            found[ep.name] = _LazySpec(ep)
    return found


class _LazySpec:
    """An entry point loaded only when its sampler is asked for (a broken plugin breaks only itself)."""

    def __init__(self, ep):
        self.ep = ep

    def load(self) -> SamplerSpec:
        try:
            return _as_spec(self.ep.name, self.ep.load())
        except Exception as err:  # a broken plugin must not take the CLI down
            raise UsageError(f"sampler plugin {self.ep.name!r} ({self.ep.value}) failed to load: {err}") from None


def get_sampler(name: str) -> SamplerSpec:
    """The sampler called ``name`` (built-in or from a plugin)."""
    found = available_samplers()
    if name not in found:
        raise UsageError(f"unknown sampler {name!r}", did_you_mean(name, sorted(found), "adm samplers"))
    spec = found[name]
    return spec.load() if isinstance(spec, _LazySpec) else spec
