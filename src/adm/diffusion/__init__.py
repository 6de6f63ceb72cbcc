"""Schedules, respacing and the Gaussian-diffusion maths as pure tensor functions (no networks)."""

from adm.diffusion.gaussian import (
    Prediction,
    p_mean_variance,
    predict_eps_from_xstart,
    predict_xstart_from_eps,
    predict_xstart_from_xprev,
    q_mean_variance,
    q_posterior_mean_variance,
    q_sample,
)
from adm.diffusion.losses import calc_bpd_loop, training_losses, vb_terms_bpd
from adm.diffusion.process import (
    GaussianProcess,
    LossType,
    ModelMeanType,
    ModelVarType,
    Parameterization,
    extract,
)
from adm.diffusion.schedules import beta_schedule, respace, space_timesteps

__all__ = [
    "GaussianProcess",
    "LossType",
    "ModelMeanType",
    "ModelVarType",
    "Parameterization",
    "Prediction",
    "beta_schedule",
    "calc_bpd_loop",
    "extract",
    "p_mean_variance",
    "predict_eps_from_xstart",
    "predict_xstart_from_eps",
    "predict_xstart_from_xprev",
    "q_mean_variance",
    "q_posterior_mean_variance",
    "q_sample",
    "respace",
    "space_timesteps",
    "training_losses",
    "vb_terms_bpd",
]
