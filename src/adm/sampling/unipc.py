"""UniPC (Zhao et al. 2023): a predictor-corrector multistep solver, data-prediction form.

Each step from λ_s to λ_t = λ_s + h predicts x_t from the current x̂_0 and the differences to the
previous ones (UniP), evaluates the network there, and corrects x_t with that new x̂_0 (UniC),
which is then reused for the next step: the corrector is free, one evaluation per step.

In the variance-exploding form (α = 1, λ = −log σ), with m_j the x̂_0 at λ_j:

    x_t = (σ_t/σ_s)·x_s − (e^{−h} − 1)·m_s − B(h)·Σ_k ρ_k·D_k,  D_k = (m_k − m_s)/r_k,
    r_k = (λ_k − λ_s)/h,

where the weights ρ solve R·ρ = b, R_{nk} = r_k^{n−1}, b_n = n!·φ_{n+1}(−h)·(−h)^{…}/B(h) (the
φ recursion below), and B(h) = −h ("bh1") or e^{−h} − 1 ("bh2", the paper's choice for guided
sampling). The corrector adds the new point (r = 1) to the same system. As in the reference
implementation, the two-point predictor and the one-point corrector use ρ = ½.
"""

from __future__ import annotations

import math

import torch

from adm.sampling.denoiser import Denoiser
from adm.sampling.noise import NoiseSource
from adm.sampling.samplers import (
    DEFAULT_FINAL_ORDER,
    Callback,
    FinalOrder,
    report_step,
    step_orders,
)

Tensor = torch.Tensor


def _weights(rks: list[float], h: float, variant: str) -> tuple[list[float], float, float]:
    """(b, B(h), φ_1) for the ratios ``rks`` (the last one is the new point, r = 1)."""
    hh = -h  # data prediction integrates in −λ
    phi_1 = math.expm1(hh)
    b_h = hh if variant == "bh1" else phi_1
    b, phi_k, factorial = [], phi_1 / hh - 1, 1
    for i in range(1, len(rks) + 1):
        b.append(phi_k * factorial / b_h)
        factorial *= i + 1
        phi_k = phi_k / hh - 1 / factorial
    return b, b_h, phi_1


def _solve(rks: list[float], b: list[float]) -> list[float]:
    """ρ with Σ_k r_k^{n−1}·ρ_k = b_n (float64; tiny systems)."""
    if len(rks) == 1:
        return [0.5]
    matrix = torch.tensor([[r ** n for r in rks] for n in range(len(rks))], dtype=torch.float64)
    return torch.linalg.solve(matrix, torch.tensor(b, dtype=torch.float64)).tolist()


def sample_unipc(denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseSource | None = None,
                 callback: Callback | None = None, order: int = 2, variant: str = "bh2",
                 final_order: FinalOrder = DEFAULT_FINAL_ORDER) -> Tensor:
    """UniPC-``order`` with its free corrector; the step to σ = 0 returns the last x̂_0.

    The first steps warm up with lower orders; ``final_order`` names the reference whose rule
    sets the last steps' order (``adm.sampling.samplers.step_orders``).
    """
    x = denoiser.from_state(x, sigmas[0])
    steps = len(sigmas) - 1
    orders = step_orders(sigmas, order, final_order)
    last_landing = steps - 2 if float(sigmas[-1]) == 0 else steps - 1  # the last step to a level σ > 0
    lambdas: list[float] = []
    history: list[Tensor] = []  # x̂_0 at the previous levels, newest last
    with torch.no_grad():
        denoised = denoiser(x, float(sigmas[0]))
        for i in range(steps):
            s, s_next = float(sigmas[i]), float(sigmas[i + 1])
            lambdas.append(-math.log(s))
            history.append(denoised)
            if s_next == 0:
                x = denoised
                report_step(callback, denoiser, i, sigmas, x, denoised, order=orders[i])
                break
            step_order = orders[i]
            h = -math.log(s_next) - lambdas[-1]
            m_s = history[-1]
            rks = [(lambdas[-1 - k] - lambdas[-1]) / h for k in range(1, step_order)]
            diffs = [(history[-1 - k] - m_s) / r for k, r in zip(range(1, step_order), rks, strict=True)]
            b, b_h, phi_1 = _weights(rks + [1.0], h, variant)
            base = (s_next / s) * x - phi_1 * m_s
            predicted = base
            if diffs:
                rho_p = _solve(rks, b[:-1])
                predicted = base - b_h * sum(r * d for r, d in zip(rho_p, diffs, strict=True))
            if i == last_landing:
                # No correction: it would need one more evaluation. A final step to σ = 0 returns
                # the x̂_0 at this predicted point, which is that evaluation.
                x = predicted
                if i + 1 < steps:
                    denoised = denoiser(x, s_next)
            else:
                denoised = denoiser(predicted, s_next)
                rho_c = _solve(rks + [1.0], b)
                correction = sum(r * d for r, d in zip(rho_c[:-1], diffs, strict=True)) + rho_c[-1] * (denoised - m_s)
                x = base - b_h * correction
            report_step(callback, denoiser, i, sigmas, x, history[-1], order=step_order)
    return denoiser.to_state(x, sigmas[-1])
