"""``improved_diffusion.gaussian_diffusion``: the diffusion object and the helpers it exports.

improved-diffusion's ``GaussianDiffusion`` is guided-diffusion's without classifier guidance: its
samplers take no ``cond_fn`` (``model_kwargs`` is the sixth positional argument of ``p_sample``)
and it has no ``condition_mean`` / ``condition_score``. This class is ``adm.compat``'s object under
those signatures; every computation is ``adm.diffusion`` / ``adm.sampling``'s, as there.
"""

from __future__ import annotations

from collections.abc import Iterator

from adm.compat import diffusion as guided
from adm.compat.gaussian_diffusion import (
    LossType,
    ModelMeanType,
    ModelVarType,
    _extract_into_tensor,
    betas_for_alpha_bar,
    discretized_gaussian_log_likelihood,
    get_named_beta_schedule,
    mean_flat,
    normal_kl,
)


class GaussianDiffusion(guided.GaussianDiffusion):
    """improved-diffusion's object API (no guidance) over a ``GaussianProcess``."""

    def p_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None, step_noise=None):
        return super().p_sample(model, x, t, clip_denoised, denoised_fn, None, model_kwargs, step_noise)

    def p_sample_loop(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None, model_kwargs=None,
                      device=None, progress=False, step_noise=None):
        return guided._last(self.p_sample_loop_progressive(
            model, shape, noise, clip_denoised, denoised_fn, model_kwargs, device, progress, step_noise
        ))

    def p_sample_loop_progressive(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None,
                                  model_kwargs=None, device=None, progress=False, step_noise=None) -> Iterator[dict]:
        """Yields ``p_sample``'s dict per step; the next step starts from its ``"sample"`` as
        the caller left it. ``progress`` is accepted and ignored."""
        return self._loop(self.p_sample, model, shape, noise, device, step_noise, clip_denoised=clip_denoised,
                          denoised_fn=denoised_fn, model_kwargs=model_kwargs)

    def ddim_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None, eta=0.0,
                    step_noise=None):
        return super().ddim_sample(model, x, t, clip_denoised, denoised_fn, None, model_kwargs, eta, step_noise)

    def ddim_sample_loop(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None, model_kwargs=None,
                         device=None, progress=False, eta=0.0, step_noise=None):
        return guided._last(self.ddim_sample_loop_progressive(
            model, shape, noise, clip_denoised, denoised_fn, model_kwargs, device, progress, eta, step_noise
        ))

    def ddim_sample_loop_progressive(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None,
                                     model_kwargs=None, device=None, progress=False, eta=0.0,
                                     step_noise=None) -> Iterator[dict]:
        """Yields ``ddim_sample``'s dict per step (as ``p_sample_loop_progressive``)."""
        return self._loop(self.ddim_sample, model, shape, noise, device, step_noise, clip_denoised=clip_denoised,
                          denoised_fn=denoised_fn, model_kwargs=model_kwargs, eta=eta)

    # improved-diffusion has no classifier guidance: guided-diffusion's methods are hidden (hasattr is False).
    condition_mean = condition_score = property(lambda self: _absent())


def _absent():
    raise AttributeError("improved-diffusion's GaussianDiffusion has no classifier guidance")


__all__ = [
    "GaussianDiffusion", "LossType", "ModelMeanType", "ModelVarType", "_extract_into_tensor", "betas_for_alpha_bar",
    "discretized_gaussian_log_likelihood", "get_named_beta_schedule", "mean_flat", "normal_kl",
]
