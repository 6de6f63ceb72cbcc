"""``cm.karras_diffusion``: consistency_models' ``KarrasDenoiser`` and ``karras_sample`` over adm.

``KarrasDenoiser`` keeps the reference's constructor and reads a network through adm's model
adapter: ``EDM`` preconditioning, or ``ConsistencyBoundary`` when ``distillation`` (every
consistency model, distilled or trained), told its noise level as ``KarrasSchedule.network_time``
(250·ln σ). ``karras_sample`` runs adm's samplers on the reference's grids:

| ``sampler=`` | adm | grid |
|---|---|---|
| ``heun`` | ``heun`` (with ``s_churn`` …) | ``steps`` Karras levels, then 0 |
| ``euler`` | ``dpm++2m``, order 1 (the same step: x + (σ' − σ)·(x − x̂_0)/σ) | as heun |
| ``ancestral`` | ``dpm++2m-sde``, order 1, η = 1 (Euler ancestral's step and noise) | as heun |
| ``progdist`` | ``dpm++2m``, order 1 | ``steps + 1`` levels, ending at σ_min |
| ``onestep`` | ``cm`` | σ_max alone |
| ``multistep`` | ``cm`` | ``ts``' levels of a ``steps``-level Karras grid (``karras_index_grid``) |

``dpm`` (the reference's DPM-2-like midpoint sampler) is not provided.

**The generator.** ``generator`` is the reference's (``adm.compat.cm.random_util``, or anything with
``randn(*shape, device=)`` and ``randn_like(x)``). As in the reference, x_T is
``generator.randn(*shape, device=device) * sigma_max``, and the sampler then makes exactly the
reference's ``randn_like`` calls: one per step for heun (churned or not) and ancestral, one per
level but the last for multistep, none for euler, progdist and onestep. Where adm's sampler skips
a draw it would multiply by 0 (heun without churn, the last ancestral step) the draw is made after
it, and the one draw adm makes that the reference does not (one-step sampling re-noises by
√(σ_min² − σ_min²) = 0) is zeros, so one generator gives the reference's images call after call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from adm.core.errors import UsageError
from adm.diffusion.adapters import EDM, ConsistencyBoundary
from adm.diffusion.grids import karras_grid, karras_index_grid
from adm.diffusion.karras import KarrasSchedule
from adm.sampling.denoiser import Denoiser
from adm.sampling.registry import get_sampler

Tensor = torch.Tensor
SAMPLERS = ("heun", "euler", "ancestral", "progdist", "onestep", "multistep")


class KarrasDenoiser:
    """consistency_models' diffusion object: EDM / consistency preconditioning of a network."""

    def __init__(self, sigma_data: float = 0.5, sigma_max=80.0, sigma_min=0.002, rho=7.0, weight_schedule="karras",
                 distillation=False, loss_norm="lpips"):
        self.sigma_data = sigma_data
        self.sigma_max = sigma_max
        self.sigma_min = sigma_min
        self.weight_schedule = weight_schedule
        self.distillation = distillation
        self.loss_norm = loss_norm
        self.rho = rho
        self.num_timesteps = 40
        self.adapter = ConsistencyBoundary(sigma_data, sigma_min) if distillation else EDM(sigma_data)

    def get_snr(self, sigmas):
        return sigmas**-2

    def get_sigmas(self, sigmas):
        return sigmas

    def get_scalings(self, sigma):
        """(c_skip, c_out, c_in) of EDM preconditioning."""
        return _like(EDM(self.sigma_data).scalings(sigma), sigma)

    def get_scalings_for_boundary_condition(self, sigma):
        """(c_skip, c_out, c_in) of a consistency model: EDM's, shifted so that f(x, σ_min) = x."""
        return _like(ConsistencyBoundary(self.sigma_data, self.sigma_min).scalings(sigma), sigma)

    def denoise(self, model, x_t: Tensor, sigmas, **model_kwargs) -> tuple[Tensor, Tensor]:
        """(the network's raw output, x̂_0) for x_t = x_0 + σ·ε (``sigmas``: one per sample)."""
        sigma = _levels(sigmas, x_t)
        time = KarrasSchedule.network_time(sigma).to(device=x_t.device, dtype=torch.float32)
        model_output = model(self.adapter.network_input(x_t, sigma), time, **model_kwargs)
        mean_part, _ = self.adapter.split(model_output, x_t)
        return model_output, self.adapter.denoised(mean_part, x_t, sigma)

    def training_losses(self, *args, **kwargs):
        raise _not_training("training_losses")

    def consistency_losses(self, *args, **kwargs):
        raise _not_training("consistency_losses")

    def progdist_losses(self, *args, **kwargs):
        raise _not_training("progdist_losses")


def _not_training(name: str) -> UsageError:
    return UsageError(f"KarrasDenoiser.{name} is not provided: adm does not train EDM or consistency models",
                      "train with consistency_models' own code; sample and convert its checkpoints with adm")


def _levels(sigmas, x: Tensor) -> Tensor:
    """σ per sample, float64 on the CPU (where the adapter computes its coefficients)."""
    sigma = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    return sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma


def _like(scalings, sigma):
    """The coefficients in ``sigma``'s own type (a tensor's dtype and device, or floats)."""
    if isinstance(sigma, Tensor):
        return tuple(c.to(device=sigma.device, dtype=sigma.dtype) for c in scalings)
    return tuple(float(c) for c in scalings)


def get_sigmas_karras(n, sigma_min, sigma_max, rho=7.0, device="cpu") -> Tensor:
    """Karras et al.'s ``n`` levels from σ_max to σ_min, then 0 (float32, as the reference's)."""
    return karras_grid(KarrasSchedule(sigma_min, sigma_max, rho), n, rho=rho).float().to(device)


# --- karras_sample ------------------------------------------------------------------------------


@dataclass
class _GeneratorDraws:
    """adm's noise source over the reference's generator, making the reference sampler's ``count``
    ``randn_like`` calls: draws past ``count`` are zeros (adm multiplies them by 0), and ``finish``
    makes the ones adm skipped."""

    generator: object
    count: int
    made: int = field(default=0, init=False)

    def __call__(self, x: Tensor) -> Tensor:
        self.made += 1
        return self.generator.randn_like(x) if self.made <= self.count else torch.zeros_like(x)

    def finish(self, x: Tensor) -> None:
        for _ in range(self.count - self.made):
            self.generator.randn_like(x)


@dataclass(frozen=True)
class _Recipe:
    """How one of the reference's samplers runs on adm: the sampler, its options, the grid, the
    reference's ``randn_like`` calls, and whether the reference reports steps to ``callback``."""

    sampler: str
    options: dict
    grid: Tensor
    draws: int
    reports: bool = True


def _recipe(name, diffusion, schedule, steps, rho, ts, churn: dict) -> _Recipe:
    if not isinstance(steps, int) or steps < 1:
        raise UsageError(f"steps must be a positive integer, got {steps!r}")
    if name == "heun":
        return _Recipe("heun", churn, karras_grid(schedule, steps, rho=rho), steps)
    if name == "euler":
        return _Recipe("dpm++2m", {"order": 1}, karras_grid(schedule, steps, rho=rho), 0)
    if name == "ancestral":
        return _Recipe("dpm++2m-sde", {"order": 1, "eta": 1.0}, karras_grid(schedule, steps, rho=rho), steps)
    if name == "progdist":
        return _Recipe("dpm++2m", {"order": 1}, karras_grid(schedule, steps + 1, rho=rho)[:-1], 0)
    if name == "onestep":
        return _Recipe("cm", {}, karras_grid(schedule, 1, rho=rho), 0, reports=False)
    if name == "multistep":
        return _Recipe("cm", {}, _multistep_grid(diffusion, schedule, steps, ts), len(ts) - 1, reports=False)
    raise UsageError(f"karras_sample has no sampler {name!r} on adm", f"samplers: {', '.join(SAMPLERS)}")


def _multistep_grid(diffusion, schedule, steps: int, ts) -> Tensor:
    """The levels of the reference's ``ts`` indices into a ``steps``-level Karras grid."""
    if not ts:
        raise UsageError("sampler 'multistep' needs ts, the indices of its levels", "e.g. ts=(0, 22, 39) with steps=40")
    indices = [int(i) for i in ts]
    if indices[-1] != steps - 1:
        raise UsageError(f"ts must end at steps - 1 = {steps - 1} (sigma_min: the clean image), got {indices[-1]}",
                         "the released index lists do, e.g. ts=(0, 22, 39) with steps=40")
    # the reference places multistep levels on the diffusion's rho, not karras_sample's
    return karras_index_grid(replace(schedule, rho=diffusion.rho), indices, steps)


def _reference_callback(callback: Callable[[dict], None], x: Tensor) -> Callable[[dict], None]:
    """adm's step reports as the reference's: the state at the *start* of step i, with ``sigma_hat``."""
    start = {"x": x}

    def report(step: dict) -> None:
        callback({"x": start["x"], "i": step["i"], "sigma": step["sigma"], "sigma_hat": step["sigma"],
                  "denoised": step["denoised"]})
        start["x"] = step["x"]

    return report


def karras_sample(
    diffusion: KarrasDenoiser, model, shape: Sequence[int], steps: int, clip_denoised=True, progress=False,
    callback=None, model_kwargs=None, device=None, sigma_min=0.002, sigma_max=80, rho=7.0, sampler="heun",
    s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0, generator=None, ts=None,
) -> Tensor:
    """Samples in [-1, 1] from noise of σ_max, as consistency_models' ``karras_sample`` (module
    docstring: the samplers and how ``generator`` is drawn from). ``progress`` is accepted and
    ignored; ``callback`` gets the reference's dicts (for heun with churn, ``x`` and ``sigma_hat``
    are before the churn noise)."""
    if generator is None:
        from adm.compat.cm.random_util import get_generator

        generator = get_generator("dummy")
    schedule = KarrasSchedule(sigma_min, sigma_max, rho)
    churn = {"s_churn": s_churn, "s_tmin": s_tmin, "s_tmax": None if math.isinf(s_tmax) else s_tmax,
             "s_noise": s_noise}
    recipe = _recipe(sampler, diffusion, schedule, steps, rho, ts, churn)
    spec = get_sampler(recipe.sampler)
    options = spec.parse_options(recipe.options)
    x_T = generator.randn(*shape, device=device) * sigma_max
    denoiser = Denoiser(model, schedule, diffusion.adapter, model_kwargs or {}, clip_denoised=clip_denoised)
    draws = _GeneratorDraws(generator, recipe.draws)
    report = _reference_callback(callback, x_T) if callback is not None and recipe.reports else None
    x_0 = spec(denoiser, x_T, recipe.grid, noise=draws, callback=report, options=options)
    draws.finish(x_T)
    return x_0.clamp(-1, 1)


__all__ = ["KarrasDenoiser", "SAMPLERS", "get_sigmas_karras", "karras_sample"]
