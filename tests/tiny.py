"""Tiny models for end-to-end tests: flags in the original syntax and checkpoints the tests write."""

from pathlib import Path

import torch

from adm.hub.checkpoints import save_state_dict
from adm.spec.factory import build_classifier, build_model
from adm.spec.flags import ClassifierFlags, parse_flags, parse_model_flags

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

UPSAMPLER_32_FLAGS = (
    "--large_size 32 --small_size 16 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2 "
    "--attention_resolutions 16 --num_head_channels 16 --learn_sigma True --class_cond True --num_classes 10 "
    "--diffusion_steps 100"
)


def tiny_registry(cache_dir: Path, checkpoints: dict[str, Path], import_files: bool = True):
    """adm's built-ins plus presets `tiny` (guided, 16px) and `tiny-up` (16→32), registered as a
    plugin would and with their checkpoints imported into the cache at ``cache_dir``."""
    from adm.hub.download import import_file
    from adm.presets import Artifact, Preset, Registry, SamplingDefaults
    from adm.presets.builtin import register as builtin

    up32 = cache_dir.parent / "tiny_up32.pt"
    save_state_dict(randomize(build_model(parse_model_flags(UPSAMPLER_32_FLAGS)), 4).state_dict(), up32)
    files = {"tiny-cond": checkpoints["model"], "tiny-classifier": checkpoints["classifier"], "tiny-up": up32}

    def plugin(registry):
        for name, path in files.items():
            registry.add_artifact(Artifact(name=name, url=f"http://127.0.0.1:9/{path.name}", filename=path.name, kind="checkpoint"))
        fast = SamplingDefaults(sampler="ddpm", steps="3", batch_size=4)
        registry.add_preset(Preset(name="tiny", model_flags=MODEL_FLAGS, classifier_flags=CLASSIFIER_FLAGS,
                                   checkpoint="tiny-cond", classifier_checkpoint="tiny-classifier",
                                   classifier_scale=2.0, sampling=fast))
        registry.add_preset(Preset(name="tiny-up", model_flags=UPSAMPLER_32_FLAGS, checkpoint="tiny-up",
                                   base_preset="tiny", sampling=fast))

    registry = Registry().load_plugins([("builtin", builtin), ("tiny", plugin)])
    for name, path in files.items() if import_files else ():
        import_file(name, path, registry=registry, cache_dir=cache_dir)
    registry.files = files
    return registry
