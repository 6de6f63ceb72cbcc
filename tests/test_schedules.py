"""Beta schedules, derived arrays and respacing against the original (float64, rtol 1e-12)."""

from __future__ import annotations

import pytest
import torch

import golden
from adm.compat.diffusion import get_named_beta_schedule
from adm.compat.diffusion import space_timesteps as compat_space_timesteps
from adm.core.errors import UsageError
from adm.diffusion import GaussianProcess, beta_schedule, respace, space_timesteps

CASE = "schedules_T1000"
DERIVED = [
    "alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
]


def _close64(got: torch.Tensor, expected: torch.Tensor):
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


def _schedules():
    return [
        (s["noise_schedule"], s["diffusion_steps"], s["respacings"])
        for s in golden.case(CASE)["schedules"]
    ]


def test_golden_schedules_and_derived_arrays():
    io = golden.io(CASE)
    for name, steps, _ in _schedules():
        betas = beta_schedule(name, steps)
        _close64(betas, io[f"{name}{steps}/betas"])
        process = GaussianProcess.from_betas(betas)
        for array in DERIVED:
            _close64(getattr(process, array), io[f"{name}{steps}/{array}"])


def test_golden_respacing():
    io = golden.io(CASE)
    for name, steps, respacings in _schedules():
        betas = beta_schedule(name, steps)
        for spec in respacings:
            prefix = f"{name}{steps}/respace[{spec}]"
            kept = space_timesteps(steps, spec)
            expected_kept = io[f"{prefix}/use_timesteps"]
            assert torch.equal(torch.tensor(kept), expected_kept), spec
            assert kept == golden.case(CASE)["respaced"][prefix]["use_timesteps"]
            new_betas, timestep_map = respace(betas, kept)
            assert torch.equal(timestep_map, io[f"{prefix}/timestep_map"])
            _close64(new_betas, io[f"{prefix}/betas"])


def test_notes_reference_values():
    linear = beta_schedule("linear", 1000)
    assert linear[0].item() == 1e-4
    assert linear[1].item() == pytest.approx(1.1991991991991993e-4, rel=1e-14)
    assert linear[998].item() == pytest.approx(0.01998008008008008, rel=1e-14)
    assert linear[999].item() == 0.02
    acp = GaussianProcess.from_betas(linear).alphas_cumprod
    assert acp[999].item() == pytest.approx(4.035829765375676e-05, rel=1e-12)

    cosine = beta_schedule("cosine", 1000)
    assert cosine[0].item() == pytest.approx(4.128422482196914e-05, rel=1e-12)
    assert cosine[1].item() == pytest.approx(4.614175273665033e-05, rel=1e-12)
    assert cosine[998].item() == pytest.approx(0.7499993929011166, rel=1e-12)
    assert cosine[999].item() == 0.999
    acp = GaussianProcess.from_betas(cosine).alphas_cumprod
    assert acp[999].item() == pytest.approx(2.4287669070348567e-09, rel=1e-12)

    process = GaussianProcess.create("linear", 1000, "250")
    assert process.num_steps == 250
    assert process.timestep_map[:5].tolist() == [0, 4, 8, 12, 16]
    assert process.timestep_map[-3:].tolist() == [991, 995, 999]
    assert process.betas[0].item() == pytest.approx(1e-4, rel=1e-12)
    assert process.betas[1].item() == pytest.approx(5.9906556448e-4, rel=1e-10)
    assert process.betas[249].item() == pytest.approx(0.07751934499235003, rel=1e-12)

    assert beta_schedule("linear", 4000)[0].item() == pytest.approx(2.5e-5, rel=1e-14)
    assert beta_schedule("linear", 4000)[-1].item() == pytest.approx(0.005, rel=1e-14)


def test_respacing_shapes():
    ddim25 = space_timesteps(1000, "ddim25")
    assert ddim25 == list(range(0, 1000, 40))
    assert 999 not in ddim25
    assert space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    assert space_timesteps(1000, "") == list(range(1000))
    assert space_timesteps(1000, [1000]) == list(range(1000))
    assert space_timesteps(1000, "25")[:4] == [0, 42, 83, 125]
    assert space_timesteps(1000, "25")[-3:] == [916, 957, 999]
    assert space_timesteps(1000, "10,10,5")[:3] == [0, 37, 74]
    assert space_timesteps(1000, "10,10,5")[-4:] == [750, 833, 916, 999]
    assert compat_space_timesteps(1000, "ddim25") == set(range(0, 1000, 40))


def test_section_positions_accumulate_like_the_original():
    """The original adds the fractional stride repeatedly; 10 × 49.95 summed is 499.4999…,
    so "21" keeps 499, where round(10 * 49.95) = round(499.5) would give 500."""
    kept = space_timesteps(1000, "21")
    assert 499 in kept and 500 not in kept


@pytest.mark.parametrize("spec", ["ddim300", "abc", "10,2000", "ddimx", "10,,5", "-5"])
def test_invalid_respacing_is_a_usage_error(spec):
    with pytest.raises(UsageError) as info:
        space_timesteps(1000, spec)
    assert "\n" not in str(info.value)


def test_unknown_schedule_is_a_usage_error():
    with pytest.raises(UsageError):
        beta_schedule("quadratic", 1000)
    with pytest.raises(UsageError):
        get_named_beta_schedule("quadratic", 1000)


def test_compat_schedule_is_numpy_float64():
    betas = get_named_beta_schedule("cosine", 1000)
    assert betas.dtype.name == "float64" and betas.shape == (1000,)


def test_identity_respacing_recomputes_betas_like_the_original():
    """create() always respaces (as create_gaussian_diffusion does): same maths, own last bits."""
    process = GaussianProcess.create("linear", 1000)
    assert torch.equal(process.timestep_map, torch.arange(1000))
    torch.testing.assert_close(process.betas, beta_schedule("linear", 1000), rtol=1e-9, atol=0)


def test_sampling_starts_at_the_schedules_start_on_an_integer_timestep():
    """Grids start at the highest timestep with λ ≥ −5.1: t = 995 of the 1000-step cosine schedule (not
    t = 999, σ = 20291, whose clipped β only amplifies the network's errors); a linear schedule whole."""
    from adm.diffusion.continuous import START_LOG_SNR, NoiseSchedule
    from adm.diffusion.grids import make_grid

    cosine, linear = NoiseSchedule.create("cosine", 1000), NoiseSchedule.create("linear", 1000)
    assert (cosine.start_timestep, linear.start_timestep) == (995, 999)
    assert -float(cosine.log_sigmas[995]) >= START_LOG_SNR > -float(cosine.log_sigmas[996])
    assert NoiseSchedule.create("cosine", 4000).sigma_start < 200 < cosine.sigma_max
    for spacing in ("time", "logsnr", "karras"):
        top = make_grid(cosine, spacing, "10")[0]
        assert float(top) == pytest.approx(cosine.sigma_start, rel=1e-12)
        assert float(cosine.tau_at(top)) == pytest.approx(995.0, abs=1e-9)  # a label the network was trained on
        assert float(make_grid(linear, spacing, "10")[0]) == pytest.approx(linear.sigma_max, rel=1e-12)
        capped = make_grid(cosine, spacing, "10", max_timestep=999.0)  # an edit at strength 1
        assert float(capped[0]) == pytest.approx(cosine.sigma_start, rel=1e-12)


def test_the_originals_respaced_chain_keeps_its_top_and_an_edit_starts_below_the_schedules_start():
    from adm.diffusion.continuous import NoiseSchedule
    from adm.diffusion.grids import respaced_timesteps

    cosine = NoiseSchedule.create("cosine", 1000)
    assert respaced_timesteps(cosine, "25")[-1] == 999  # ddpm/ddim from noise: the original's chain, exactly
    assert respaced_timesteps(cosine, "25", max_timestep=999)[-1] == 957  # strength 1: its highest level <= 995
    assert respaced_timesteps(cosine, "ddim25", max_timestep=999)[-1] == 960
    assert respaced_timesteps(NoiseSchedule.create("linear", 1000), "25", max_timestep=999)[-1] == 999
