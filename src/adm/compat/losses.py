"""``guided_diffusion.losses``: the Gaussian KL and discretised likelihood (``adm.diffusion.losses``)."""

from __future__ import annotations

from adm.diffusion.losses import (
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    normal_kl,
)

__all__ = ["approx_standard_normal_cdf", "discretized_gaussian_log_likelihood", "normal_kl"]
