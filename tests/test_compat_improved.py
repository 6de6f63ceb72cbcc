"""adm.compat.improved: improved-diffusion's script_util names, defaults and signatures over adm.

The released flag sets are read from ``../shared/golden/family-manifests`` (built by
improved-diffusion's own builders): parsing a README flag string over our defaults must give the
reference builder's full arguments, and the network its state_dict, key for key.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys

import pytest
import torch

import adm.compat as compat
import golden
from adm.compat import improved
from adm.compat.improved import script_util
from adm.compat.improved.gaussian_diffusion import GaussianDiffusion
from adm.compat.improved.unet import AttentionBlock, QKVAttention, UNetModel
from tests_support import assert_manifest
from tiny import randomize

RELEASED = (
    "cifar10_uncond_50M_500K", "cifar10_uncond_vlb_50M_500K", "imagenet64_uncond_100M_1500K",
    "imagenet64_uncond_vlb_100M_1500K", "imagenet64_cond_270M_250K", "upsample_cond_500K",
    "lsun_uncond_100M_1200K_bs128", "lsun_uncond_100M_2400K_bs64",
)
TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, learn_sigma=True, diffusion_steps=40,
            noise_schedule="cosine", attention_resolutions="8", timestep_respacing="5")


def family_manifest(name: str) -> dict:
    return json.loads((golden.golden_dir() / "family-manifests" / f"{name}.json").read_text())


def readme_args(manifest: dict) -> dict:
    """The README's flag string parsed over our defaults, as improved-diffusion's scripts parse it."""
    sr = manifest["builder"].startswith("sr_")
    defaults = script_util.sr_model_and_diffusion_defaults() if sr else script_util.model_and_diffusion_defaults()
    parser = argparse.ArgumentParser()
    script_util.add_dict_to_argparser(parser, defaults)
    return script_util.args_to_dict(parser.parse_args(manifest["cli_flags"].split()), defaults.keys())


def tiny(**changes):
    args = {**script_util.model_and_diffusion_defaults(), **TINY, **changes}
    model, diffusion = script_util.create_model_and_diffusion(**args)
    return randomize(model, 3).eval(), diffusion


def test_the_package_names_resolve_lazily():
    assert all(getattr(improved, name) is not None for name in improved.__all__)
    assert improved.nn is compat.nn and improved.script_util is script_util and compat.improved is improved


@pytest.mark.parametrize("name", RELEASED)
def test_readme_flags_over_the_defaults_are_the_reference_builders_arguments(name):
    manifest = family_manifest(name)
    args = readme_args(manifest)
    assert list(args.items()) == list(manifest["flags"].items())  # values and the original's key order


@pytest.mark.parametrize("name", RELEASED)
def test_released_networks_are_built_key_for_key(name):
    manifest = family_manifest(name)
    create = getattr(script_util, manifest["builder"])
    with torch.device("meta"):
        model, diffusion = create(**readme_args(manifest))
    assert_manifest(model, manifest)
    assert diffusion.rescale_timesteps == manifest["flags"]["rescale_timesteps"]
    assert diffusion.num_timesteps == manifest["flags"]["diffusion_steps"]


def test_its_defaults_differ_from_guided_diffusions_where_the_reference_does():
    ours, guided = script_util.model_and_diffusion_defaults(), compat.model_and_diffusion_defaults()
    assert ours["rescale_timesteps"] and ours["rescale_learned_sigmas"]
    assert not guided["rescale_timesteps"] and not guided["rescale_learned_sigmas"]
    assert {"num_head_channels", "resblock_updown", "use_fp16", "channel_mult"}.isdisjoint(ours)
    assert "sigma_small" in ours and "sigma_small" not in script_util.sr_model_and_diffusion_defaults()


def test_create_model_has_the_cifar10_table_and_takes_every_argument():
    with torch.device("meta"):
        model = script_util.create_model(32, 128, 3, True, False, False, "16,8", 4, -1, True, 0.3)
    assert model.channel_mult == (1, 2, 2, 2) and model.out_channels == 6
    with pytest.raises(TypeError):
        script_util.create_model(image_size=32, num_channels=128, num_res_blocks=3)  # no defaults there


def test_the_network_classes_take_improved_diffusions_arguments():
    model = UNetModel(3, 32, 3, 1, (2,), 0.0, (1, 2), num_heads=2)  # no image_size
    assert not hasattr(model, "image_size") or model.image_size is None
    block = AttentionBlock(64, 4, True)  # (channels, num_heads, use_checkpoint)
    assert block.num_heads == 4 and block.use_checkpoint and isinstance(block.attention, QKVAttention)
    assert isinstance(model.middle_block[1], AttentionBlock)  # adm's blocks count as the class


def test_attention_block_folds_heads_into_the_batch_as_the_legacy_layout():
    ours = randomize(AttentionBlock(64, 4), 1)
    guided = compat.unet.AttentionBlock(64, 4)  # guided-diffusion's legacy (heads, 3, d) order
    guided.load_state_dict(ours.state_dict())
    x = torch.randn(2, 64, 4, 4)
    torch.testing.assert_close(ours(x), guided(x))


def test_feature_vectors_are_the_forward_passes_block_outputs():
    model, _ = tiny()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([3.0, 700.0])
    features = model.get_feature_vectors(x, t)
    assert len(features["down"]) == len(model.input_blocks) and len(features["up"]) == len(model.output_blocks)
    assert features["middle"].shape == (2, 64, 4, 4)  # 32 px: (1, 2, 2, 2) x 32 channels
    torch.testing.assert_close(model.out(features["up"][-1]), model(x, t))
    assert model.inner_dtype == torch.float32


class Recorder(torch.nn.Module):
    """A network that records what it is called with and predicts zero noise (and zero variance)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, **kwargs):
        self.calls.append((t.clone(), kwargs))
        return torch.zeros(x.shape[0], 2 * x.shape[1], *x.shape[2:])


def test_rescale_timesteps_is_on_and_model_kwargs_is_p_samples_sixth_argument():
    _, diffusion = tiny(timestep_respacing="")
    net, x, y = Recorder(), torch.randn(2, 3, 32, 32), torch.tensor([4, 2])
    diffusion.p_sample(net, x, torch.tensor([39, 10]), True, None, {"y": y})  # improved-diffusion's positions
    t, kwargs = net.calls[0]
    torch.testing.assert_close(t, torch.tensor([39.0, 10.0]) * 1000 / 40)
    assert kwargs["y"] is y


def test_the_diffusion_has_improved_diffusions_methods_and_no_guidance():
    _, diffusion = tiny()
    assert isinstance(diffusion, GaussianDiffusion) and isinstance(diffusion, improved.SpacedDiffusion)
    assert not hasattr(diffusion, "condition_mean") and not hasattr(diffusion, "condition_score")
    for method in ("p_sample", "p_sample_loop", "p_sample_loop_progressive", "ddim_sample", "ddim_sample_loop"):
        assert "cond_fn" not in inspect.signature(getattr(diffusion, method)).parameters
    assert list(inspect.signature(diffusion.p_sample_loop).parameters)[:7] == [
        "model", "shape", "noise", "clip_denoised", "denoised_fn", "model_kwargs", "device"]


@pytest.mark.parametrize("loop", ["p_sample_loop", "ddim_sample_loop"])
def test_the_loops_are_adm_compats_on_the_same_flags(loop):
    model, diffusion = tiny()
    guided = compat.create_gaussian_diffusion(
        steps=40, learn_sigma=True, noise_schedule="cosine", rescale_timesteps=True, rescale_learned_sigmas=True,
        timestep_respacing="5",
    )
    torch.manual_seed(5)
    ours = getattr(diffusion, loop)(model, (2, 3, 32, 32))
    torch.manual_seed(5)
    theirs = getattr(guided, loop)(model, (2, 3, 32, 32))
    assert torch.equal(ours, theirs)


def test_sr_create_model_and_diffusion_takes_no_sigma_small():
    args = script_util.sr_model_and_diffusion_defaults()
    args.update(large_size=64, small_size=32, num_channels=32, num_res_blocks=1, attention_resolutions="8",
                learn_sigma=True, diffusion_steps=100)
    model, diffusion = script_util.sr_create_model_and_diffusion(**args)
    out = model(torch.randn(1, 3, 64, 64), torch.tensor([3]), low_res=torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 6, 64, 64) and model.in_channels == 6
    assert isinstance(diffusion, improved.SpacedDiffusion)


@pytest.fixture
def clean_alias():
    compat.uninstall()
    yield
    compat.uninstall()


def test_install_aliases_improved_diffusion(clean_alias):
    with compat.installed():
        import improved_diffusion.script_util
        from improved_diffusion import dist_util, nn
        from improved_diffusion.gaussian_diffusion import GaussianDiffusion as Aliased

        assert improved_diffusion.script_util is script_util and Aliased is GaussianDiffusion
        assert nn is compat.nn and dist_util is compat.dist_util  # the modules both codebases share
        with pytest.raises(ModuleNotFoundError, match="training is `adm train`"):
            importlib.import_module("improved_diffusion.train_util")
    assert "improved_diffusion" not in sys.modules
