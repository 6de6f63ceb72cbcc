"""guided-diffusion's diffusion API (``GaussianDiffusion``, ``SpacedDiffusion``,
``create_gaussian_diffusion``, …) over ``adm.diffusion`` and ``adm.sampling``.

Method names, keyword arguments and returned dict keys are the original's, so code written for
guided-diffusion runs unchanged; every computation is delegated, none is re-implemented here.
As in the original's ``SpacedDiffusion``, models and ``cond_fn`` always receive the original
(mapped, optionally rescaled) timesteps. Additions: ``step_noise=`` on the samplers replaces
``th.randn_like`` with recorded noise (one tensor for a step, ``[steps, *shape]`` for a loop).

The ``*_progressive`` loops are the original's to the letter where research code depends on it:
each step calls ``self.p_sample`` / ``self.ddim_sample``, the dict is yielded inside the step's
``torch.no_grad`` block, and the next step starts from ``out["sample"]`` as it is *after* the
caller's loop body ran, so reassigning it (ILVR's low-pass correction, blended diffusion's masked
background) steers the chain without forking the loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from adm.core.errors import UsageError
from adm.diffusion import gaussian, losses, schedules
from adm.diffusion.adapters import vp_adapter
from adm.diffusion.process import (
    ARRAY_NAMES,
    GaussianProcess,
    LossType,
    ModelMeanType,
    ModelVarType,
)
from adm.sampling import chain, guidance
from adm.sampling.chain import ChainDenoiser
from adm.sampling.noise import ReplayNoise

__all__ = [
    "GaussianDiffusion",
    "LossType",
    "ModelMeanType",
    "ModelVarType",
    "SpacedDiffusion",
    "create_gaussian_diffusion",
    "get_named_beta_schedule",
    "space_timesteps",
]


def get_named_beta_schedule(schedule_name: str, num_diffusion_timesteps: int) -> np.ndarray:
    """The named beta schedule as a float64 numpy array."""
    return schedules.beta_schedule(schedule_name, num_diffusion_timesteps).numpy()


def space_timesteps(num_timesteps: int, section_counts) -> set[int]:
    """The set of original timesteps kept by a respacing (``"250"``, ``"ddim25"``, ``[10, 5]``)."""
    return set(schedules.space_timesteps(num_timesteps, section_counts))


class GaussianDiffusion:
    """The original object API over a ``GaussianProcess`` (identity timestep map)."""

    def __init__(
        self,
        *,
        betas,
        model_mean_type: ModelMeanType,
        model_var_type: ModelVarType,
        loss_type: LossType,
        rescale_timesteps: bool = False,
    ):
        self._init(
            GaussianProcess.from_betas(
                torch.as_tensor(np.asarray(betas, dtype=np.float64), device="cpu"), rescale_timesteps
            ),
            model_mean_type, model_var_type, loss_type, rescale_timesteps,
        )

    def _init(self, process, model_mean_type, model_var_type, loss_type, rescale_timesteps):
        self.process = process
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type
        self.rescale_timesteps = rescale_timesteps
        self.adapter = vp_adapter(model_mean_type, model_var_type)
        self.num_timesteps = self.process.num_steps
        self.timestep_map = self.process.timestep_map.tolist()
        self.original_num_steps = self.process.original_num_steps

    def __getattr__(self, name: str):
        # The schedule arrays (betas, alphas_cumprod, posterior_variance, ...) as float64 numpy.
        if name in ARRAY_NAMES and "process" in self.__dict__:
            value = getattr(self.process, name).cpu().numpy()
            self.__dict__[name] = value
            return value
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _denoiser(self, model, clip_denoised=True, denoised_fn=None, model_kwargs=None):
        kwargs = model_kwargs or {}
        model = self._unwrapped(model)
        return ChainDenoiser(model, self.process, self.adapter, kwargs, clip_denoised, denoised_fn)

    def _scale_timesteps(self, t):
        """What the original hands the model for chain indices ``t`` (before any ``_wrap_model``):
        ``t`` itself, or ``t * 1000 / num_timesteps`` as float when ``rescale_timesteps``."""
        if self.rescale_timesteps:
            return t.float() * (1000.0 / self.num_timesteps)
        return t

    def _unwrapped(self, fn):
        """``fn`` without a ``_wrap_model`` wrapper of this diffusion's mapping.

        adm maps timesteps itself (``GaussianProcess.model_timesteps``), so a model a fork wrapped
        with ``diffusion._wrap_model`` and passed back in must not be mapped twice; the original
        skips re-wrapping it for the same reason.
        """
        if not isinstance(fn, _WrappedModel):
            return fn
        ours = (self.timestep_map, bool(self.rescale_timesteps), self.original_num_steps)
        if (list(fn.timestep_map), bool(fn.rescale_timesteps), fn.original_num_steps) != ours:
            raise UsageError(
                "this model was wrapped by another diffusion's _wrap_model (its timestep map differs)",
                hint="pass the unwrapped model (wrapped.model)",
            )
        return fn.model

    # --- forward process and closed forms ---

    def q_mean_variance(self, x_start, t):
        return gaussian.q_mean_variance(self.process, x_start, t)

    def q_sample(self, x_start, t, noise=None):
        noise = torch.randn_like(x_start) if noise is None else noise
        return gaussian.q_sample(self.process, x_start, t, noise)

    def q_posterior_mean_variance(self, x_start, x_t, t):
        return gaussian.q_posterior_mean_variance(self.process, x_start, x_t, t)

    def _predict_xstart_from_eps(self, x_t, t, eps):
        return gaussian.predict_xstart_from_eps(self.process, x_t, t, eps)

    def _predict_xstart_from_xprev(self, x_t, t, xprev):
        return gaussian.predict_xstart_from_xprev(self.process, x_t, t, xprev)

    def _predict_eps_from_xstart(self, x_t, t, pred_xstart):
        return gaussian.predict_eps_from_xstart(self.process, x_t, t, pred_xstart)

    def p_mean_variance(self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None):
        denoiser = self._denoiser(model, clip_denoised, denoised_fn, model_kwargs)
        return denoiser(x, t)[0]._asdict()

    # --- guidance ---

    def condition_mean(self, cond_fn, p_mean_var, x, t, model_kwargs=None):
        grad = guidance.guidance_gradient(self.process, self._unwrapped(cond_fn), x, t, model_kwargs)
        return guidance.condition_mean(_prediction(p_mean_var), grad).mean

    def condition_score(self, cond_fn, p_mean_var, x, t, model_kwargs=None):
        grad = guidance.guidance_gradient(self.process, self._unwrapped(cond_fn), x, t, model_kwargs)
        guided = guidance.condition_score(self.process, _prediction(p_mean_var), x, t, grad)
        return {**p_mean_var, "pred_xstart": guided.pred_xstart, "mean": guided.mean}

    # --- sampling ---

    def p_sample(
        self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None, model_kwargs=None,
        step_noise=None,
    ):
        out = chain.ddpm_step(
            self._denoiser(model, clip_denoised, denoised_fn, model_kwargs), x, t,
            noise=_step_source(step_noise), cond_fn=self._unwrapped(cond_fn),
        )
        return out._asdict()

    def ddim_sample(
        self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None, model_kwargs=None,
        eta=0.0, step_noise=None,
    ):
        out = chain.ddim_step(
            self._denoiser(model, clip_denoised, denoised_fn, model_kwargs), x, t,
            noise=_step_source(step_noise), cond_fn=self._unwrapped(cond_fn), eta=eta,
        )
        return out._asdict()

    def ddim_reverse_sample(
        self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None, eta=0.0
    ):
        if eta != 0.0:
            raise UsageError("ddim_reverse_sample needs eta=0 (the reverse ODE is deterministic)")
        denoiser = self._denoiser(model, clip_denoised, denoised_fn, model_kwargs)
        return chain.ddim_reverse_step(denoiser, x, t)._asdict()

    def p_sample_loop(self, model, shape, **kwargs):
        return _last(self.p_sample_loop_progressive(model, shape, **kwargs))

    def p_sample_loop_progressive(
        self, model, shape, noise=None, clip_denoised=True, denoised_fn=None, cond_fn=None,
        model_kwargs=None, device=None, progress=False, step_noise=None,
    ) -> Iterator[dict]:
        """Yields ``p_sample``'s dict per step; the next step starts from its ``"sample"`` as
        the caller left it. ``progress`` is accepted and ignored."""
        return self._loop(
            self.p_sample, model, shape, noise, device, step_noise, clip_denoised=clip_denoised,
            denoised_fn=denoised_fn, cond_fn=cond_fn, model_kwargs=model_kwargs,
        )

    def ddim_sample_loop(self, model, shape, **kwargs):
        return _last(self.ddim_sample_loop_progressive(model, shape, **kwargs))

    def ddim_sample_loop_progressive(
        self, model, shape, noise=None, clip_denoised=True, denoised_fn=None, cond_fn=None,
        model_kwargs=None, device=None, progress=False, eta=0.0, step_noise=None,
    ) -> Iterator[dict]:
        """Yields ``ddim_sample``'s dict per step; the next step starts from its ``"sample"`` as
        the caller left it. ``progress`` is accepted and ignored."""
        return self._loop(
            self.ddim_sample, model, shape, noise, device, step_noise, clip_denoised=clip_denoised,
            denoised_fn=denoised_fn, cond_fn=cond_fn, model_kwargs=model_kwargs, eta=eta,
        )

    def _loop(self, sample_step, model, shape, noise, device, step_noise, **step_kwargs):
        """The original's loop: chain indices T-1 .. 0, each step under ``torch.no_grad``.

        The dict is yielded *inside* that block (the caller's loop body runs without autograd,
        as in the original) and the loop continues from ``out["sample"]`` read after the yield,
        so a caller that reassigns it changes the next step. ``step_noise[k]`` feeds step k.
        """
        if not isinstance(shape, (tuple, list)):
            raise UsageError(f"shape must be a tuple or list, got {type(shape).__name__}")
        device = _device(model, noise, device)
        img = noise if noise is not None else torch.randn(*shape, device=device)
        if step_noise is not None and len(step_noise) != self.num_timesteps:
            raise UsageError(f"step_noise has {len(step_noise)} steps, the chain has {self.num_timesteps}")
        for k, i in enumerate(reversed(range(self.num_timesteps))):
            t = torch.tensor([i] * shape[0], device=device)
            recorded = {} if step_noise is None else {"step_noise": step_noise[k]}
            with torch.no_grad():
                out = sample_step(model, img, t, **step_kwargs, **recorded)
                yield out
                img = out["sample"]

    # --- losses and likelihood ---

    def training_losses(self, model, x_start, t, model_kwargs=None, noise=None):
        if noise is None:  # the original draws from the global RNG here
            noise = torch.randn_like(x_start)
        return losses.training_losses(
            self.process, self.adapter, self.loss_type, self._unwrapped(model), x_start, t, noise=noise,
            model_kwargs=model_kwargs,
        )

    def _vb_terms_bpd(self, model, x_start, x_t, t, clip_denoised=True, model_kwargs=None):
        output = self._unwrapped(model)(x_t, self.process.model_timesteps(t), **(model_kwargs or {}))
        terms, pred = losses.vb_terms_bpd(
            self.process, self.adapter, output, x_start, x_t, t, clip_denoised=clip_denoised
        )
        return {"output": terms, "pred_xstart": pred.pred_xstart}

    def _prior_bpd(self, x_start):
        return losses.prior_bpd(self.process, x_start)

    def calc_bpd_loop(self, model, x_start, clip_denoised=True, model_kwargs=None):
        return losses.calc_bpd_loop(
            self.process, self.adapter, self._unwrapped(model), x_start, clip_denoised=clip_denoised,
            model_kwargs=model_kwargs, noise_fn=torch.randn_like,  # the original's global RNG
        )


class SpacedDiffusion(GaussianDiffusion):
    """A diffusion that walks only ``use_timesteps`` of the base chain built from ``kwargs``."""

    def __init__(self, use_timesteps: Iterable[int], **kwargs):
        self.use_timesteps = set(use_timesteps)
        base_betas = torch.as_tensor(np.asarray(kwargs.pop("betas"), dtype=np.float64), device="cpu")
        new_betas, timestep_map = schedules.respace(base_betas, self.use_timesteps)
        rescale = kwargs.get("rescale_timesteps", False)
        self._init(
            GaussianProcess(new_betas, timestep_map, int(base_betas.shape[0]), rescale),
            kwargs["model_mean_type"], kwargs["model_var_type"], kwargs["loss_type"], rescale,
        )

    def _wrap_model(self, model):
        """``model`` as the original's ``_WrappedModel``: callable with chain indices (what forks
        that call the network themselves rely on). The diffusion's own methods accept it too."""
        if isinstance(model, _WrappedModel):
            return model
        return _WrappedModel(model, self.timestep_map, self.rescale_timesteps, self.original_num_steps)

    def _scale_timesteps(self, t):
        # As in the original: the wrapped model maps (and rescales) the timesteps, not this.
        return t


class _WrappedModel:
    """A model called with chain indices of a respaced diffusion, seeing the original timesteps.

    ``timestep_map[ts]``, as float ``* 1000 / original_num_steps`` when ``rescale_timesteps``:
    the rule of ``GaussianProcess.model_timesteps``, kept here with the original's constructor
    and attributes because forks build and inspect it.
    """

    def __init__(self, model, timestep_map, rescale_timesteps, original_num_steps):
        self.model = model
        self.timestep_map = timestep_map
        self.rescale_timesteps = rescale_timesteps
        self.original_num_steps = original_num_steps

    def __call__(self, x, ts, **kwargs):
        mapped = torch.tensor(self.timestep_map, device=ts.device, dtype=ts.dtype)[ts]
        if self.rescale_timesteps:
            mapped = mapped.float() * (1000.0 / self.original_num_steps)
        return self.model(x, mapped, **kwargs)


def create_gaussian_diffusion(
    *,
    steps=1000,
    learn_sigma=False,
    sigma_small=False,
    noise_schedule="linear",
    use_kl=False,
    predict_xstart=False,
    rescale_timesteps=False,
    rescale_learned_sigmas=False,
    timestep_respacing="",
) -> SpacedDiffusion:
    """``script_util.create_gaussian_diffusion``: flags → a (always respaced) diffusion."""
    from adm.spec.factory import parameterization
    from adm.spec.flags import DiffusionFlags

    flags = DiffusionFlags(
        learn_sigma=learn_sigma, diffusion_steps=steps, noise_schedule=noise_schedule, use_kl=use_kl,
        predict_xstart=predict_xstart, rescale_learned_sigmas=rescale_learned_sigmas, sigma_small=sigma_small,
    )
    adapter, loss_type = parameterization(flags)
    return SpacedDiffusion(
        use_timesteps=space_timesteps(steps, timestep_respacing or [steps]),
        betas=get_named_beta_schedule(noise_schedule, steps),
        model_mean_type=adapter.mean_type,
        model_var_type=adapter.variance,
        loss_type=loss_type,
        rescale_timesteps=rescale_timesteps,
    )


def _prediction(p_mean_var: dict) -> gaussian.Prediction:
    return gaussian.Prediction(*(p_mean_var[k] for k in gaussian.Prediction._fields))


def _step_source(step_noise):
    return torch.randn_like if step_noise is None else ReplayNoise([step_noise])


def _device(model, noise, device):
    if device is not None:
        return torch.device(device)
    if noise is not None:
        return noise.device
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        first = next(iter(parameters()), None)
        if first is not None:
            return first.device
    return torch.device("cpu")


def _last(iterator):
    """The last yielded step's sample (what the original's ``*_sample_loop`` returns)."""
    final = None
    for out in iterator:
        final = out
    return final["sample"]
