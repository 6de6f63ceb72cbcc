"""Presets: every released model's flags build exactly the released state_dict layout."""

import json

import pytest
from typer.testing import CliRunner

import golden
from adm.cli.main import app
from adm.core.errors import UsageError
from adm.presets import Artifact, Preset, Registry, default_registry, get_preset
from adm.presets.builtin import CHECKPOINTS
from adm.spec.factory import build_classifier, build_model
from tests_support import assert_manifest

# preset -> (diffusion manifest, classifier manifest or None)
RELEASED = {
    "imagenet64": ("64x64_diffusion", "64x64_classifier"),
    "imagenet128": ("128x128_diffusion", "128x128_classifier"),
    "imagenet256": ("256x256_diffusion", "256x256_classifier"),
    "imagenet256-uncond": ("256x256_diffusion_uncond", "256x256_classifier"),
    "imagenet512": ("512x512_diffusion", "512x512_classifier"),
    "upsample-64-256": ("64_256_upsampler", None),
    "upsample-128-512": ("128_512_upsampler", None),
    "lsun-bedroom": ("lsun_bedroom", None),
    "lsun-cat": ("lsun_cat", None),
    "lsun-horse": ("lsun_horse", None),
    "lsun-horse-nodropout": ("lsun_horse_nodropout", None),
}


def test_every_released_model_has_a_preset():
    assert set(RELEASED) <= set(default_registry().presets)
    covered = {m for pair in RELEASED.values() for m in pair if m}
    assert covered == set(golden.manifest_names())


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_preset_builds_the_released_state_dict(name):
    preset = get_preset(name)
    model_manifest, classifier_manifest = RELEASED[name]
    assert_manifest(build_model(preset.model_flags, device="meta"), golden.manifest(model_manifest))
    if classifier_manifest is None:
        assert preset.classifier_flags is None
    else:
        assert_manifest(build_classifier(preset.classifier_flags, device="meta"), golden.manifest(classifier_manifest))


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_preset_flags_are_the_readme_flags(name):
    preset = get_preset(name)
    model_manifest, classifier_manifest = RELEASED[name]
    ours = preset.model_flags.flag_dict()
    for key, value in golden.manifest(model_manifest)["flags"].items():
        if key in ours:
            assert ours[key] == value, key
    if classifier_manifest:
        theirs = golden.manifest(classifier_manifest)["flags"]
        assert {k: v for k, v in preset.classifier_flags.flag_dict().items() if k in theirs} == theirs


def test_checkpoint_download_names_and_files():
    registry = default_registry()
    released = [registry.preset(name) for name in RELEASED]
    names = {p.checkpoint for p in released} | {p.classifier_checkpoint for p in released if p.classifier_checkpoint}
    assert names == set(CHECKPOINTS)
    for name in names:
        assert registry.artifact(name).url.endswith(CHECKPOINTS[name][0])


def test_readme_guidance_scales():
    scales = {n: get_preset(n).classifier_scale for n in ("imagenet64", "imagenet128", "imagenet256", "imagenet256-uncond", "imagenet512")}
    assert scales == {"imagenet64": 1.0, "imagenet128": 0.5, "imagenet256": 1.0, "imagenet256-uncond": 10.0, "imagenet512": 4.0}


def test_unknown_preset_suggests_close_names():
    with pytest.raises(UsageError, match="did you mean imagenet64"):
        get_preset("imagenet46")


def test_plugin_registration_and_broken_plugins():
    def plugin(registry):
        registry.add_artifact(Artifact(name="mine-ckpt", url="http://127.0.0.1/x.pt", filename="x.pt"))
        registry.add_preset(Preset(name="mine", model_flags="--image_size 32 --channel_mult 1,2 --num_channels 32", checkpoint="mine-ckpt"))

    def broken(registry):
        raise RuntimeError("boom")

    registry = Registry().load_plugins([("mine", plugin), ("broken", broken)])
    assert registry.preset("mine").model_flags.image_size == 32
    assert registry.plugin_errors == ["plugin 'broken' failed: boom"]
    with pytest.raises(ValueError, match="twice"):
        plugin(registry)


def test_builtin_presets_come_through_the_entry_point():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="adm.presets")}
    assert eps.get("builtin") == "adm.presets.builtin:register"


def test_cli_lists_presets():
    result = CliRunner().invoke(app, ["presets"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for name in RELEASED:
        assert name in result.output


def test_cli_preset_json():
    result = CliRunner().invoke(app, ["presets", "imagenet256-uncond", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["model_flags"]["class_cond"] is False
    assert data["classifier_flags"]["classifier_depth"] == 2
    assert data["classifier_scale"] == 10.0
    assert data["download"] == ["256-uncond", "256-classifier"]
    lsun = json.loads(CliRunner().invoke(app, ["presets", "lsun-cat", "--json"]).output)
    assert lsun["classifier_flags"] is None
    assert lsun["sampling"]["steps"] == "1000"


def test_cli_unknown_preset_is_one_line_exit_2():
    result = CliRunner().invoke(app, ["presets", "nope"])
    assert result.exit_code == 2
    assert "unknown preset 'nope'" in result.output
    assert "Traceback" not in result.output
