"""The top of the cosine schedule on the shipped digits model (docs/sampling.md, "The cosine
schedule's start"): solvers start at t = 995, where unclipped solvers and float32 Heun behave, and
the original's guided DDIM, which still starts at t = 999, is guided from there on by default."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import adm
from adm.cli.main import app
from adm.sampling.denoiser import Denoiser
from adm.sampling.noise import PerSampleNoise
from adm.sampling.settings import SamplerSettings

runner = CliRunner()


@pytest.fixture(scope="module")
def digits():
    return adm.load_model("digits", with_classifier=False, device="cpu")


def _solve(loaded, settings: SamplerSettings, x: torch.Tensor, network=None) -> torch.Tensor:
    plan = settings.plan(loaded.schedule)
    labels = torch.arange(len(x)) % 10
    denoiser = Denoiser(network or loaded.model, loaded.schedule, loaded.adapter, {"y": labels},
                        clip_denoised=settings.clip_denoised)
    with torch.no_grad():
        return plan.spec(denoiser, x, plan.sigmas, noise=None, options=plan.options)


def _noise(count: int) -> torch.Tensor:
    return PerSampleNoise.from_seeds(range(count)).randn((count, 3, 16, 16))


def test_unclipped_solvers_end_near_the_data_range(digits):
    """From t = 999 the first x̂₀ = x − 20291·ε̂ reached ~10³ and so did the samples."""
    for spacing in ("logsnr", "time"):
        settings = SamplerSettings(sampler="dpm++2m", steps="10", spacing=spacing, clip_denoised=False)
        assert float(_solve(digits, settings, _noise(4)).abs().max()) < 5.0, spacing


def test_float32_heun_on_a_time_grid_matches_float64(digits):
    """From σ = 20291 float32 lost ~2 in x in Heun's first step (x ~ 2·10⁴ cancelling to ~8)."""
    wide = copy.deepcopy(digits.model).double()
    settings = SamplerSettings(sampler="heun", steps="9", spacing="time")
    x = _noise(4)
    narrow = _solve(digits, settings, x)
    exact = _solve(digits, settings, x.double(), lambda x, t, **kw: wide(x.double(), t.double(), **kw))
    assert float((narrow.double() - exact).abs().max()) < 0.01


def test_guided_ddim_on_the_cosine_schedule_is_not_noise_and_says_what_it_did(tmp_path):
    """`adm sample --preset digits --sampler ddim` wrote saturated noise, silently; --guidance-interval 0,1
    still runs the original's guided DDIM exactly (noise included)."""

    def saturated(path) -> float:
        with np.load(path) as data:
            images = data["arr_0"]
        return float(((images == 0) | (images == 255)).mean())

    common = ["sample", "--preset", "digits", "--sampler", "ddim", "--steps", "10", "-n", "4", "--grid", "0"]
    result = runner.invoke(app, [*common, "--out", str(tmp_path / "d.npz")])
    assert result.exit_code == 0, result.output
    assert "note: guided ddim skips the classifier above t/T 0.995" in " ".join(result.output.split())
    original = runner.invoke(app, [*common, "--guidance-interval", "0,1", "--out", str(tmp_path / "o.npz")])
    assert original.exit_code == 0 and "skips the classifier" not in original.output
    assert saturated(tmp_path / "d.npz") < 0.35 < 0.5 < saturated(tmp_path / "o.npz")  # real digits: ~0.30
