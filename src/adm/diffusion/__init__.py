"""Schedules, respacing and the Gaussian-diffusion maths as pure tensor functions (no networks).

The names below are imported on first use (``adm.core.lazy``): ``adm.diffusion.spacings``, which
the sampler registry reads for ``adm --help``, loads without torch.
"""

from adm.core.lazy import lazy_exports

_SUBMODULE = {  # name -> the submodule that defines it
    "ModelAdapter": "adapters",
    "VPAdapter": "adapters",
    "EpsilonVP": "adapters",
    "StartXVP": "adapters",
    "VelocityVP": "adapters",
    "PreviousXVP": "adapters",
    "EDM": "adapters",
    "ConsistencyBoundary": "adapters",
    "vp_adapter": "adapters",
    "NoiseSchedule": "continuous",
    "KarrasSchedule": "karras",
    "Prediction": "gaussian",
    "p_mean_variance": "gaussian",
    "predict_eps_from_xstart": "gaussian",
    "predict_xstart_from_eps": "gaussian",
    "predict_xstart_from_xprev": "gaussian",
    "q_mean_variance": "gaussian",
    "q_posterior_mean_variance": "gaussian",
    "q_sample": "gaussian",
    "calc_bpd_loop": "losses",
    "training_losses": "losses",
    "vb_terms_bpd": "losses",
    "GaussianProcess": "process",
    "LossType": "process",
    "ModelMeanType": "process",
    "ModelVarType": "process",
    "extract": "process",
    "beta_schedule": "schedules",
    "respace": "schedules",
    "space_timesteps": "schedules",
}

__all__ = sorted(_SUBMODULE)
__getattr__, __dir__ = lazy_exports(__name__, _SUBMODULE)
