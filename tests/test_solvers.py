"""The solvers on a problem with a closed-form answer: Gaussian data and its optimal denoiser.

For x_0 ~ N(μ, s²) the optimal denoiser is D(x, σ) = μ + s²/(s² + σ²)·(x − μ), and the
probability-flow ODE has the exact solution x(σ) − μ = (x(σ₀) − μ)·√((s² + σ²)/(s² + σ₀²)).
A solver of order p has a global error that shrinks like (steps)^−p; a reverse-SDE solver with
the exact denoiser samples N(μ, s²) itself.
"""

from __future__ import annotations

import math

import pytest
import torch

from adm.sampling import get_sampler
from adm.sampling.denoiser import to_variance_exploding, to_variance_preserving

MU, S = 0.3, 0.5
SIGMA_MAX, SIGMA_MIN = 80.0, 0.05


def optimal_denoiser(x: torch.Tensor, sigma) -> torch.Tensor:
    sigma = float(torch.as_tensor(sigma).reshape(-1)[0])
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def exact(x_start_ve: torch.Tensor, sigma_end: float) -> torch.Tensor:
    return MU + (x_start_ve - MU) * math.sqrt((S**2 + sigma_end**2) / (S**2 + SIGMA_MAX**2))


def logsnr_levels(n: int) -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(SIGMA_MAX), math.log(SIGMA_MIN), n, dtype=torch.float64))


def solve(name: str, levels: torch.Tensor, x_ve: torch.Tensor, **options) -> torch.Tensor:
    spec = get_sampler(name)
    x = to_variance_preserving(x_ve, levels[0])
    out = spec(optimal_denoiser, x, levels, noise=torch.randn_like, options=spec.parse_options(options))
    return to_variance_exploding(out, levels[-1])


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
        ("unipc", {"order": 1}, 2),  # UniC raises the predictor's order by one
        ("unipc", {"order": 2}, 3),
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
    out = spec(optimal_denoiser, to_variance_preserving(x_T * SIGMA_MAX, levels[0]), levels, noise=noise)
    assert float(out.mean()) == pytest.approx(MU, abs=0.02)
    assert float(out.std()) == pytest.approx(S, rel=0.03)


def test_a_grid_ending_at_zero_returns_the_denoised_image():
    x_ve = torch.randn(4, 1, 2, 2, dtype=torch.float64) * SIGMA_MAX
    levels = torch.cat([logsnr_levels(8), torch.zeros(1, dtype=torch.float64)])
    for name in ("dpm++2m", "heun", "unipc"):
        steps = []
        spec = get_sampler(name)
        out = spec(optimal_denoiser, to_variance_preserving(x_ve, levels[0]), levels, noise=torch.randn_like,
                   callback=steps.append)
        assert steps[-1]["sigma_next"] == 0.0
        torch.testing.assert_close(out, steps[-1]["x"])
