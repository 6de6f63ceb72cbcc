"""Tiny models for end-to-end tests: flags in the original syntax and checkpoints the tests write."""

from pathlib import Path

import torch

from adm.factory import build_classifier, build_model
from adm.flags import ClassifierFlags, parse_flags, parse_model_flags
from adm.hub.checkpoints import save_state_dict

MODEL_FLAGS = (
    "--image_size 16 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2 --attention_resolutions 8 "
    "--num_head_channels 16 --learn_sigma True --class_cond True --num_classes 10 --diffusion_steps 100 "
    "--resblock_updown True --use_scale_shift_norm True"
)
CLASSIFIER_FLAGS = (
    "--image_size 16 --classifier_width 32 --classifier_depth 1 --classifier_channel_mult 1,2 "
    "--classifier_attention_resolutions 8 --classifier_num_head_channels 16 --classifier_num_classes 10"
)
UPSAMPLER_FLAGS = (
    "--large_size 16 --small_size 8 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2 "
    "--attention_resolutions 8 --num_head_channels 16 --learn_sigma True --class_cond True --num_classes 10 "
    "--diffusion_steps 100"
)


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Replace the zero-initialised output layers so outputs (and gradients) are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 / max(1, p[0].numel()) ** 0.5)
    return module


def write_tiny_checkpoints(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "model": folder / "tiny_model.pt",
        "classifier": folder / "tiny_classifier.safetensors",
        "upsampler": folder / "tiny_upsampler.pt",
    }
    save_state_dict(randomize(build_model(parse_model_flags(MODEL_FLAGS)), 1).state_dict(), paths["model"])
    classifier = build_classifier(parse_flags(ClassifierFlags, CLASSIFIER_FLAGS))
    save_state_dict(randomize(classifier, 2).state_dict(), paths["classifier"])
    save_state_dict(randomize(build_model(parse_model_flags(UPSAMPLER_FLAGS)), 3).state_dict(), paths["upsampler"])
    return paths
