"""The Gaussian-diffusion maths against the original, with a fixed model output (no network).

Every output tensor of both diffusion_math cases, for all three variance variants, goes through
``adm.compat.diffusion`` (and so through adm.diffusion / adm.sampling underneath).
"""

from __future__ import annotations

import pytest
import torch

import golden
from adm.compat.diffusion import (
    GaussianDiffusion,
    LossType,
    ModelMeanType,
    ModelVarType,
    create_gaussian_diffusion,
    get_named_beta_schedule,
)
from adm.core.errors import UsageError

CASES = ["diffusion_math_cosine_T1000", "diffusion_math_linear_T1000_respace250"]
VARIANTS = ["learned_range", "fixed_large", "fixed_small"]


class StandIn:
    """A 'model' that returns a fixed output and records the timesteps it was called with."""

    def __init__(self, output: torch.Tensor):
        self.output = output
        self.seen: list[torch.Tensor] = []

    def __call__(self, x, t, **kwargs):
        self.seen.append(t.clone())
        return self.output


def _diffusion(case: dict, variant: str):
    flags = case["diffusion_flags"]
    return create_gaussian_diffusion(
        steps=flags["diffusion_steps"],
        learn_sigma=case["variants"][variant]["learn_sigma"],
        sigma_small=case["variants"][variant]["sigma_small"],
        noise_schedule=flags["noise_schedule"],
        use_kl=flags["use_kl"],
        predict_xstart=flags["predict_xstart"],
        rescale_timesteps=flags["rescale_timesteps"],
        rescale_learned_sigmas=flags["rescale_learned_sigmas"],
        timestep_respacing=flags["timestep_respacing"],
    )


def _outputs(name: str, variant: str) -> dict[str, torch.Tensor]:
    """Everything the case stores, recomputed by adm, under the golden key names."""
    case, io = golden.case(name), golden.io(name)
    diffusion = _diffusion(case, variant)
    x0, noise, t, x_t_in = io["x_start"], io["noise"], io["t"], io["x_t_in"]
    learned = case["variants"][variant]["learn_sigma"]
    model_output = io["model_output"] if learned else io["model_output"][:, :3]
    got: dict[str, torch.Tensor] = {}

    got["q_mean"], got["q_variance"], got["q_log_variance"] = diffusion.q_mean_variance(x0, t)
    got["x_t"] = diffusion.q_sample(x0, t, noise=noise)
    post = diffusion.q_posterior_mean_variance(x0, x_t_in, t)
    got["q_posterior_mean"], got["q_posterior_variance"] = post[0], post[1]
    got["q_posterior_log_variance_clipped"] = post[2]

    v = variant + "/"
    model = StandIn(model_output)
    pmv = diffusion.p_mean_variance(model, x_t_in, t, clip_denoised=True)
    got[v + "t_seen_by_model"] = model.seen[0]
    for key in ("mean", "variance", "log_variance", "pred_xstart"):
        got[v + "pmv_clip/" + key] = pmv[key]
    noclip = diffusion.p_mean_variance(model, x_t_in, t, clip_denoised=False)
    for key in ("mean", "variance", "log_variance", "pred_xstart"):
        got[v + "pmv_noclip/" + key] = noclip[key]
    got[v + "eps_from_pred_xstart"] = diffusion._predict_eps_from_xstart(
        x_t_in, t, pmv["pred_xstart"]
    )

    for key, value in diffusion.training_losses(model, x0, t, noise=noise).items():
        got[v + "training_losses/" + key] = value
    got[v + "vb_terms_bpd"] = diffusion._vb_terms_bpd(model, x0, x_t_in, t, clip_denoised=False)[
        "output"
    ]

    step_noise = io["step_noise"]
    got[v + "p_sample/sample"] = diffusion.p_sample(
        model, x_t_in, t, clip_denoised=True, step_noise=step_noise
    )["sample"]
    got[v + "ddim_sample_eta0/sample"] = diffusion.ddim_sample(model, x_t_in, t, eta=0.0)["sample"]
    got[v + "ddim_sample_eta0.5/sample"] = diffusion.ddim_sample(
        model, x_t_in, t, eta=0.5, step_noise=step_noise
    )["sample"]
    got[v + "ddim_reverse_sample/sample"] = diffusion.ddim_reverse_sample(
        model, x_t_in, t, eta=0.0
    )["sample"]

    cond_seen = []

    def cond_fn(x, t_model, **kwargs):
        cond_seen.append(t_model.clone())
        return io["cond_grad"]

    got[v + "condition_mean"] = diffusion.condition_mean(cond_fn, pmv, x_t_in, t)
    got[v + "t_seen_by_cond_fn"] = cond_seen[0]
    score = diffusion.condition_score(cond_fn, pmv, x_t_in, t)
    got[v + "condition_score/pred_xstart"] = score["pred_xstart"]
    got[v + "condition_score/mean"] = score["mean"]
    return got


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", CASES)
def test_diffusion_math_matches_original(name, variant):
    case, io = golden.case(name), golden.io(name)
    got = _outputs(name, variant)
    expected_keys = {
        key
        for key, meta in case["tensors"].items()
        if meta["role"] == "output" and (key.startswith(variant + "/") or "/" not in key)
    }
    assert set(got) == expected_keys
    tol = case["tolerance"]["diffusion_math"]
    failures = []
    for key in sorted(expected_keys):
        try:
            golden.assert_math_close(got[key], io[key], rtol=tol["rtol"], atol=tol["atol"])
        except AssertionError as err:
            failures.append(f"{key}: {str(err).splitlines()[0]}")
    assert not failures, "\n".join(failures)


def test_model_sees_mapped_timesteps_when_respaced():
    io = golden.io("diffusion_math_linear_T1000_respace250")
    diffusion = create_gaussian_diffusion(timestep_respacing="250", learn_sigma=True)
    model = StandIn(io["model_output"])
    diffusion.p_mean_variance(model, io["x_t_in"], io["t"])
    assert model.seen[0].tolist() == [0, 4, 469, 999]
    assert diffusion.num_timesteps == 250 and diffusion.original_num_steps == 1000


def test_rescaled_timesteps_are_float():
    io = golden.io("diffusion_math_cosine_T1000")
    diffusion = create_gaussian_diffusion(
        steps=4000, timestep_respacing="250", learn_sigma=True, rescale_timesteps=True
    )
    model = StandIn(io["model_output"])
    diffusion.p_mean_variance(model, io["x_t_in"], torch.tensor([0, 1, 2, 249]))
    seen = model.seen[0]
    assert seen.dtype == torch.float32
    expected = torch.tensor(diffusion.timestep_map)[[0, 1, 2, 249]].float() * (1000.0 / 4000)
    assert torch.equal(seen, expected)


def test_compat_arrays_are_numpy_float64():
    diffusion = create_gaussian_diffusion(timestep_respacing="ddim25")
    assert diffusion.betas.dtype.name == "float64" and diffusion.betas.shape == (25,)
    assert diffusion.alphas_cumprod.shape == (25,)
    assert diffusion.timestep_map == list(range(0, 1000, 40))


def test_calc_bpd_loop_shapes_and_prior():
    io = golden.io("diffusion_math_cosine_T1000")
    diffusion = create_gaussian_diffusion(steps=1000, timestep_respacing="5", learn_sigma=True)
    model = StandIn(io["model_output"])
    out = diffusion.calc_bpd_loop(model, io["x_start"], clip_denoised=True)
    assert out["vb"].shape == out["mse"].shape == out["xstart_mse"].shape == (4, 5)
    torch.testing.assert_close(out["total_bpd"], out["vb"].sum(1) + out["prior_bpd"])
    # The loop walks t = T−1 … 0: the model saw 999 first and 0 last.
    assert model.seen[0].tolist() == [999] * 4 and model.seen[-1].tolist() == [0] * 4


def test_kl_losses_are_the_bound_term_anchored_on_the_golden_vb():
    """With a fixed output, the hybrid loss's vb (golden) is exactly the bound term, so
    RESCALED_KL = T · vb; and at T = 1000, RESCALED_MSE equals MSE."""
    name = "diffusion_math_cosine_T1000"
    io = golden.io(name)
    x0, noise, t = io["x_start"], io["noise"], io["t"]
    model = StandIn(io["model_output"])
    kl = create_gaussian_diffusion(noise_schedule="cosine", learn_sigma=True, use_kl=True)
    losses = kl.training_losses(model, x0, t, noise=noise)
    assert set(losses) == {"loss"}
    golden.assert_math_close(losses["loss"] / 1000, io["learned_range/training_losses/vb"])
    rescaled = create_gaussian_diffusion(
        noise_schedule="cosine", learn_sigma=True, rescale_learned_sigmas=True
    )
    golden.assert_math_close(
        rescaled.training_losses(model, x0, t, noise=noise)["loss"],
        io["learned_range/training_losses/loss"],
    )


def test_plain_gaussian_diffusion_class():
    """The un-respaced class: identity map; rescale_timesteps gives t * 1000 / T as float."""
    io = golden.io("diffusion_math_cosine_T1000")
    diffusion = GaussianDiffusion(
        betas=get_named_beta_schedule("linear", 500),
        model_mean_type=ModelMeanType.EPSILON,
        model_var_type=ModelVarType.FIXED_LARGE,
        loss_type=LossType.MSE,
        rescale_timesteps=True,
    )
    assert diffusion.num_timesteps == 500 and diffusion.betas.dtype.name == "float64"
    model = StandIn(io["model_output"][:, :3])
    diffusion.p_mean_variance(model, io["x_t_in"], torch.tensor([0, 1, 250, 499]))
    assert torch.equal(model.seen[0], torch.tensor([0.0, 2.0, 500.0, 998.0]))
    with pytest.raises(UsageError):
        diffusion.ddim_reverse_sample(model, io["x_t_in"], io["t"], eta=0.5)
