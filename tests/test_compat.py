"""adm.compat: the original's script_util names build the released architectures and run the
golden forward cases from the original constructor keywords, unchanged."""

import argparse

import pytest
import torch

import adm.compat as compat
import golden
from tests_support import assert_manifest

SCRIPT_UTIL_NAMES = [
    "model_and_diffusion_defaults", "classifier_defaults", "classifier_and_diffusion_defaults",
    "sr_model_and_diffusion_defaults", "create_model_and_diffusion", "create_model", "create_classifier",
    "create_classifier_and_diffusion", "sr_create_model_and_diffusion", "sr_create_model",
    "create_gaussian_diffusion", "space_timesteps", "get_named_beta_schedule",
    "UNetModel", "SuperResModel", "EncoderUNetModel",
]


def test_the_original_names_exist():
    missing = [n for n in SCRIPT_UTIL_NAMES if not hasattr(compat, n)]
    assert not missing


def test_defaults_dicts_have_the_original_keys():
    assert len(compat.model_and_diffusion_defaults()) == 23
    assert set(compat.classifier_and_diffusion_defaults()) == set(compat.classifier_defaults()) | set(compat.diffusion_defaults())
    sr = compat.sr_model_and_diffusion_defaults()
    assert {"large_size", "small_size"} <= set(sr) and "image_size" not in sr and "use_new_attention_order" not in sr


def _script_args(defaults: dict, cli_flags: str) -> dict:
    """Parse a README flag string exactly as the original scripts do (argparse + str2bool)."""
    parser = argparse.ArgumentParser()
    compat.add_dict_to_argparser(parser, defaults)
    known, _ = parser.parse_known_args(cli_flags.split())
    return compat.args_to_dict(known, defaults.keys())


@pytest.mark.parametrize("name", ["64x64_diffusion", "128x128_diffusion", "256x256_diffusion_uncond", "512x512_diffusion"])
def test_create_model_and_diffusion_from_readme_flags(name):
    manifest = golden.manifest(name)
    args = _script_args(compat.model_and_diffusion_defaults(), manifest["cli_flags"])
    with torch.device("meta"):
        model, diffusion = compat.create_model_and_diffusion(**args)
    assert_manifest(model, manifest)
    assert diffusion.num_timesteps == 1000


@pytest.mark.parametrize("name", ["64_256_upsampler", "128_512_upsampler"])
def test_sr_create_model_and_diffusion_from_readme_flags(name):
    manifest = golden.manifest(name)
    args = _script_args(compat.sr_model_and_diffusion_defaults(), manifest["cli_flags"])
    with torch.device("meta"):
        model, _ = compat.sr_create_model_and_diffusion(**args)
    assert_manifest(model, manifest)


@pytest.mark.parametrize("name", ["64x64_classifier", "256x256_classifier", "512x512_classifier"])
def test_create_classifier_from_readme_flags(name):
    manifest = golden.manifest(name)
    args = _script_args(compat.classifier_and_diffusion_defaults(), manifest["cli_flags"])
    with torch.device("meta"):
        classifier, _ = compat.create_classifier_and_diffusion(**args)
    assert_manifest(classifier, manifest)


def test_create_model_keeps_its_own_defaults():
    # The original's create_model defaults differ from model_and_diffusion_defaults (one head, "16").
    with torch.device("meta"):
        model = compat.create_model(image_size=64, num_channels=64, num_res_blocks=1)
    assert "input_blocks.5.1.qkv.weight" in model.state_dict()  # attention at 16px (level 2) only
    assert "input_blocks.3.1.qkv.weight" not in model.state_dict()


def _model_from_constructor(case_name):
    constructor = golden.case(case_name)["constructor"]
    cls = getattr(compat, constructor["class"])
    model = cls(**constructor["kwargs"]).eval()
    model.load_state_dict(golden.weights(case_name), strict=True)
    return model


@pytest.mark.parametrize("case", ["unet_16px_cond_ls_ssn_updown_newattn", "unet_16px_cond_ls_ssn_updown_legacyattn_heads"])
def test_unet_golden_forward_through_compat(case):
    io = golden.io(case)
    model = _model_from_constructor(case)
    with torch.no_grad():
        golden.assert_forward_close(model(io["x"], io["t"], y=io["y"]), io["out"])
        if "out_tfrac" in io:
            golden.assert_forward_close(model(io["x"], io["t_frac"], y=io["y"]), io["out_tfrac"])


def test_superres_golden_forward_through_compat():
    io = golden.io("superres_32px_from16_eps_plain")
    model = _model_from_constructor("superres_32px_from16_eps_plain")
    with torch.no_grad():
        golden.assert_forward_close(model(io["x"], io["t"], low_res=io["low_res"]), io["out"])


def test_classifier_golden_logits_and_gradient_through_compat():
    io = golden.io("classifier_16px_attention_pool")
    model = _model_from_constructor("classifier_16px_attention_pool")
    x = io["x"].clone().requires_grad_()
    logits = model(x, io["t"])
    golden.assert_forward_close(logits, io["logits"])
    selected = torch.log_softmax(logits, -1)[torch.arange(len(io["y"])), io["y"]].sum()
    (grad,) = torch.autograd.grad(selected, x)
    golden.assert_forward_close(grad, io["grad_log_prob"])


def test_convert_to_fp16_runs_in_half_precision_and_returns_float32():
    io = golden.io("unet_16px_cond_ls_ssn_updown_newattn")
    model = _model_from_constructor("unet_16px_cond_ls_ssn_updown_newattn")
    model.convert_to_fp16()
    with torch.no_grad():
        out = model(io["x"], io["t"], y=io["y"])
    assert out.dtype == torch.float32
    err = (out - io["out"]).abs().max() / io["out"].std()
    assert 0 < err < 0.05  # half precision: close, but not bit-equal


def test_dims_other_than_2_are_refused():
    with pytest.raises(ValueError, match="only 2-D"):
        compat.UNetModel(image_size=16, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1,
                         attention_resolutions=(), dims=1)
