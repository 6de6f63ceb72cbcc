"""Samplers, guidance and noise sources.

Golden: the tiny class-conditional UNet and noisy classifier of the golden set, sampled with
DDIM (unguided and guided) and the ancestral sampler (guided, recorded noise) through
``adm.compat.diffusion`` and through the ``adm.sampling`` API the CLI uses.
"""

from __future__ import annotations

import pytest
import torch

import golden
from adm.compat.diffusion import create_gaussian_diffusion
from adm.core.errors import UsageError
from adm.diffusion import EpsilonVP, ModelVarType
from adm.diffusion.continuous import NoiseSchedule
from adm.diffusion.grids import make_grid, respaced_grid
from adm.models import NoisyClassifier, UNet
from adm.sampling import (
    BUILTIN,
    ClassifierGuidance,
    Denoiser,
    PerSampleNoise,
    ReplayNoise,
    classifier_grad_fn,
    get_sampler,
    sample_ddim,
    sample_ddpm,
)

CASE = "sampling_16px_ddim10_guided"


def _constructor_kwargs(case_name: str) -> dict:
    kwargs = dict(golden.case(case_name)["constructor"]["kwargs"])
    kwargs.pop("dims")
    kwargs.pop("use_fp16")
    new_order = kwargs.pop("use_new_attention_order")
    kwargs["attention_order"] = "new" if new_order else "legacy"
    return kwargs


@pytest.fixture(scope="module")
def nets():
    case = golden.case(CASE)
    unet = UNet(**_constructor_kwargs(case["model_case"]))
    unet.load_state_dict(golden.weights(case["model_case"]))
    classifier_kwargs = _constructor_kwargs(case["classifier_case"])
    classifier_kwargs.pop("num_heads_upsample")  # the encoder has no decoder attention
    classifier = NoisyClassifier(**classifier_kwargs)
    classifier.load_state_dict(golden.weights(case["classifier_case"]))
    return unet.eval(), classifier.eval()


class Recording:
    """model_fn(x, t, y) = unet(x, t, y), as in classifier_sample.py, recording t."""

    def __init__(self, net):
        self.net = net
        self.seen: list[torch.Tensor] = []

    def __call__(self, x, t, y=None):
        self.seen.append(t.clone())
        return self.net(x, t, y)


def _diffusion(respacing: str):
    flags = dict(golden.case(CASE)["diffusion_flags"])
    flags["steps"] = flags.pop("diffusion_steps")
    return create_gaussian_diffusion(**flags, timestep_respacing=respacing)


def _cond_fn(classifier):
    return classifier_grad_fn(classifier, golden.case(CASE)["classifier_scale"])


def _assert_loop_close(samples: list[torch.Tensor], prefix: str, seen: list[torch.Tensor]):
    io = golden.io(CASE)
    limit = golden.case(CASE)["tolerance"]["sampling"]["max_abs_diff"]
    got = torch.stack(samples)
    assert got.shape == io[f"{prefix}/samples"].shape
    assert (got - io[f"{prefix}/samples"]).abs().max().item() <= limit
    assert (samples[-1] - io[f"{prefix}/final"]).abs().max().item() <= limit
    golden.assert_math_close(torch.stack(seen), io[f"{prefix}/t_seen_by_model"])


@pytest.mark.parametrize("guided", [False, True], ids=["ddim", "ddim_guided"])
def test_compat_ddim_loop(nets, guided):
    unet, classifier = nets
    io, case = golden.io(CASE), golden.case(CASE)
    model_fn = Recording(unet)
    samples = [
        out["sample"]
        for out in _diffusion(case["ddim_respacing"]).ddim_sample_loop_progressive(
            model_fn,
            tuple(io["noise"].shape),
            noise=io["noise"],
            clip_denoised=case["clip_denoised"],
            cond_fn=_cond_fn(classifier) if guided else None,
            model_kwargs={"y": io["y"]},
            eta=case["eta"],
        )
    ]
    _assert_loop_close(samples, "ddim_guided" if guided else "ddim", model_fn.seen)


def test_compat_p_sample_loop_guided_with_recorded_noise(nets):
    unet, classifier = nets
    io, case = golden.io(CASE), golden.case(CASE)
    model_fn = Recording(unet)
    samples = [
        out["sample"]
        for out in _diffusion(case["psample_respacing"]).p_sample_loop_progressive(
            model_fn,
            tuple(io["noise"].shape),
            noise=io["noise"],
            clip_denoised=case["clip_denoised"],
            cond_fn=_cond_fn(classifier),
            model_kwargs={"y": io["y"]},
            step_noise=io["p_sample/step_noise"],
        )
    ]
    _assert_loop_close(samples, "p_sample_guided", model_fn.seen)


def test_compat_single_guided_step(nets):
    unet, classifier = nets
    io, case = golden.io(CASE), golden.case(CASE)
    diffusion = _diffusion(case["psample_respacing"])
    x_t, y = io["single_step/x_t"], io["y"]
    t = torch.full((x_t.shape[0],), case["single_step_t"], dtype=torch.long)
    with torch.no_grad():
        pmv = diffusion.p_mean_variance(
            Recording(unet), x_t, t, clip_denoised=True, model_kwargs={"y": y}
        )
    for key in ("mean", "variance", "log_variance", "pred_xstart"):
        golden.assert_forward_close(pmv[key], io[f"single_step/p_mean_variance/{key}"])

    seen = []
    scale = case["classifier_scale"]
    grad_fn = classifier_grad_fn(
        lambda x, ts: (seen.append(ts.clone()), classifier(x, ts))[1], scale
    )
    golden.assert_forward_close(
        diffusion.condition_mean(grad_fn, pmv, x_t, t, model_kwargs={"y": y}),
        io["single_step/condition_mean"],
    )
    golden.assert_math_close(seen[0], io["single_step/t_seen_by_classifier"])
    mapped = torch.tensor(diffusion.timestep_map)[t]
    golden.assert_forward_close(grad_fn(x_t, mapped, y), io["single_step/cond_fn_gradient"])
    score = diffusion.condition_score(grad_fn, pmv, x_t, t, model_kwargs={"y": y})
    golden.assert_forward_close(score["pred_xstart"], io["single_step/condition_score/pred_xstart"])
    golden.assert_forward_close(score["mean"], io["single_step/condition_score/mean"])


def test_sampling_api_ddim_guided_matches_original(nets):
    """The path the CLI takes: NoiseSchedule + Denoiser + ClassifierGuidance + the ddim sampler."""
    unet, classifier = nets
    io, case = golden.io(CASE), golden.case(CASE)
    schedule = NoiseSchedule.create("linear", 1000)
    param = EpsilonVP(ModelVarType.LEARNED_RANGE)
    guidance = ClassifierGuidance(classifier=classifier, labels=io["y"], scale=case["classifier_scale"], schedule=schedule)
    denoiser = Denoiser(unet, schedule, param, {"y": io["y"]}, guidance, clip_denoised=True)
    sigmas = respaced_grid(schedule, case["ddim_respacing"])
    steps = []
    final = get_sampler("ddim")(denoiser, io["noise"], sigmas, noise=torch.randn_like, callback=steps.append)
    assert [s["i"] for s in steps] == list(range(10))
    assert (torch.stack([s["x"] for s in steps]) - io["ddim_guided/samples"]).abs().max() <= 1e-3
    assert (final - io["ddim_guided/final"]).abs().max() <= 1e-3


# --- non-golden behaviour -------------------------------------------------------------------


def _toy_denoiser(schedule: str = "cosine") -> Denoiser:
    """A per-sample 'network' (no interaction across the batch), learned-range variance."""

    def model(x, t, y=None):
        scale = 1.0 + t.float().view(-1, 1, 1, 1) / 1000
        return torch.cat([torch.tanh(x) * scale, torch.sin(x)], dim=1)

    param = EpsilonVP(ModelVarType.LEARNED_RANGE)
    return Denoiser(model, NoiseSchedule.create(schedule, 1000), param)


def _grid(name: str, denoiser: Denoiser, steps: int = 8):
    spec = get_sampler(name)
    return make_grid(denoiser.schedule, spec.spacing, str(steps))


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_per_sample_noise_does_not_depend_on_batch_composition(name):
    spec, denoiser = get_sampler(name), _toy_denoiser()
    options = spec.parse_options({"eta": 0.7} if name == "ddim" else {})
    sigmas = _grid(name, denoiser)
    shape = (3, 3, 4, 4)

    def run(seeds):
        source = PerSampleNoise.from_seeds(seeds)
        x_T = source.randn((len(seeds), *shape[1:]))
        return spec(denoiser, x_T, sigmas, noise=source, options=options)

    together = run([11, 22, 33])
    apart = torch.cat([run([11]), run([22, 33])])
    torch.testing.assert_close(together, apart, rtol=0, atol=1e-6)
    assert not torch.allclose(together[0], together[1])


def test_sampler_registry():
    assert {"ddpm", "ddim", "dpm++2m", "dpm++2m-sde", "heun", "unipc"} <= set(BUILTIN)
    assert get_sampler("ddpm").fn is sample_ddpm and get_sampler("ddim").fn is sample_ddim
    with pytest.raises(UsageError, match="unknown sampler") as info:
        get_sampler("dpm++2n")
    assert "dpm++2m" in str(info.value)
    with pytest.raises(UsageError, match="has no option 'eta'") as info:
        get_sampler("ddpm").parse_options({"eta": "0.5"})
    with pytest.raises(UsageError, match="order"):
        get_sampler("dpm++2m").parse_options({"order": "5"})
    assert get_sampler("dpm++2m").parse_options({"order": "1"}).order == 1  # strings from the CLI convert


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_callback_receives_every_step(name):
    denoiser = _toy_denoiser()
    sigmas = _grid(name, denoiser, steps=6)
    calls = []
    x_T = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    final = get_sampler(name)(denoiser, x_T, sigmas, noise=PerSampleNoise.from_seeds([1, 2]), callback=calls.append)
    assert [c["i"] for c in calls] == list(range(len(sigmas) - 1))
    assert [c["sigma"] for c in calls] == sigmas[:-1].tolist()
    assert set(calls[0]) - {"order"} == {"i", "sigma", "sigma_next", "x", "denoised"}  # multistep solvers add "order"
    assert torch.equal(calls[-1]["x"], final)


def test_replay_noise_is_consumed_in_loop_order_even_for_deterministic_ddim():
    denoiser = _toy_denoiser()
    x_T = torch.randn(2, 3, 4, 4)
    source = ReplayNoise(torch.randn(4, 2, 3, 4, 4))
    sample_ddim(denoiser, x_T, respaced_grid(denoiser.schedule, "4"), noise=source, eta=0.0)
    assert source.calls == 4
    with pytest.raises(UsageError, match="exhausted"):
        source(x_T)


def test_guidance_shifts_the_ancestral_mean_by_variance_times_gradient():
    denoiser, _ = _toy_denoiser().chain(respaced_grid(NoiseSchedule.create("cosine", 1000), "4"))
    x = torch.randn(2, 3, 4, 4)
    grad = torch.randn_like(x)
    t = torch.tensor([2, 2])
    zeros = ReplayNoise([torch.zeros_like(x), torch.zeros_like(x)])
    from adm.sampling import ddpm_step

    plain = ddpm_step(denoiser, x, t, noise=zeros).sample
    guided = ddpm_step(denoiser, x, t, noise=zeros, cond_fn=lambda x, t, **kw: grad).sample
    variance = denoiser(x, t)[0].variance
    torch.testing.assert_close(guided - plain, variance * grad)


def test_a_long_class_list_is_a_list_not_a_file_name(tmp_path):
    """Hundreds of ids (one per edited image) once reached the file system as a path: ENAMETOOLONG."""
    from adm.sampling.seeds import parse_classes

    ids = [i % 10 for i in range(400)]
    assert parse_classes(",".join(map(str, ids)), 10) == ids
    (tmp_path / "ids.txt").write_text("3 7\n9\n")
    assert parse_classes(str(tmp_path / "ids.txt"), 10) == [3, 7, 9]


def test_guided_ddim_skips_the_classifier_above_the_schedules_start_unless_an_interval_is_given():
    """The original's guided DDIM turns samples into noise at t = 999 of a cosine schedule: by default the
    classifier starts at the schedule's start (with a note); an explicit interval, 0,1 included, is kept."""
    from adm.sampling.settings import SamplerSettings

    cosine, linear = NoiseSchedule.create("cosine", 1000), NoiseSchedule.create("linear", 1000)
    plan = SamplerSettings(sampler="ddim", steps="25", scale=1.0).plan(cosine)
    assert plan.settings.guidance_interval == (0.0, 0.995) and plan.key()["guidance_interval"] == [0.0, 0.995]
    assert any("--guidance-interval 0,1" in n for n in plan.notes) and not plan.warnings
    original = SamplerSettings(sampler="ddim", steps="25", scale=1.0, guidance_interval=(0.0, 1.0)).plan(cosine)
    assert original.settings.guidance_interval == (0.0, 1.0) and not original.warnings and not original.notes
    for settings, schedule in [(dict(sampler="ddim", scale=1.0), linear), (dict(sampler="ddpm", scale=1.0), cosine),
                               (dict(sampler="ddim", scale=0.0), cosine), (dict(sampler="dpm++2m", scale=1.0), cosine),
                               (dict(sampler="ddim", scale=1.0, steps="ddim25"), cosine)]:
        plan = SamplerSettings(**{"steps": "25", **settings}).plan(schedule)
        assert plan.settings.guidance_interval == (0.0, 1.0) and not plan.warnings and not plan.notes, settings


def test_more_solver_levels_than_the_schedule_has_timesteps_are_warned_about():
    from adm.sampling.settings import SamplerSettings

    schedule = NoiseSchedule.create("cosine", 1000)
    (warning,) = SamplerSettings(sampler="dpm++2m", steps="2000").plan(schedule).warnings
    assert "--steps 2000" in warning and "1000 timesteps" in warning and "--steps 1000 or fewer" in warning
    assert not SamplerSettings(sampler="dpm++2m", steps="1000").plan(schedule).warnings
    assert not SamplerSettings(sampler="heun", steps="1999").plan(schedule).warnings  # 1000 levels
    assert "--steps 1999 or fewer" in SamplerSettings(sampler="heun", steps="2001").plan(schedule).warnings[0]


def test_the_sampling_choices_are_declared_once():
    """The API's options and the sampler's settings share each choice's type, range, validation and
    help (adm.sampling.choices); they were declared twice and could drift apart."""
    from adm.api.options import SamplingOptions
    from adm.sampling.choices import SamplingChoices
    from adm.sampling.settings import SamplerSettings

    shared = set(SamplingChoices.model_fields)
    assert shared == {"sampler", "steps", "spacing", "scale", "guidance_interval", "cfg_scale", "cfg_interval",
                      "autoguidance", "autoguidance_interval", "guidance", "threshold", "clip_denoised", "precision"}
    for name in shared:
        for model in (SamplingOptions, SamplerSettings):
            assert repr(model.model_fields[name]) == repr(SamplingChoices.model_fields[name]), (model.__name__, name)
    with pytest.raises(ValueError, match="guidance interval must satisfy"):
        SamplingOptions(guidance_interval=(0.9, 0.1))  # refused at the API's edge, as the settings refuse it
    resolved = SamplerSettings()
    assert (resolved.sampler, resolved.scale, resolved.clip_denoised, resolved.precision) == ("ddpm", 0.0, True, "fp32")


def test_help_texts_name_the_registered_samplers():
    """The sampler lists in the help come from the registry: a new built-in appears in them."""
    from adm.sampling.choices import SamplingChoices
    from adm.sampling.registry import BUILTIN

    sampler_help = SamplingChoices.model_fields["sampler"].description
    steps_help = SamplingChoices.model_fields["steps"].description
    said = steps_help.split("; when unset")[0].split(";")  # what --steps means, per kind of sampler
    meaning = {"evaluations": "network evaluations", "respacing": "a respacing", "own grid": "indices"}
    for name, spec in BUILTIN.items():
        assert name in sampler_help
        (part,) = [p for p in said if meaning[spec.steps_kind] in p]
        assert name in part.split(":")[0], (name, part)
