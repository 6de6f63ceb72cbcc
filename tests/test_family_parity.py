"""adm against improved-diffusion's and consistency_models' own code, on tiny random networks.

The fixtures in ``tests/fixtures/families`` were produced by running openai/improved-diffusion and
openai/consistency_models themselves (``scripts/family_fixtures.py``, which says how to rerun it).
Every check goes through adm's own API: flags parsed in each family's syntax, the network built
by ``adm.spec.factory`` and loaded from the reference's own state_dict (consistency_models' 4-D
attention weights included), the schedule and adapter the flags give, ``Denoiser`` and the
registry's samplers with the recorded noise replayed.

Tolerances (max |adm − reference|, float32 on both sides), from each case's JSON: 1e-5 for
forwards and x̂_0 estimates, 1e-4 for sampling loops; where a check needs more, it says why.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adm.diffusion.grids import karras_grid, karras_index_grid, respaced_grid
from adm.hub.checkpoints import load_into
from adm.sampling.denoiser import Denoiser
from adm.sampling.noise import ReplayNoise
from adm.sampling.registry import get_sampler
from adm.spec.factory import build_model, noise_schedule, parameterization
from adm.spec.flags import parse_model_flags

FIXTURES = Path(__file__).parent / "fixtures" / "families"


@cache
def case(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@cache
def io(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / case(name)["files"]["io"]))


@cache
def reference_weights(name: str) -> dict[str, torch.Tensor]:
    """The reference's state_dict as it saved it (float8-exact values, run as float32)."""
    return {k: v.float() for k, v in load_file(str(FIXTURES / name)).items()}


def flag_string(name: str) -> str:
    """adm's flags for a case in the family's own syntax (``--training_mode`` for consistency_models)."""
    spec = case(name)
    mode = spec.get("training_mode")
    return spec["adm_flags"] + (f" --training_mode {mode}" if mode else "")


def flags_of(name: str):
    return parse_model_flags(flag_string(name))


@cache
def network(weights: str, flags: str) -> torch.nn.Module:
    """The network the flags build, loaded strictly from the reference's state_dict."""
    model = build_model(parse_model_flags(flags))
    return load_into(model, reference_weights(weights), what=weights).eval()


def model_of(name: str) -> torch.nn.Module:
    return network(case(name)["weights"], flag_string(name))


def denoiser_of(name: str, model=None, clip_denoised: bool = True) -> Denoiser:
    flags = flags_of(name)
    adapter, _ = parameterization(flags)
    return Denoiser(model or model_of(name), noise_schedule(flags), adapter, {}, clip_denoised=clip_denoised)


def max_diff(got: torch.Tensor, expected: torch.Tensor) -> float:
    assert got.shape == expected.shape, (tuple(got.shape), tuple(expected.shape))
    return (got.detach().double() - expected.double()).abs().max().item()


def assert_close(got: torch.Tensor, expected: torch.Tensor, atol: float, what: str = "") -> None:
    diff = max_diff(got, expected)
    assert diff <= atol, f"{what}: max |adm - reference| = {diff:.3g} > {atol:g}"


def assert_same_evaluations(times: list[torch.Tensor], expected: torch.Tensor) -> None:
    """The network was called as often, and at the same noise levels, as by the reference.

    Levels agree to float32's precision: the reference computes its grid (a 7th power), σ̂ = σ·(1 + γ)
    and 250·ln σ in float32, adm in float64. A relative error of ~4e-7 in σ is 1e-4 in network time,
    and at |250·ln σ| > 1024 float32 values are 1.2e-4 apart: 5e-4 bounds both (σ within 2e-6
    relative; neighbouring levels of these grids differ by more than 1 %).
    """
    got = torch.stack(times).float()
    assert got.shape == expected.shape, f"{len(times)} network evaluations, the reference made {len(expected)}"
    assert_close(got, expected, 5e-4, "network time 250 ln(sigma) of each evaluation")


class Recording:
    """The network, recording the time input of every call."""

    def __init__(self, model):
        self.model, self.times = model, []

    def __call__(self, x, t, **kwargs):
        self.times.append(t.clone())
        return self.model(x, t, **kwargs)


# --- the networks ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["improved_16px.safetensors", "cm_16px.safetensors"])
def test_reference_state_dicts_load_key_for_key(name):
    """Each reference's own state_dict loads strictly; consistency_models' attention projections
    are 4-D 1x1 convolutions in the file."""
    weights = reference_weights(name)
    four_d = [k for k, v in weights.items() if v.ndim == 4 and k.endswith(("qkv.weight", "proj_out.weight"))]
    assert bool(four_d) == name.startswith("cm")
    model = network(name, flag_string("improved_forward" if name.startswith("improved") else "cm_forward"))
    for key, value in model.state_dict().items():
        assert torch.equal(value.reshape(weights[key].shape), weights[key]), key


@pytest.mark.parametrize("name", ["improved_forward", "cm_forward"])
def test_forward_matches_reference(name):
    """The network alone, at the exact time input the reference gave it (improved: t·1000/4000 as
    float; consistency_models: 250·ln σ)."""
    data = io(name)
    time = data["t_seen_by_model"] if "t_seen_by_model" in data else data["t"]
    with torch.no_grad():
        got = model_of(name)(data["x"], time)
    assert_close(got, data["output"], case(name)["tolerance"]["atol"], name)


# --- improved-diffusion: rescaled timesteps, 4000-step cosine, learned sigmas --------------------


def test_improved_flags_take_the_family_defaults():
    flags = flags_of("improved_forward")
    assert flags.rescale_timesteps and flags.rescale_learned_sigmas
    assert case("improved_forward")["reference_flags"]["rescale_timesteps"]


def test_improved_schedule_tells_the_network_the_rescaled_timestep():
    """The schedule's network time at the chain's levels is what improved's model wrapper gave."""
    data = io("improved_forward")
    schedule = noise_schedule(flags_of("improved_forward"))
    sigmas = schedule.log_sigmas[data["t"]].exp()
    got = schedule.network_time(sigmas).float()
    assert_close(got, data["t_seen_by_model"], 1e-3, "network time")


@pytest.mark.parametrize("clip", [True, False])
def test_improved_denoiser_is_p_mean_variance_pred_xstart(clip):
    """``Denoiser(x_t/√ᾱ, σ_t)`` = the reference's ``p_mean_variance(...)['pred_xstart']``."""
    name, data = "improved_process", io("improved_process")
    denoiser = denoiser_of(name, clip_denoised=clip)
    sigmas = denoiser.schedule.log_sigmas[data["t"]].exp()
    got = denoiser(denoiser.from_state(data["x_t"], sigmas), sigmas)
    expected = data[f"pmv_{'clip' if clip else 'noclip'}/pred_xstart"]
    assert_close(got, expected, case(name)["tolerance"]["denoise"]["atol"], "pred_xstart")


def _improved_diffusion(name: str, respacing: str):
    """adm.compat's ``create_gaussian_diffusion`` (improved-diffusion's signature) with the case's flags."""
    from adm.compat.diffusion import create_gaussian_diffusion

    f = case(name)["reference_flags"]
    keys = ("learn_sigma", "sigma_small", "noise_schedule", "use_kl", "predict_xstart", "rescale_timesteps",
            "rescale_learned_sigmas")
    return create_gaussian_diffusion(steps=f["diffusion_steps"], timestep_respacing=respacing, **{k: f[k] for k in keys})


def test_improved_process_matches_reference():
    """q_sample, p_mean_variance and training_losses (RESCALED_MSE: vb × 4000/1000) through
    ``adm.compat`` on the 4000-step cosine chain with rescaled timesteps."""
    name, data = "improved_process", io("improved_process")
    spec, model = case(name), model_of(name)
    diffusion = _improved_diffusion(name, "")
    tol = spec["tolerance"]
    assert_close(diffusion.q_sample(data["x_start"], data["t"], noise=data["noise"]), data["x_t"], 1e-6, "q_sample")
    with torch.no_grad():
        for clip, tag in ((True, "clip"), (False, "noclip")):
            out = diffusion.p_mean_variance(model, data["x_t"], data["t"], clip_denoised=clip)
            for key in ("mean", "variance", "log_variance", "pred_xstart"):
                if f"pmv_{tag}/{key}" in data:
                    assert_close(out[key], data[f"pmv_{tag}/{key}"], tol["denoise"]["atol"], f"{tag} {key}")
        losses = diffusion.training_losses(model, data["x_start"], data["t"], noise=data["noise"])
    assert set(losses) == {"loss", "mse", "vb"}
    for key, value in losses.items():
        torch.testing.assert_close(value, data[f"training_losses/{key}"], rtol=tol["losses"]["rtol"],
                                   atol=tol["losses"]["atol"])


@pytest.mark.parametrize("name", ["improved_p_sample", "improved_ddim_eta0", "improved_ddim_eta0.5"])
def test_improved_chain_samplers_match_reference(name):
    """adm's ``ddpm`` / ``ddim`` on the respaced 4000-step chain (the CLI's path), with the
    reference's noise: the network is told timestep_map[t]·1000/4000 at every step."""
    spec, data = case(name), io(name)
    recording = Recording(model_of(name))
    denoiser = denoiser_of(name, model=recording)
    sigmas = respaced_grid(denoiser.schedule, spec["respacing"])
    sampler = get_sampler("ddpm" if spec["eta"] is None else "ddim")
    options = sampler.parse_options({} if spec["eta"] is None else {"eta": spec["eta"]})
    step_noise = data.get("step_noise", torch.zeros(len(sigmas) - 1, *data["noise"].shape))
    trajectory = []
    final = sampler(denoiser, data["noise"], sigmas, noise=ReplayNoise(step_noise), options=options,
                    callback=lambda step: trajectory.append(step["x"]))
    assert_close(torch.stack(recording.times), data["t_seen_by_model"], 1e-4, "time input")
    assert_close(final, data["final"], spec["tolerance"]["atol"], "final")
    if "samples" in data:
        assert_close(torch.stack(trajectory), data["samples"], spec["tolerance"]["atol"], "trajectory")


@pytest.mark.parametrize("name", ["improved_p_sample", "improved_ddim_eta0.5"])
def test_improved_compat_loops_match_reference(name):
    """The same loops through ``adm.compat`` (a ported improved-diffusion script's calls)."""
    spec, data = case(name), io(name)
    diffusion = _improved_diffusion(name, spec["respacing"])
    assert list(diffusion.timestep_map) == spec["timestep_map"]
    loop = diffusion.p_sample_loop if spec["eta"] is None else diffusion.ddim_sample_loop
    kwargs = {} if spec["eta"] is None else {"eta": spec["eta"]}
    final = loop(model_of(name), tuple(data["noise"].shape), noise=data["noise"], step_noise=data["step_noise"],
                 clip_denoised=True, device="cpu", **kwargs)
    assert_close(final, data["final"], spec["tolerance"]["atol"], "final")


# --- consistency_models: EDM and the consistency boundary --------------------------------------


@pytest.mark.parametrize("mode", ["edm", "consistency_distillation"])
@pytest.mark.parametrize("clip", [False, True])
def test_cm_denoiser_is_karras_denoiser_denoise(mode, clip):
    """``Denoiser(x, σ)`` = ``KarrasDenoiser.denoise(model, x, σ)[1]`` (clamped when clipping),
    per-sample σ from σ_min = 0.002 (where the consistency model is the identity) to 80."""
    name = f"cm_denoise_{mode}"
    data = io(name)
    with torch.no_grad():
        got = denoiser_of(name, clip_denoised=clip)(data["x_t"], data["sigmas"].double())
    expected = data["denoised"].clamp(-1, 1) if clip else data["denoised"]
    assert_close(got, expected, case(name)["tolerance"]["atol"], name)
    if mode == "consistency_distillation":
        assert_close(got[0], data["x_t"][0].clamp(-1, 1) if clip else data["x_t"][0], 1e-6, "f(x, sigma_min) = x")


def test_cm_schedule_tells_the_network_250_ln_sigma():
    """Within one float32 step of the reference's: it takes the log in float32, adm in float64
    (at σ = 80, 250·ln σ ≈ 1095, where float32 values are 1.2e-4 apart)."""
    data = io("cm_forward")
    schedule = noise_schedule(flags_of("cm_forward"))
    got = schedule.network_time(torch.tensor(case("cm_denoise_edm")["sigmas"], dtype=torch.float64)).float()
    ulp = torch.finfo(torch.float32).eps * data["t"].abs()
    assert bool(((got - data["t"]).abs() <= ulp).all()), (got, data["t"])


def _x_T(data: dict, spec: dict) -> torch.Tensor:
    """The reference's x_T = generator.randn(*shape) * sigma_max: the state is x_0 + σ·ε itself."""
    x_T = data["z"] * spec["karras_sample"]["sigma_max"]
    assert torch.equal(x_T, data["x_T"])
    return x_T


@pytest.mark.parametrize("name", ["cm_heun40", "cm_heun10_churn"])
def test_cm_heun_matches_karras_sample(name):
    """EDM's Heun on the EDM teacher: 40 steps without churn (79 evaluations) and 10 steps with
    churn limited to s_tmin <= σ <= s_tmax, with the reference generator's noise."""
    spec, data = case(name), io(name)
    run = spec["karras_sample"]
    denoiser = denoiser_of(name, model=Recording(model_of(name)))
    sigmas = karras_grid(denoiser.schedule, run["steps"])
    # get_sigmas_karras(n) in float32, adm's in float64: the same levels to float32's precision.
    torch.testing.assert_close(sigmas, torch.tensor(spec["levels"], dtype=torch.float64), rtol=2e-6, atol=0)
    sampler = get_sampler("heun")
    churn = {k: run[k] for k in ("s_churn", "s_tmin", "s_tmax") if k in run}
    noise = ReplayNoise(data.get("step_noise", []))
    final = sampler(denoiser, _x_T(data, spec), sigmas, noise=noise, options=sampler.parse_options(churn))
    assert_same_evaluations(denoiser.network.times, data["t_seen_by_model"])
    assert_close(final.clamp(-1, 1), data["final"], spec["tolerance"]["atol"], name)


@pytest.mark.parametrize(
    "name, steps", [("cm_onestep", "1"), ("cm_multistep_0_2_5_of_6", "0,2,5"), ("cm_multistep_0_22_39_of_40", "0,22,39")]
)
def test_cm_consistency_sampling_matches_karras_sample(name, steps):
    """``cm``: one step at σ_max, and the reference's multistep ``ts`` indices into a Karras grid
    of ``steps`` levels, re-noised with the generator's draws."""
    spec, data = case(name), io(name)
    run = spec["karras_sample"]
    denoiser = denoiser_of(name, model=Recording(model_of(name)))
    sampler = get_sampler("cm")
    options = sampler.parse_options({"karras_steps": run["steps"]})
    sigmas = sampler.make_grid(denoiser.schedule, steps, options, None)
    if "ts" in run:
        expected_grid = karras_index_grid(denoiser.schedule, run["ts"], run["steps"])
        assert torch.equal(sigmas, expected_grid)
    step_noise = data["step_noise"] if "step_noise" in data else torch.zeros(len(sigmas) - 1, *data["z"].shape)
    final = sampler(denoiser, _x_T(data, spec), sigmas, noise=ReplayNoise(step_noise), options=options)
    assert_same_evaluations(denoiser.network.times, data["t_seen_by_model"])
    assert_close(final.clamp(-1, 1), data["final"], spec["tolerance"]["atol"], name)
