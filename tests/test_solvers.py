"""The solvers on a problem with a closed-form answer: Gaussian data and its optimal denoiser.

For x_0 ~ N(μ, s²) the optimal denoiser is D(x, σ) = μ + s²/(s² + σ²)·(x − μ), and the
probability-flow ODE has the exact solution x(σ) − μ = (x(σ₀) − μ)·√((s² + σ²)/(s² + σ₀²)).
A solver of order p has a global error that shrinks like (steps)^−p; a reverse-SDE solver with
the exact denoiser samples N(μ, s²) itself. Also: the order of the multistep solvers' last steps
follows each reference's rule on request, and samplers that draw noise must be given its source.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from adm.core.errors import UsageError
from adm.diffusion.adapters import EpsilonVP
from adm.diffusion.continuous import NoiseSchedule, per_sample, vp_scale
from adm.diffusion.grids import respaced_grid
from adm.diffusion.process import ModelVarType
from adm.sampling import BUILTIN, Denoiser, PerSampleNoise, ddim_step, ddpm_step, get_sampler
from adm.sampling.samplers import sample_ddim, sample_ddpm, sample_dpmpp_2m_sde

MU, S = 0.3, 0.5
SIGMA_MAX, SIGMA_MIN = 80.0, 0.05


class OptimalDenoiser:
    """The exact x_0 estimate of Gaussian data N(MU, S²), with a VP model's state scaling."""

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = float(torch.as_tensor(sigma).reshape(-1)[0])
        return MU + S**2 / (S**2 + sigma**2) * (x - MU)

    def to_state(self, x, sigma):
        return x * per_sample(vp_scale(sigma), x)

    def from_state(self, x, sigma):
        return x / per_sample(vp_scale(sigma), x)


optimal_denoiser = OptimalDenoiser()


def exact(x_start_ve: torch.Tensor, sigma_end: float) -> torch.Tensor:
    return MU + (x_start_ve - MU) * math.sqrt((S**2 + sigma_end**2) / (S**2 + SIGMA_MAX**2))


def logsnr_levels(n: int) -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(SIGMA_MAX), math.log(SIGMA_MIN), n, dtype=torch.float64))


def seeded_noise(x: torch.Tensor) -> PerSampleNoise:
    return PerSampleNoise.from_seeds(range(len(x)))


def solve(name: str, levels: torch.Tensor, x_ve: torch.Tensor, callback=None, **options) -> torch.Tensor:
    spec = get_sampler(name)
    x = optimal_denoiser.to_state(x_ve, levels[0])
    out = spec(optimal_denoiser, x, levels, noise=seeded_noise(x), callback=callback, options=spec.parse_options(options))
    return optimal_denoiser.from_state(out, levels[-1])


def observed_order(name: str, **options) -> float:
    x_ve = torch.linspace(-3, 3, 64, dtype=torch.float64).view(64, 1, 1, 1) * SIGMA_MAX
    errors = []
    counts = (12, 24, 48, 96)
    for n in counts:
        got = solve(name, logsnr_levels(n), x_ve, **options)
        errors.append(float((got - exact(x_ve, SIGMA_MIN)).abs().max()))
    slopes = [math.log(errors[i] / errors[i + 1]) / math.log(counts[i + 1] / counts[i]) for i in range(len(counts) - 1)]
    return slopes[-1]


@pytest.mark.parametrize(
    "name, options, order",
    [
        ("dpm++2m", {}, 2),
        ("dpm++2m", {"order": 1}, 1),
        ("dpm++2m-sde", {"eta": 0.0}, 2),  # η = 0 is the ODE solver
        ("heun", {}, 2),
        # UniC raises the predictor's order by one; measured with every step at full order (UniPC's
        # own rule lowers the last step at any count, which is not the method's asymptotic order)
        ("unipc", {"order": 1, "final_order": "k-diffusion"}, 2),
        ("unipc", {"order": 2, "final_order": "k-diffusion"}, 3),
    ],
)
def test_solvers_converge_at_their_order(name, options, order):
    assert observed_order(name, **options) == pytest.approx(order, abs=0.35)


def test_sde_with_eta_zero_is_the_ode_solver():
    x_ve = torch.randn(8, 1, 2, 2, dtype=torch.float64) * SIGMA_MAX
    levels = logsnr_levels(10)
    torch.testing.assert_close(solve("dpm++2m-sde", levels, x_ve, eta=0.0), solve("dpm++2m", levels, x_ve))


def test_reverse_sde_samples_the_data_distribution():
    generator = torch.Generator().manual_seed(0)
    x_T = torch.randn(20000, 1, 1, 1, dtype=torch.float64, generator=generator)
    levels = torch.cat([logsnr_levels(60), torch.zeros(1, dtype=torch.float64)])

    def noise(x):
        return torch.randn(x.shape, dtype=x.dtype, generator=generator)

    spec = get_sampler("dpm++2m-sde")
    out = spec(optimal_denoiser, optimal_denoiser.to_state(x_T * SIGMA_MAX, levels[0]), levels, noise=noise)
    assert float(out.mean()) == pytest.approx(MU, abs=0.02)
    assert float(out.std()) == pytest.approx(S, rel=0.03)


def test_a_grid_ending_at_zero_returns_the_denoised_image():
    x_ve = torch.randn(4, 1, 2, 2, dtype=torch.float64) * SIGMA_MAX
    levels = torch.cat([logsnr_levels(8), torch.zeros(1, dtype=torch.float64)])
    for name in ("dpm++2m", "heun", "unipc"):
        steps = []
        spec = get_sampler(name)
        x = optimal_denoiser.to_state(x_ve, levels[0])
        out = spec(optimal_denoiser, x, levels, noise=seeded_noise(x), callback=steps.append)
        assert steps[-1]["sigma_next"] == 0.0
        torch.testing.assert_close(out, steps[-1]["x"])


# --- the last steps' order: each reference's rule ---------------------------------------------
# Written from the references' documented behaviour. "steps" is the references' count: the solver
# steps between the grid's non-zero levels (the step to σ = 0 is their `denoise_to_zero`).


def dpm_solver_orders(steps: int, order: int) -> list[int]:
    """DPM-Solver (`DPM_Solver.sample`, method="multistep", lower_order_final=True): the first
    order − 1 steps warm up at orders 1, 2, …; every later step uses `order`, except that with
    fewer than 10 steps step k uses min(order, steps + 1 − k)."""
    warm_up = list(range(1, order))
    rest = range(order, steps + 1)
    return warm_up + [min(order, steps + 1 - k) if steps < 10 else order for k in rest]


def unipc_orders(steps: int, order: int) -> list[int]:
    """UniPC (`UniPC.sample`, lower_order_final=True): the same warm-up; then min(order, steps + 1 − k)
    for step k at any number of steps."""
    return list(range(1, order)) + [min(order, steps + 1 - k) for k in range(order, steps + 1)]


def k_diffusion_orders(steps: int, order: int) -> list[int]:
    """k-diffusion (`sample_dpmpp_2m`): the first step is first order (no previous x̂_0), every
    later one second order; nothing is lowered at the end."""
    assert order == 2
    return [1] + [2] * (steps - 1)


REFERENCES = {"dpm-solver": dpm_solver_orders, "unipc": unipc_orders, "k-diffusion": k_diffusion_orders}


def orders_taken(name: str, levels: int, **options) -> list[int]:
    """The order each step to a non-zero level took, as the sampler reports it."""
    grid = torch.cat([logsnr_levels(levels), torch.zeros(1, dtype=torch.float64)])
    steps = []
    solve(name, grid, torch.randn(2, 1, 2, 2, dtype=torch.float64) * SIGMA_MAX, callback=steps.append, **options)
    assert [s["i"] for s in steps] == list(range(levels))
    return [s["order"] for s in steps if s["sigma_next"] > 0]


@pytest.mark.parametrize(
    "name, order, rule",
    [(name, order, rule) for name, order in [("dpm++2m", 2), ("dpm++2m-sde", 2), ("unipc", 2), ("unipc", 3)]
     for rule in REFERENCES if order == 2 or rule != "k-diffusion"],  # k-diffusion's 2M is second order only
)
def test_final_order_reproduces_each_reference_rule(name, order, rule):
    for steps in (3, 5, 8, 9, 10, 11, 14, 15, 20):  # levels = steps + 1 = network evaluations
        taken = orders_taken(name, steps + 1, order=order, final_order=rule)
        assert taken == REFERENCES[rule](steps, order), f"{name} order {order}, {rule}, {steps} steps"


@pytest.mark.parametrize("name", ["dpm++2m", "dpm++2m-sde", "unipc"])
def test_the_reported_orders_are_the_orders_taken(name):
    """Two rules give the same images exactly when they give the same step orders."""
    x_ve = torch.randn(4, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * SIGMA_MAX
    for levels in (6, 11, 16):
        grid = torch.cat([logsnr_levels(levels), torch.zeros(1, dtype=torch.float64)])
        runs = {}
        for rule in REFERENCES:
            steps = []
            runs[rule] = (solve(name, grid, x_ve, callback=steps.append, final_order=rule), [s["order"] for s in steps])
        for a in REFERENCES:
            for b in REFERENCES:
                same_orders = runs[a][1] == runs[b][1]
                assert torch.equal(runs[a][0], runs[b][0]) == same_orders, (name, levels, a, b)


def test_final_order_is_a_validated_option():
    spec = get_sampler("dpm++2m")
    assert spec.parse_options({"final_order": "k-diffusion"}).final_order == "k-diffusion"
    with pytest.raises(UsageError, match="final_order"):
        spec.parse_options({"final_order": "diffusers"})


# --- noise is always given ----------------------------------------------------------------------


def _toy_denoiser() -> Denoiser:
    def model(x, t, y=None):
        return torch.cat([torch.tanh(x), torch.sin(x)], dim=1)

    return Denoiser(model, NoiseSchedule.create("cosine", 1000), EpsilonVP(ModelVarType.LEARNED_RANGE))


@pytest.mark.parametrize("sampler", [sample_ddpm, sample_ddim, sample_dpmpp_2m_sde])
def test_samplers_that_draw_noise_need_its_source(sampler):
    denoiser, x = _toy_denoiser(), torch.randn(2, 3, 4, 4)
    sigmas = respaced_grid(denoiser.schedule, "4")
    with pytest.raises(TypeError, match="required keyword-only argument: 'noise'"):
        sampler(denoiser, x, sigmas)
    sampler(denoiser, x, sigmas, noise=PerSampleNoise.from_seeds([1, 2]))  # given, it runs


@pytest.mark.parametrize("step", [ddpm_step, ddim_step])
def test_chain_steps_need_a_noise_source(step):
    chain, _ = _toy_denoiser().chain(respaced_grid(NoiseSchedule.create("cosine", 1000), "4"))
    with pytest.raises(TypeError, match="required keyword-only argument: 'noise'"):
        step(chain, torch.randn(2, 3, 4, 4), torch.tensor([3, 3]))


def test_no_builtin_sampler_falls_back_to_the_global_rng():
    for spec in BUILTIN.values():
        noise = inspect.signature(spec.fn).parameters["noise"]
        assert noise.default in (inspect.Parameter.empty, None), spec.name
        if spec.stochastic or spec.chain_only:  # they call noise() (ddim even at eta = 0)
            assert noise.default is inspect.Parameter.empty, spec.name
