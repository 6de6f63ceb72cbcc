"""adm.compat.cm: consistency_models' script_util, KarrasDenoiser, karras_sample and random_util over adm.

The released flag sets are read from ``../shared/golden/family-manifests`` (built by
consistency_models' own builder). ``karras_sample`` is checked for what a port relies on: the
adapter's maths, the reference's samplers as written in the papers, and the generator consumed
exactly as the reference consumes it (so one generator gives the reference's images call after
call; tests/test_family_parity.py compares the images with fixtures of the reference itself).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import adm.compat as compat
import golden
from adm.compat import cm
from adm.compat.cm import karras_diffusion, random_util, script_util
from adm.core.errors import UsageError
from adm.diffusion.adapters import EDM, ConsistencyBoundary
from tiny import randomize

SRC = Path(__file__).resolve().parents[1] / "src"
RELEASED = (
    *(f"edm_{d}_ema" for d in ("imagenet64", "bedroom256", "cat256")),
    *(f"cd_{d}_{m}" for d in ("imagenet64", "bedroom256", "cat256") for m in ("l2", "lpips")),
    *(f"ct_{d}" for d in ("imagenet64", "bedroom256", "cat256")),
)
TINY = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="8",
            num_head_channels=16, class_cond=True, resblock_updown=True)
SHAPE = (3, 3, 16, 16)
LABELS = torch.tensor([1, 5, 7])


def family_manifest(name: str) -> dict:
    return json.loads((golden.golden_dir() / "family-manifests" / f"{name}.json").read_text())


def launch_args(manifest: dict) -> tuple[dict, bool]:
    """scripts/launch.sh's flags parsed as image_sample.py parses them: (builder arguments, distillation)."""
    defaults = script_util.model_and_diffusion_defaults()
    parser = argparse.ArgumentParser()
    script_util.add_dict_to_argparser(parser, {"training_mode": "edm", **defaults})
    args = parser.parse_args(manifest["cli_flags"].split())
    return script_util.args_to_dict(args, defaults.keys()), "consistency" in args.training_mode


def squeezed(key: str, shape: list[int]) -> list[int]:
    """The reference's 4-D 1x1 attention projections as adm's (guided-diffusion's) 3-D ones."""
    return shape[:-1] if len(shape) == 4 and key.endswith(("qkv.weight", "proj_out.weight")) else shape


def tiny(distillation: bool = True):
    args = {**script_util.model_and_diffusion_defaults(), **TINY}
    model, diffusion = script_util.create_model_and_diffusion(**args, distillation=distillation)
    return randomize(model, 4).eval(), diffusion


@pytest.fixture(scope="module")
def cd():
    return tiny(distillation=True)


def test_the_package_names_resolve_lazily():
    assert all(getattr(cm, name) is not None for name in cm.__all__)
    assert cm.logger is compat.logger and cm.nn.append_zero is not None and compat.cm is cm


@pytest.mark.parametrize("name", RELEASED)
def test_launch_flags_over_the_defaults_are_the_reference_builders_arguments(name):
    manifest = family_manifest(name)
    args, distillation = launch_args(manifest)
    assert list({**args, "distillation": distillation}.items()) == list(manifest["flags"].items())


@pytest.mark.parametrize("name", ["edm_imagenet64_ema", "cd_bedroom256_lpips", "ct_cat256"])
def test_released_networks_are_built_key_for_key(name):
    manifest = family_manifest(name)
    args, distillation = launch_args(manifest)
    with torch.device("meta"):
        model, diffusion = script_util.create_model_and_diffusion(**args, distillation=distillation)
    got = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert got == [[k, squeezed(k, shape)] for k, shape, _ in manifest["state_dict"]]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]
    assert isinstance(diffusion.adapter, ConsistencyBoundary if distillation else EDM)


def test_attention_is_three_heads_d_whatever_the_flag_says():
    model = script_util.create_model(16, 32, 1, channel_mult="1,2", attention_resolutions="8", num_heads=2)
    block = model.middle_block[1]
    assert block.attention_order == "new" and isinstance(block, cm.unet.AttentionBlock)


def test_a_checkpoint_saved_with_4d_attention_weights_loads_with_torch_load(cd, tmp_path):
    model, _ = cd
    state = model.state_dict()
    theirs = {k: v[..., None] if k.endswith(("qkv.weight", "proj_out.weight")) else v for k, v in state.items()}
    assert theirs["middle_block.1.qkv.weight"].dim() == 4
    torch.save(theirs, tmp_path / "cd.pt")
    fresh, _ = script_util.create_model_and_diffusion(
        **{**script_util.model_and_diffusion_defaults(), **TINY}, distillation=True)
    fresh.load_state_dict(torch.load(tmp_path / "cd.pt"))
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([-500.0, 700.0])
    torch.testing.assert_close(fresh.eval()(x, t, y=LABELS[:2]), model(x, t, y=LABELS[:2]))


# --- KarrasDenoiser ------------------------------------------------------------------------------


def edm_scalings(sigma, sigma_data=0.5, sigma_min=None):
    """Karras et al. 2022 Table 1 (and Song et al. 2023 §3 for the boundary-condition shift)."""
    shift = sigma if sigma_min is None else sigma - sigma_min
    c_skip = sigma_data**2 / (shift**2 + sigma_data**2)
    c_out = shift * sigma_data / (sigma**2 + sigma_data**2) ** 0.5
    return c_skip, c_out, 1 / (sigma**2 + sigma_data**2) ** 0.5


class Recorder(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x, t, **kwargs):
        self.calls.append((x.clone(), t.clone()))
        return self.net(x, t, **kwargs)


@pytest.mark.parametrize("distillation", [False, True])
def test_denoise_is_the_preconditioned_network(distillation):
    model, diffusion = tiny(distillation)
    net, x, sigma = Recorder(model), torch.randn(4, 3, 16, 16), torch.tensor([0.002, 0.3, 5.0, 80.0])
    output, denoised = diffusion.denoise(net, x, sigma, y=torch.tensor([0, 1, 2, 3]))
    c_skip, c_out, c_in = (c.view(-1, 1, 1, 1) for c in edm_scalings(sigma, sigma_min=0.002 if distillation else None))
    x_in, t = net.calls[0]
    torch.testing.assert_close(x_in, c_in * x)
    torch.testing.assert_close(t, 250 * torch.log(sigma))  # 1000 * 0.25 * log(sigma)
    torch.testing.assert_close(denoised, c_skip * x + c_out * output)
    if distillation:  # the boundary condition: f(x, sigma_min) = x
        torch.testing.assert_close(denoised[0], x[0])


def test_scalings_are_the_adapters_in_the_callers_type():
    diffusion = karras_diffusion.KarrasDenoiser(distillation=True)
    sigma = torch.tensor([0.01, 1.0, 40.0])
    for got, expected in zip(diffusion.get_scalings(sigma), edm_scalings(sigma), strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected)
    boundary = diffusion.get_scalings_for_boundary_condition(sigma)
    for got, expected in zip(boundary, edm_scalings(sigma, sigma_min=0.002), strict=True):
        torch.testing.assert_close(got, expected)
    assert all(isinstance(c, float) for c in diffusion.get_scalings(0.5))
    assert diffusion.get_snr(torch.tensor(2.0)) == 0.25 and diffusion.num_timesteps == 40


def test_training_is_a_one_line_refusal():
    with pytest.raises(UsageError, match="does not train"):
        karras_diffusion.KarrasDenoiser().consistency_losses(None, None, 40)


# --- karras_sample and the generator ----------------------------------------------------------


class CountingGenerator:
    """The reference's generator protocol over a seeded torch.Generator, counting the calls."""

    def __init__(self, seed: int):
        self.rng = torch.Generator().manual_seed(seed)
        self.randn_calls = self.randn_like_calls = 0

    def randn(self, *shape, device=None, dtype=torch.float32):
        self.randn_calls += 1
        return torch.randn(*shape, generator=self.rng, dtype=dtype).to(device or "cpu")

    def randn_like(self, x):
        self.randn_like_calls += 1
        return torch.randn(x.shape, generator=self.rng, dtype=x.dtype).to(x.device)


# sampler -> (karras_sample keywords, the reference sampler's randn_like calls)
DRAWS = {
    "heun": (dict(steps=4), 4),  # one per step, even without churn
    "heun-churn": (dict(sampler="heun", steps=4, s_churn=2.0, s_tmin=0.1, s_tmax=30.0), 4),
    "euler": (dict(steps=5), 0),
    "ancestral": (dict(steps=5), 5),  # the last step's noise too (times 0)
    "progdist": (dict(steps=3), 0),
    "onestep": (dict(steps=40), 0),
    "multistep": (dict(steps=40, ts=(0, 22, 39)), 2),  # one per level but the last
}


def sample(model, diffusion, generator, case: str):
    kwargs, _ = DRAWS[case]
    return karras_diffusion.karras_sample(
        diffusion, model, SHAPE, model_kwargs={"y": LABELS}, generator=generator, **{"sampler": case, **kwargs})


@pytest.mark.parametrize("case", DRAWS)
def test_karras_sample_consumes_the_generator_as_the_reference(cd, case):
    model, diffusion = cd
    generator = CountingGenerator(0)
    first = sample(model, diffusion, generator, case)
    assert (generator.randn_calls, generator.randn_like_calls) == (1, DRAWS[case][1])
    second = sample(model, diffusion, generator, case)
    assert not torch.equal(first, second)  # the generator moved on
    again = CountingGenerator(0)
    assert torch.equal(sample(model, diffusion, again, case), first)
    assert torch.equal(sample(model, diffusion, again, case), second)  # call after call
    assert first.abs().max() <= 1


def test_onestep_is_one_clipped_evaluation_at_sigma_max(cd):
    model, diffusion = cd
    x_T = CountingGenerator(2).randn(*SHAPE) * 80.0
    expected = diffusion.denoise(model, x_T, torch.full((3,), 80.0), y=LABELS)[1].clamp(-1, 1)
    torch.testing.assert_close(sample(model, diffusion, CountingGenerator(2), "onestep"), expected)


def test_multistep_renoises_to_the_next_level(cd):
    model, diffusion = cd
    levels = karras_diffusion.get_sigmas_karras(40, 0.002, 80.0).double()
    gen = CountingGenerator(3)
    x = gen.randn(*SHAPE) * 80.0
    for i, j in ((0, 22), (22, 39)):
        x0 = diffusion.denoise(model, x, levels[i].float().expand(3), y=LABELS)[1].clamp(-1, 1)
        x = x0 + gen.randn_like(x) * math.sqrt(max(levels[j] ** 2 - 0.002**2, 0.0))
    torch.testing.assert_close(sample(model, diffusion, CountingGenerator(3), "multistep"), x.clamp(-1, 1))


@pytest.mark.parametrize("ancestral", [False, True])
def test_euler_and_ancestral_take_the_reference_steps(cd, ancestral):
    model, diffusion = cd
    sigmas = karras_diffusion.get_sigmas_karras(5, 0.002, 80.0).double()
    gen = CountingGenerator(4)
    x = gen.randn(*SHAPE) * 80.0
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), strict=True):
        denoised = diffusion.denoise(model, x, torch.full((3,), s), y=LABELS)[1].clamp(-1, 1)
        up = s_next * math.sqrt(1 - s_next**2 / s**2) if ancestral else 0.0  # Euler ancestral's split
        down = math.sqrt(s_next**2 - up**2)
        x = x + (x - denoised) / s * (down - s)
        if ancestral:
            x = x + gen.randn_like(x) * up
    got = sample(model, diffusion, CountingGenerator(4), "ancestral" if ancestral else "euler")
    torch.testing.assert_close(got, x.clamp(-1, 1), atol=1e-5, rtol=1e-5)


def test_callback_gets_the_reference_dicts(cd):
    model, diffusion = cd
    seen = []
    karras_diffusion.karras_sample(diffusion, model, SHAPE, 3, model_kwargs={"y": LABELS}, callback=seen.append,
                                   generator=CountingGenerator(0))
    assert [d["i"] for d in seen] == [0, 1, 2] and set(seen[0]) == {"x", "i", "sigma", "sigma_hat", "denoised"}
    assert seen[0]["sigma"] == pytest.approx(80.0) and seen[0]["x"].abs().max() > 10  # the state before step 0


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(sampler="dpm"), "no sampler 'dpm'"),
    (dict(sampler="multistep"), "needs ts"),
    (dict(sampler="multistep", ts=(0, 22)), "must end at steps - 1"),
    (dict(steps=0), "positive integer"),
])
def test_what_adm_does_not_run_is_a_one_line_error(cd, kwargs, message):
    model, diffusion = cd
    with pytest.raises(UsageError, match=message):
        karras_diffusion.karras_sample(diffusion, model, SHAPE, **{"steps": 40, **kwargs},
                                       model_kwargs={"y": LABELS})


def test_determ_noise_of_a_sample_does_not_depend_on_the_batch():
    whole = random_util.get_generator("determ", 4, seed=3).randn(4, 3, 2, 2)
    later = random_util.get_generator("determ", 4, seed=3)
    later.set_done_samples(2)
    assert torch.equal(later.randn(2, 3, 2, 2), whole[2:])
    per_sample = random_util.get_generator("determ-indiv", 4, seed=3)
    first = per_sample.randn(4, 3, 2, 2)
    other = random_util.get_generator("determ-indiv", 4, seed=3)
    other.set_done_samples(1)
    assert torch.equal(other.randn(3, 3, 2, 2), first[1:])
    seeded = torch.Generator().manual_seed(2 + 4 * 3)  # sample 2's own RNG: i + num_samples * seed
    assert torch.equal(first[2], torch.randn(3, 2, 2, generator=seeded))


def test_unknown_generator_names_the_known_ones():
    with pytest.raises(UsageError, match="dummy, determ, determ-indiv"):
        random_util.get_generator("philox")


# --- porting by one import or none -------------------------------------------------------------


@pytest.fixture
def clean_alias():
    compat.uninstall()
    yield
    compat.uninstall()


def test_install_aliases_cm(clean_alias):
    with compat.installed():
        import cm.script_util
        from cm import dist_util, logger
        from cm.karras_diffusion import karras_sample
        from cm.random_util import get_generator

        assert cm.script_util is script_util and karras_sample is karras_diffusion.karras_sample
        assert get_generator is random_util.get_generator
        assert dist_util is compat.dist_util and logger is compat.logger
        with pytest.raises(ModuleNotFoundError, match="training is `adm train`"):
            importlib.import_module("cm.train_util")
    assert "cm" not in sys.modules


SAMPLE_SCRIPT = '''
"""Sampling as consistency_models' scripts/image_sample.py does it (its imports, its loading)."""
import argparse
import os

import numpy as np
import torch as th

from cm import dist_util, logger
from cm.karras_diffusion import karras_sample
from cm.random_util import get_generator
from cm.script_util import add_dict_to_argparser, args_to_dict, create_model_and_diffusion, model_and_diffusion_defaults

defaults = dict(training_mode="edm", generator="determ", model_path="", seed=42, ts="", steps=40, sampler="heun")
defaults.update(model_and_diffusion_defaults())
parser = argparse.ArgumentParser()
add_dict_to_argparser(parser, defaults)
args = parser.parse_args()
dist_util.setup_dist()
logger.configure()
model, diffusion = create_model_and_diffusion(
    **args_to_dict(args, model_and_diffusion_defaults().keys()), distillation="consistency" in args.training_mode)
model.load_state_dict(dist_util.load_state_dict(args.model_path, map_location="cpu"))
model.to(dist_util.dev()).eval()
generator = get_generator(args.generator, 3, args.seed)
ts = tuple(int(x) for x in args.ts.split(",")) if args.ts else None
sample = karras_sample(diffusion, model, (3, 3, args.image_size, args.image_size), steps=args.steps, ts=ts,
                       model_kwargs={"y": th.tensor([1, 5, 7])}, device=dist_util.dev(), sampler=args.sampler,
                       generator=generator)
np.save(os.path.join(logger.get_dir(), "sample.npy"), sample.numpy())
'''


def test_a_consistency_models_script_runs_unmodified_on_a_4d_checkpoint(cd, tmp_path):
    model, diffusion = cd
    theirs = {k: v[..., None] if k.endswith(("qkv.weight", "proj_out.weight")) else v
              for k, v in model.state_dict().items()}
    torch.save(theirs, tmp_path / "cd.pt")
    (tmp_path / "image_sample.py").write_text(textwrap.dedent(SAMPLE_SCRIPT))
    flags = [f"--{k}={v}" for k, v in TINY.items()]
    env = {**os.environ, "OPENAI_LOGDIR": str(tmp_path / "logs"), "PYTHONPATH": str(SRC)}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "adm.compat", str(tmp_path / "image_sample.py"), "--model_path",
               str(tmp_path / "cd.pt"), "--training_mode", "consistency_distillation", "--sampler", "multistep",
               "--ts", "0,22,39", *flags]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = karras_diffusion.karras_sample(
        diffusion, model, SHAPE, 40, model_kwargs={"y": LABELS}, sampler="multistep", ts=(0, 22, 39),
        generator=random_util.get_generator("determ", 3, 42))
    np.testing.assert_allclose(np.load(tmp_path / "logs" / "sample.npy"), expected.numpy(), atol=1e-6)
