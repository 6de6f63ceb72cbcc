"""The samplers: each one small function of a denoiser, x and a time grid.

Every sampler has the signature

    sampler(denoiser, x, sigmas, *, noise, callback=None, **options) -> x_0

* ``denoiser(x, sigma) -> x_0`` is ``adm.sampling.denoiser.Denoiser`` (guidance and x_0
  clipping/thresholding are already inside it);
* ``x`` are the noisy images at ``sigmas[0]`` in ADM's own scaling (x_t = √ᾱ·x_0 + √(1 − ᾱ)·ε;
  for plain sampling, standard normal noise);
* ``sigmas`` is the grid (``adm.diffusion.grids``): float64, decreasing, usually ending at 0;
* ``noise(x)`` draws standard normal noise shaped like x (per-sample generators, see
  ``adm.sampling.noise``); deterministic samplers never call it;
* ``callback`` receives ``{"i", "sigma", "sigma_next", "x", "denoised"}`` after every step, with
  x in ADM's scaling at ``sigma_next`` (the multistep solvers add ``"order"``, the step's order);
* the result is x at ``sigmas[-1]`` in ADM's scaling: the sample itself when the grid ends at 0.

The solvers run in the variance-exploding form x = x_0 + σ·ε with λ = −log σ, in which the
DPM-Solver++ and Karras et al. formulas read most simply (they are invariant to the scaling).
``ddpm`` and ddim walk the original's discrete chain instead (``adm.sampling.chain``), so they
reproduce guided-diffusion's trajectories exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from adm.diffusion.grids import consistency_grid
from adm.sampling.chain import ChainDenoiser, ddim_step, ddpm_step, iterate_steps
from adm.sampling.denoiser import Denoiser
from adm.sampling.noise import NoiseSource
from adm.sampling.registry import DEFAULT_FINAL_ORDER, FinalOrder

Tensor = torch.Tensor
Callback = Callable[[dict], None]


def report_step(callback: Callback | None, denoiser: Denoiser, i: int, sigmas: Tensor, x: Tensor, denoised: Tensor,
                **extra) -> None:
    """Tell ``callback`` about step ``i``; ``x`` (variance exploding) is handed over in the state's scaling."""
    if callback is not None:
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        callback({"i": i, "sigma": s, "sigma_next": s_next, "x": denoiser.to_state(x, s_next), "denoised": denoised,
                  **extra})


# --- the order of a multistep solver's steps -------------------------------------------------

# Each reference's rule for the last steps, as the number of solver steps below which it lowers
# their order: DPM-Solver's ``lower_order_final`` acts below 10 steps (its code; its docstring
# says 15), UniPC's at any count, k-diffusion's DPM-Solver++(2M) never lowers.
LOWER_FINAL_BELOW: dict[str, float] = {"dpm-solver": 10, "unipc": math.inf, "k-diffusion": 0}


def step_orders(sigmas: Tensor, order: int, final_order: FinalOrder) -> list[int]:
    """The order of each step of a multistep solver of ``order`` on the grid ``sigmas``.

    Counted as the references count ``steps``: the steps between non-zero levels (a step to σ = 0
    returns x̂_0, the references' ``denoise_to_zero``, and is first order). Step k (from 1) of n
    has at most k points to use (the warm-up every reference shares); where ``final_order``'s
    reference lowers the last steps for n steps, it also uses at most n + 1 − k (the last step
    first order), which is what makes very few steps stable.
    """
    n = int((sigmas[1:] > 0).sum())
    cool_down = n < LOWER_FINAL_BELOW[final_order]
    return [min(order, k, n + 1 - k) if cool_down else min(order, k) for k in range(1, n + 1)] + [1] * (len(sigmas) - 1 - n)


# --- the original's discrete chain ---------------------------------------------------------


def _walk_chain(step, chain: ChainDenoiser, x: Tensor, sigmas: Tensor, callback, **step_kwargs) -> Tensor:
    for i, (_, out) in enumerate(iterate_steps(step, chain, x, cond_kwargs={}, **step_kwargs)):
        x = out.sample
        if callback is not None:
            callback({"i": i, "sigma": float(sigmas[i]), "sigma_next": float(sigmas[i + 1]), "x": x,
                      "denoised": out.pred_xstart})
    return x


def sample_ddpm(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseSource,
                callback: Callback | None = None) -> Tensor:
    """Ancestral sampling (DDPM) on the respaced chain, guided by the mean shift, as the original."""
    chain, cond_fn = denoiser.chain(sigmas)
    return _walk_chain(ddpm_step, chain, x, sigmas, callback, noise=noise, cond_fn=cond_fn)


def sample_ddim(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseSource,
                callback: Callback | None = None, eta: float = 0.0) -> Tensor:
    """DDIM on the respaced chain (deterministic for eta = 0), guided by the score shift, as the original."""
    chain, cond_fn = denoiser.chain(sigmas)
    return _walk_chain(ddim_step, chain, x, sigmas, callback, noise=noise, cond_fn=cond_fn, eta=eta)


# --- solvers in continuous time ------------------------------------------------------------


def _log_step(sigma: float, sigma_next: float) -> float:
    """h = λ_next − λ for λ = −log σ (positive: the SNR grows towards the data)."""
    return math.log(sigma) - math.log(sigma_next)


def sample_dpmpp_2m(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseSource | None = None,
                    callback: Callback | None = None, order: int = 2,
                    final_order: FinalOrder = DEFAULT_FINAL_ORDER) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): multistep, one evaluation per step.

    x_{i+1} = (σ_{i+1}/σ_i)·x_i − (e^{−h} − 1)·D with D = x̂_0 (first order) or
    D = (1 + 1/(2r))·x̂_0 − (1/(2r))·x̂_0^{prev}, r = h_{prev}/h. The step to σ = 0 returns x̂_0.
    ``final_order`` names the reference whose rule sets the last steps' order (``step_orders``).
    It is ``dpm++2m-sde`` with η = 0.
    """
    return _dpmpp_2m(denoiser, x, sigmas, None, callback, 0.0, order, final_order)


def sample_dpmpp_2m_sde(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseSource,
                        callback: Callback | None = None, eta: float = 1.0, order: int = 2,
                        final_order: FinalOrder = DEFAULT_FINAL_ORDER) -> Tensor:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022, §4 / Appendix): the stochastic form of 2M.

    With η = 1 it solves the reverse SDE: x_{i+1} = (σ_{i+1}/σ_i)·e^{−h}·x_i + (1 − e^{−2h})·x̂_0
    + ½(1 − e^{−2h})/r·(x̂_0 − x̂_0^{prev}) + σ_{i+1}·√(1 − e^{−2h})·z. η interpolates towards the
    ODE (η = 0 is 2M); in general e^{−h} → e^{−ηh}, (1 − e^{−2h}) → (1 − e^{−(1+η)h}) and the noise
    has variance 1 − e^{−2ηh}.
    """
    return _dpmpp_2m(denoiser, x, sigmas, noise, callback, eta, order, final_order)


def _dpmpp_2m(denoiser, x: Tensor, sigmas: Tensor, noise, callback, eta: float, order: int,
              final_order: FinalOrder) -> Tensor:
    x = denoiser.from_state(x, sigmas[0])
    orders = step_orders(sigmas, order, final_order)
    previous: tuple[Tensor, float] | None = None  # (x̂_0, h) of the previous step
    with torch.no_grad():
        for i in range(len(sigmas) - 1):
            s, s_next = float(sigmas[i]), float(sigmas[i + 1])
            denoised = denoiser(x, s)
            if s_next == 0:
                x = denoised
            else:
                h = _log_step(s, s_next)
                eta_h = eta * h
                data_coef = -math.expm1(-h - eta_h)
                x = (s_next / s) * math.exp(-eta_h) * x + data_coef * denoised
                if orders[i] == 2:
                    r = previous[1] / h
                    x = x + (0.5 * data_coef / r) * (denoised - previous[0])
                if eta > 0:
                    x = x + (s_next * math.sqrt(-math.expm1(-2 * eta_h))) * noise(x)
                previous = (denoised, h)
            report_step(callback, denoiser, i, sigmas, x, denoised, order=orders[i])
    return denoiser.to_state(x, sigmas[-1])


def sample_heun(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseSource | None = None,
                callback: Callback | None = None, s_churn: float = 0.0, s_tmin: float = 0.0,
                s_tmax: float | None = None, s_noise: float = 1.0) -> Tensor:
    """Heun's second-order method on the probability-flow ODE dx/dσ = (x − x̂_0)/σ (Karras et al.
    2022, Algorithm 2): two evaluations per step, one for the final step to σ = 0 (Euler).

    With ``s_churn`` > 0 each step whose σ lies in [s_tmin, s_tmax] first adds noise up to
    σ̂ = σ·(1 + γ), γ = min(s_churn/(levels), √2 − 1), scaled by ``s_noise`` (EDM's stochastic
    sampler, as consistency_models' teachers run it); with 0 it is deterministic.
    """
    x = denoiser.from_state(x, sigmas[0])
    gamma_max = min(s_churn / (len(sigmas) - 1), math.sqrt(2) - 1) if s_churn > 0 else 0.0
    with torch.no_grad():
        for i in range(len(sigmas) - 1):
            s, s_next = float(sigmas[i]), float(sigmas[i + 1])
            if gamma_max > 0:
                z = noise(x)  # drawn at every step of a churned run, as the reference draws it
                if s_tmin <= s and (s_tmax is None or s <= s_tmax):
                    s_hat = s * (1 + gamma_max)
                    x = x + z * s_noise * math.sqrt(s_hat**2 - s**2)
                    s = s_hat
            denoised = denoiser(x, s)
            slope = (x - denoised) / s
            euler = x + (s_next - s) * slope
            if s_next == 0:
                x = euler
            else:
                slope_next = (euler - denoiser(euler, s_next)) / s_next
                x = x + (s_next - s) * 0.5 * (slope + slope_next)
            report_step(callback, denoiser, i, sigmas, x, denoised)
    return denoiser.to_state(x, sigmas[-1])


def consistency_levels(schedule, steps: str, options, sigma_max: float | None) -> Tensor:
    """The ``cm`` sampler's grid: ``--steps`` read by ``consistency_grid`` on ``karras_steps`` levels."""
    return consistency_grid(schedule, steps, options.karras_steps, sigma_max)


def sample_consistency(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseSource,
                       callback: Callback | None = None, karras_steps: int = 40) -> Tensor:
    """Consistency sampling (Song et al. 2023, Algorithm 1): x̂_0 = f(x, σ_i) at each level, then
    re-noised to the next, x = x̂_0 + √(σ_{i+1}² − σ_min²)·z; the next level is clipped to σ_min,
    so the step to the grid's 0 returns x̂_0. One level is one-step generation.

    The levels are the grid's (``karras_index_grid``: consistency_models' ``--ts`` indices into a
    Karras grid of ``karras_steps`` levels); ``karras_steps`` itself only shapes that grid.
    """
    x = denoiser.from_state(x, sigmas[0])
    sigma_min = denoiser.schedule.sigma_min
    with torch.no_grad():
        for i in range(len(sigmas) - 1):
            s, s_next = float(sigmas[i]), max(float(sigmas[i + 1]), sigma_min)
            denoised = denoiser(x, s)
            x = denoised + noise(x) * math.sqrt(max(s_next**2 - sigma_min**2, 0.0))
            report_step(callback, denoiser, i, sigmas, x, denoised)
    return denoiser.to_state(x, sigmas[-1])
