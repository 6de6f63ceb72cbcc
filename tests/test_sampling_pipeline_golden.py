"""The sampling path the CLI uses (``adm.sampling.run.run_sampler``) reproduces the original's
guided DDPM and DDIM trajectories (golden case sampling_16px_ddim10_guided)."""

import pytest
import torch

import adm.compat as compat
import golden
from adm.diffusion.continuous import NoiseSchedule
from adm.sampling.guidance.protocol import GuidanceContext
from adm.sampling.noise import ReplayNoise
from adm.sampling.run import run_sampler
from adm.sampling.settings import SamplerSettings
from adm.spec.factory import parameterization
from adm.spec.flags import DiffusionFlags

CASE = "sampling_16px_ddim10_guided"


def network(case_name):
    constructor = golden.case(case_name)["constructor"]
    model = getattr(compat, constructor["class"])(**constructor["kwargs"]).eval()
    model.load_state_dict(golden.weights(case_name))
    return model


@pytest.fixture(scope="module")
def nets():
    spec = golden.case(CASE)
    return network(spec["model_case"]), network(spec["classifier_case"])


@pytest.mark.parametrize(
    "name, sampler, respacing_key, guided",
    [("ddim", "ddim", "ddim_respacing", False), ("ddim_guided", "ddim", "ddim_respacing", True),
     ("p_sample_guided", "ddpm", "psample_respacing", True)],
)
def test_cli_sampling_path_matches_the_original(nets, name, sampler, respacing_key, guided):
    spec, io = golden.case(CASE), golden.io(CASE)
    model, classifier = nets
    flags = DiffusionFlags(**spec["diffusion_flags"])
    schedule = NoiseSchedule.create(flags.noise_schedule, flags.diffusion_steps)
    param, _ = parameterization(flags)
    settings = SamplerSettings(
        sampler=sampler, steps=spec[respacing_key], scale=spec["classifier_scale"] if guided else 0.0,
        options={"eta": spec["eta"]} if sampler == "ddim" else {},
    )
    steps = io["p_sample/step_noise"] if sampler == "ddpm" else torch.zeros_like(io["p_sample/step_noise"])
    trajectory = []
    final = run_sampler(
        model, schedule, param, settings.plan(schedule), io["noise"], ReplayNoise(steps),
        model_kwargs={"y": io["y"]}, context=GuidanceContext(io["y"], classifier if guided else None),
        callback=lambda step: trajectory.append(step["x"]),
    )
    assert (torch.stack(trajectory) - io[f"{name}/samples"]).abs().max() <= 1e-3
    assert (final - io[f"{name}/final"]).abs().max() <= 1e-3
