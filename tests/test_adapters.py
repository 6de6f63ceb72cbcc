"""The model adapter: every parameterisation reads its network's output into the same x̂_0.

For each VP adapter the "network" below outputs the exact quantity its parameterisation predicts
(ε, x_0 or v of a known x_0 and ε); then the continuous form (``denoised`` at σ), the original's
chain form (``chain_x0`` at the chain index) and the training target must all give back that x_0
and that output. Adding a parameterisation is one class in ``adm.diffusion.adapters``; this test
is what shows it reads its outputs correctly (``VelocityVP`` is the worked example).
"""

from __future__ import annotations

import math

import pytest
import torch

from adm.core.errors import UsageError
from adm.diffusion.adapters import EDM, ConsistencyBoundary, EpsilonVP, StartXVP, VelocityVP
from adm.diffusion.continuous import NoiseSchedule
from adm.diffusion.gaussian import q_sample
from adm.diffusion.grids import consistency_grid, karras_grid, karras_index_grid, uniform_time_grid
from adm.diffusion.karras import KarrasSchedule
from adm.diffusion.process import ModelVarType
from adm.spec.factory import default_sampler, noise_schedule, parameterization
from adm.spec.flags import parse_model_flags


def _truth(adapter, x0, eps, abar):
    """What a perfect network of this parameterisation outputs."""
    if isinstance(adapter, EpsilonVP):
        return eps
    if isinstance(adapter, StartXVP):
        return x0
    return abar.sqrt() * eps - (1 - abar).sqrt() * x0  # v


@pytest.mark.parametrize("adapter", [EpsilonVP(), StartXVP(), VelocityVP()], ids=lambda a: a.name)
def test_vp_adapters_read_a_perfect_output_back_to_x0_on_the_chain_and_in_continuous_time(adapter):
    schedule = NoiseSchedule.create("cosine", 1000)
    process = schedule.chain(list(range(1000)))
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=generator, dtype=torch.float64) * 2 - 1
    eps = torch.randn(4, 3, 8, 8, generator=generator, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 990])
    abar = process.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = q_sample(process, x0, t, eps)
    output = _truth(adapter, x0, eps, abar)

    # the chain's float32 formulas, from the process's own tables
    torch.testing.assert_close(adapter.chain_x0(process, output.float(), x_t.float(), t), x0.float(), atol=2e-4, rtol=0)
    # the training target is the output a perfect network gives
    torch.testing.assert_close(adapter.chain_target(process, x0.float(), x_t.float(), t, eps.float()), output.float(),
                               atol=1e-5, rtol=0)
    # continuous time: x = x_0 + σ·ε, the network sees c_in·x = x_t
    sigma = ((1 - abar) / abar).sqrt().view(-1)
    x_ve = x0 + sigma.view(-1, 1, 1, 1) * eps
    torch.testing.assert_close(adapter.network_input(x_ve, sigma), x_t, atol=1e-6, rtol=0)  # q_sample: float32 tables
    torch.testing.assert_close(adapter.denoised(output, x_ve, sigma), x0, atol=1e-9, rtol=1e-9)


def test_predict_v_flag_builds_the_v_adapter_and_its_training_target():
    flags = parse_model_flags("--image_size 16 --num_channels 32 --channel_mult 1,2 --predict_v True")
    adapter, _ = parameterization(flags)
    assert isinstance(adapter, VelocityVP) and adapter.variance == ModelVarType.FIXED_LARGE
    with pytest.raises(UsageError, match="predict_v and --predict_xstart"):
        parse_model_flags("--image_size 16 --num_channels 32 --channel_mult 1,2 --predict_v True --predict_xstart True")


def test_edm_scalings_are_karras_table_1():
    sigma = torch.tensor([0.002, 0.5, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in = EDM(0.5).scalings(sigma)
    torch.testing.assert_close(c_skip, 0.25 / (sigma**2 + 0.25))
    torch.testing.assert_close(c_out, sigma * 0.5 / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(c_in, 1 / (sigma**2 + 0.25).sqrt())


def test_a_consistency_model_is_the_identity_at_sigma_min():
    """The boundary condition f(x, σ_min) = x holds exactly, whatever the network outputs."""
    adapter = ConsistencyBoundary(0.5, 0.002)
    x = torch.randn(3, 3, 4, 4)
    wild = torch.randn(3, 3, 4, 4) * 100
    assert torch.equal(adapter.denoised(wild, x, torch.full((3,), 0.002, dtype=torch.float64)), x)
    # and it is EDM's preconditioning away from the boundary
    far = torch.tensor([80.0], dtype=torch.float64)
    for ours, edm in zip(adapter.scalings(far), EDM(0.5).scalings(far), strict=True):
        assert float(ours) == pytest.approx(float(edm), rel=1e-4)


def test_the_denoiser_gives_the_network_its_own_time_and_input():
    """EDM / consistency networks see c_in·x and 250·ln σ; VP networks x_t and the timestep."""
    from adm.sampling.denoiser import Denoiser

    seen = {}

    def network(x_in, time):
        seen["x"], seen["t"] = x_in, time
        return torch.zeros_like(x_in)

    x = torch.ones(2, 3, 4, 4)
    Denoiser(network, KarrasSchedule(), EDM(0.5), clip_denoised=False)(x, 2.0)
    torch.testing.assert_close(seen["t"], torch.full((2,), 250 * math.log(2.0)))
    torch.testing.assert_close(seen["x"], x / math.sqrt(4.25))
    vp = NoiseSchedule.create("linear", 1000)
    sigma = float(vp.log_sigmas[500].exp())
    Denoiser(network, vp, EpsilonVP(), clip_denoised=False)(x, sigma)
    torch.testing.assert_close(seen["t"], torch.full((2,), 500.0))


def test_karras_schedule_time_is_the_rho_ramp():
    schedule = KarrasSchedule(0.002, 80.0)
    taus = torch.tensor([0.0, 250.0, 999.0], dtype=torch.float64)
    torch.testing.assert_close(schedule.tau_at(schedule.sigma_at(taus)), taus)
    assert float(schedule.sigma_at(999)) == pytest.approx(80.0) and float(schedule.sigma_at(0)) == pytest.approx(0.002)
    # --spacing time on an EDM model is the EDM grid (Karras ρ = 7)
    torch.testing.assert_close(uniform_time_grid(schedule, 40), karras_grid(schedule, 40))


def test_consistency_grids_read_the_reference_index_lists():
    schedule = KarrasSchedule(0.002, 80.0)
    levels = karras_grid(schedule, 40)
    two = consistency_grid(schedule, "0,22,39", 40)
    torch.testing.assert_close(two, torch.stack([levels[0], levels[22], torch.tensor(0.0, dtype=torch.float64)]))
    torch.testing.assert_close(consistency_grid(schedule, "1", 40), torch.tensor([80.0, 0.0], dtype=torch.float64))
    assert consistency_grid(schedule, "2", 40).tolist()[:2] == [float(levels[0]), float(levels[20])]
    # an edit starts at its own level and keeps the listed levels below it
    assert karras_index_grid(schedule, [0, 22, 39], 40, sigma_max=5.0).tolist() == [5.0, float(levels[22]), 0.0]
    for bad, match in (("0,39,22", "increasing"), ("0,45", "0..39"), ("a,b", "index list")):
        with pytest.raises(UsageError, match=match):
            consistency_grid(schedule, bad, 40)


def test_consistency_sampler_renoises_to_each_level_as_algorithm_1():
    """x̂_0 = f(x, σ_i), x = x̂_0 + √(σ_{i+1}² − σ_min²)·z, the last step returning x̂_0."""
    from adm.sampling.denoiser import Denoiser
    from adm.sampling.noise import ReplayNoise
    from adm.sampling.registry import get_sampler

    schedule, adapter = KarrasSchedule(0.002, 80.0), ConsistencyBoundary(0.5, 0.002)
    calls = []

    def network(x_in, time):
        calls.append(float(time[0]))
        return torch.tanh(x_in) * 0.3

    denoiser = Denoiser(network, schedule, adapter, clip_denoised=True)
    sigmas = consistency_grid(schedule, "0,22,39", 40)
    x_T = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 80.0
    zs = [torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(k)) for k in (2, 3)]
    spec = get_sampler("cm")
    got = spec(denoiser, x_T, sigmas, noise=ReplayNoise(zs), options=spec.parse_options({}))
    assert len(calls) == 2  # two evaluations: index 39 is σ_min, where f is the identity

    x = x_T
    for i, z in enumerate(zs):
        x0 = denoiser(x, float(sigmas[i]))
        nxt = max(float(sigmas[i + 1]), 0.002)
        x = x0 + z * math.sqrt(nxt**2 - 0.002**2)
    torch.testing.assert_close(got, x)


def test_heun_churn_adds_noise_only_inside_its_range():
    from adm.sampling.denoiser import Denoiser
    from adm.sampling.noise import PerSampleNoise
    from adm.sampling.registry import get_sampler

    schedule = KarrasSchedule(0.002, 80.0)
    denoiser = Denoiser(lambda x, t: torch.tanh(x), schedule, EDM(0.5), clip_denoised=False)
    sigmas = karras_grid(schedule, 6)
    spec = get_sampler("heun")
    x_T = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 80

    def run(**options):
        return spec(denoiser, x_T, sigmas, noise=PerSampleNoise.from_seeds([0, 1]), options=spec.parse_options(options))

    plain = run()
    assert not torch.equal(run(s_churn=10.0), plain)
    assert torch.equal(run(s_churn=10.0, s_tmin=100.0), plain)  # no level at or above σ 100: no churn
    with pytest.raises(UsageError, match="s_churn"):
        spec.parse_options({"s_churn": -1})


def test_flag_sets_name_their_family_and_its_defaults():
    cm = parse_model_flags("--training_mode consistency_training --image_size 16 --num_channels 32 --channel_mult 1,2 "
                           "--attention_resolutions 8")
    assert cm.family == "consistency-models"
    assert isinstance(noise_schedule(cm), KarrasSchedule) and default_sampler(cm) == "cm"
    assert isinstance(parameterization(cm)[0], ConsistencyBoundary)
    edm = cm.replace(training_mode="edm")
    assert isinstance(parameterization(edm)[0], EDM) and default_sampler(edm) == "heun"
    improved = parse_model_flags("--family improved-diffusion --image_size 32 --num_channels 128 --num_res_blocks 3 "
                                 "--learn_sigma True --dropout 0.3 --diffusion_steps 4000 --noise_schedule cosine")
    assert improved.rescale_timesteps and improved.rescale_learned_sigmas  # improved-diffusion's own defaults
    assert noise_schedule(improved).num_steps == 4000
    guided = parse_model_flags("--image_size 32 --num_channels 128")
    assert not guided.rescale_timesteps
    for bad, match in (("--training_mode edm --learn_sigma True", "no learned variance"),
                       ("--training_mode edm --family guided-diffusion", "does not fit"),
                       ("--training_mode edm --sigma_min 90", "0 < min < max")):
        with pytest.raises(UsageError, match=match):
            parse_model_flags(f"--image_size 16 --num_channels 32 --channel_mult 1,2 {bad}")


def test_discrete_samplers_refuse_a_continuous_model_naming_the_ones_that_work():
    from adm.sampling.settings import SamplerSettings

    schedule = KarrasSchedule()
    for sampler in ("ddpm", "ddim"):
        with pytest.raises(UsageError, match="discrete Gaussian chain") as err:
            SamplerSettings(sampler=sampler).plan(schedule)
        assert "heun" in err.value.hint and "cm" in err.value.hint
    with pytest.raises(UsageError, match="respaced"):
        SamplerSettings(sampler="dpm++2m", spacing="respaced").plan(schedule)
    with pytest.raises(UsageError, match="not --spacing"):
        SamplerSettings(sampler="cm", spacing="karras").plan(schedule)
    plan = SamplerSettings(sampler="cm", steps="0,22,39", options={"karras_steps": 40}).plan(schedule)
    assert plan.evaluations == 2
