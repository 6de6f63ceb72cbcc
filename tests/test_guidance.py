"""Guidance as wrappers around the model: classifier-free guidance and autoguidance mix exactly what
the formulas say, on the continuous denoiser and on the original's chains, and compose."""

from __future__ import annotations

import pytest
import torch

from adm.core.errors import UsageError
from adm.diffusion.adapters import EpsilonVP
from adm.diffusion.continuous import NoiseSchedule
from adm.diffusion.grids import respaced_grid
from adm.diffusion.process import ModelVarType
from adm.sampling.denoiser import Denoiser
from adm.sampling.guidance import Autoguidance, ClassifierFree, OutputGuidance
from adm.sampling.guidance.protocol import GuidanceContext
from adm.sampling.guidance.registry import get_guidance
from adm.sampling.noise import ReplayNoise
from adm.sampling.registry import get_sampler
from adm.sampling.settings import SamplerSettings

SCHEDULE = NoiseSchedule.create("linear", 100)
MU = torch.tensor([-0.6, 0.1, 0.8])  # class means of a Gaussian toy problem, one per class (class 3: null)
S = 0.3


def gaussian_eps(x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The exact ε of data N(μ_y, S²) (the null class: N(0, S² + 0.5²), a broad "unconditional")."""
    abar = SCHEDULE.alphas_cumprod[t.round().long()].view(-1, 1, 1, 1).float()
    mean = torch.where(y.view(-1, 1, 1, 1) == 3, torch.tensor(0.0), MU[y.clamp(max=2)].view(-1, 1, 1, 1))
    var = torch.where(y.view(-1, 1, 1, 1) == 3, torch.tensor(S**2 + 0.25), torch.tensor(S**2))
    # x_t = √ᾱ x0 + √(1−ᾱ) ε, x0 ~ N(m, v): E[ε | x_t] = √(1−ᾱ) (x_t − √ᾱ m) / (ᾱ v + 1 − ᾱ)
    return (1 - abar).sqrt() * (x_t - abar.sqrt() * mean) / (abar * var + 1 - abar)


def net(x_t, t, y):
    return gaussian_eps(x_t, t, y)


def test_classifier_free_guidance_is_conditional_plus_w_times_the_difference():
    adapter = EpsilonVP(ModelVarType.FIXED_SMALL)
    y = torch.tensor([0, 1, 2])
    x = torch.randn(3, 1, 2, 2) * 3
    sigma = float(SCHEDULE.log_sigmas[60].exp())
    plain = Denoiser(net, SCHEDULE, adapter, {"y": y}, clip_denoised=False)
    uncond = Denoiser(net, SCHEDULE, adapter, {"y": torch.full_like(y, 3)}, clip_denoised=False)
    for w in (0.0, 1.5, 4.0):
        guided = Denoiser(net, SCHEDULE, adapter, {"y": y}, ClassifierFree(scale=w, null_label=3), clip_denoised=False)
        expected = plain(x, sigma) + w * (plain(x, sigma) - uncond(x, sigma))
        torch.testing.assert_close(guided(x, sigma), expected, atol=1e-5, rtol=1e-5)


def test_autoguidance_extrapolates_away_from_the_guide_and_composes_with_cfg():
    adapter = EpsilonVP(ModelVarType.FIXED_SMALL)
    y = torch.tensor([0, 2])
    x = torch.randn(2, 1, 2, 2) * 2
    sigma = float(SCHEDULE.log_sigmas[40].exp())

    def guide(x_t, t, y):  # a "weaker" model: the right answer, blurred towards zero
        return 0.7 * gaussian_eps(x_t, t, y)

    main = Denoiser(net, SCHEDULE, adapter, {"y": y}, clip_denoised=False)
    weak = Denoiser(guide, SCHEDULE, adapter, {"y": y}, clip_denoised=False)
    auto = Denoiser(net, SCHEDULE, adapter, {"y": y}, Autoguidance(scale=2.0, guide=guide), clip_denoised=False)
    torch.testing.assert_close(auto(x, sigma), main(x, sigma) + 2.0 * (main(x, sigma) - weak(x, sigma)), atol=1e-5, rtol=1e-5)
    both = Denoiser(net, SCHEDULE, adapter, {"y": y},
                    (ClassifierFree(scale=1.0, null_label=3), Autoguidance(scale=2.0, guide=guide)), clip_denoised=False)
    assert not torch.allclose(both(x, sigma), auto(x, sigma))


def test_the_interval_skips_the_weaker_prediction_outside_it():
    calls = []

    def counting(x_t, t, y):
        calls.append(int((y == 3).all()))
        return gaussian_eps(x_t, t, y)

    adapter = EpsilonVP(ModelVarType.FIXED_SMALL)
    y = torch.tensor([0, 1])
    guided = Denoiser(counting, SCHEDULE, adapter, {"y": y}, ClassifierFree(scale=2.0, interval=(0.0, 0.5), null_label=3))
    guided(torch.randn(2, 1, 2, 2), float(SCHEDULE.log_sigmas[80].exp()))  # t/T = 0.8: outside
    assert calls == [0]
    guided(torch.randn(2, 1, 2, 2), float(SCHEDULE.log_sigmas[20].exp()))  # inside: one unconditional pass
    assert calls == [0, 0, 1]


def test_on_the_chains_guidance_mixes_epsilon_so_ddim_is_ddim_on_the_guided_epsilon():
    adapter = EpsilonVP(ModelVarType.FIXED_SMALL)
    y = torch.tensor([0, 1, 2])
    w = 3.0

    def mixed(x_t, t, y):
        cond = gaussian_eps(x_t, t, y)
        return cond + w * (cond - gaussian_eps(x_t, t, torch.full_like(y, 3)))

    sigmas = respaced_grid(SCHEDULE, "ddim10")
    x_T = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    zs = [torch.zeros_like(x_T)] * 10
    spec = get_sampler("ddim")
    by_hand = spec(Denoiser(mixed, SCHEDULE, adapter, {"y": y}), x_T, sigmas, noise=ReplayNoise(zs))
    wrapped = spec(Denoiser(net, SCHEDULE, adapter, {"y": y}, ClassifierFree(scale=w, null_label=3)), x_T, sigmas,
                   noise=ReplayNoise(zs))
    assert torch.equal(wrapped, by_hand)


def test_a_learned_variance_comes_from_the_strong_prediction():
    from adm.sampling.guidance.protocol import mix

    strong = torch.cat([torch.ones(2, 3, 1, 1), torch.full((2, 3, 1, 1), 5.0)], dim=1)
    weak = torch.cat([torch.zeros(2, 3, 1, 1), torch.full((2, 3, 1, 1), -9.0)], dim=1)
    out = mix(strong, weak, 2.0, 3, torch.tensor([True, False]))
    assert out[0, :3].eq(3.0).all() and out[1, :3].eq(1.0).all() and out[:, 3:].eq(5.0).all()


def test_the_plan_decides_once_which_methods_run_and_what_they_need():
    settings = SamplerSettings(sampler="dpm++2m", cfg_scale=2.0, autoguidance=1.0)
    assert [name for name, _, _ in settings.methods()] == ["cfg", "autoguidance"]
    assert settings.guided and settings.uses("labels") and settings.uses("guide") and not settings.uses("classifier")
    plan = settings.plan(SCHEDULE)
    assert plan.needs_labels(class_cond=False)
    assert not SamplerSettings(sampler="dpm++2m").guided
    with pytest.raises(UsageError, match="has its own option"):
        SamplerSettings.make(sampler="dpm++2m", guidance={"cfg": 2.0})
    with pytest.raises(UsageError, match="unknown guidance"):
        get_guidance("cfgg")


def test_methods_refuse_a_run_without_what_they_need():
    with pytest.raises(UsageError, match="null class"):
        get_guidance("cfg").builder(1.0, (0.0, 1.0), GuidanceContext(labels=torch.tensor([0])))
    with pytest.raises(UsageError, match="guide model"):
        get_guidance("autoguidance").builder(1.0, (0.0, 1.0), GuidanceContext())


def test_a_new_method_is_one_class():
    """A guidance method of one's own: an OutputGuidance with its weaker prediction (here: the
    model at a quarter of its input, a stand-in for any 'bad version' of the model)."""

    class Dimmed(OutputGuidance):
        name = "dimmed"

        def weak(self, network, x_in, time, kwargs):
            return network(x_in * 0.25, time, **kwargs)

    adapter = EpsilonVP(ModelVarType.FIXED_SMALL)
    y = torch.tensor([1])
    x, sigma = torch.randn(1, 1, 2, 2), float(SCHEDULE.log_sigmas[30].exp())
    guided = Denoiser(net, SCHEDULE, adapter, {"y": y}, Dimmed(scale=1.0), clip_denoised=False)
    plain = Denoiser(net, SCHEDULE, adapter, {"y": y}, clip_denoised=False)
    assert not torch.allclose(guided(x, sigma), plain(x, sigma))


GUIDANCE_PLUGIN = '''
"""A third party's guidance method: extrapolate away from the model at a quarter of its input."""
from dataclasses import dataclass
from adm.sampling.guidance import GuidanceSpec, OutputGuidance


@dataclass(frozen=True)
class Dimmed(OutputGuidance):
    name = "dimmed"

    def weak(self, network, x_in, time, kwargs):
        return network(x_in * 0.25, time, **kwargs)


def build(scale, interval, context):
    return Dimmed(scale=scale, interval=interval)


DIMMED = GuidanceSpec("dimmed", build, "a plugin's guidance")
'''


@pytest.mark.slow
def test_a_plugin_guidance_is_chosen_by_name_and_keyed_like_a_builtin(tmp_path):
    """Installed as a real distribution (entry point adm.guidance), used by a fresh adm process."""
    import json
    import textwrap

    import numpy as np

    from tests_support import install_plugin, run_adm_with

    root = install_plugin(tmp_path / "site", "adm_dimmed", textwrap.dedent(GUIDANCE_PLUGIN),
                          {"adm.guidance": {"dimmed": "adm_dimmed:DIMMED"}})
    plain, guided = tmp_path / "p.npz", tmp_path / "g.npz"
    common = ["sample", "--preset", "digits", "--scale", "0", "--sampler", "dpm++2m", "--steps", "6", "-n", "3", "-q"]
    assert run_adm_with(root, *common, "--out", plain, cwd=tmp_path).returncode == 0
    done = run_adm_with(root, *common, "--guidance", "dimmed=2", "--out", guided, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(guided.with_suffix(".json").read_text())["key"]["guidance"] == {"dimmed": 2.0}
    with np.load(plain) as a, np.load(guided) as b:
        assert not np.array_equal(a["arr_0"], b["arr_0"])
