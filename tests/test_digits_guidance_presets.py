"""The shipped `digits-cfg` and `digits-guide` presets: classifier-free guidance, autoguidance,
CFG + classifier and unconditional sampling offline; the shipped files are the recorded ones; the
recipe that rebuilds them runs."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from adm.cli.main import app
from adm.evaluation.digits_judge import Judge
from adm.hub.download import ensure_artifact
from adm.presets import default_registry
from adm.spec.factory import null_label

runner = CliRunner()
SHIPPED = ("digits-cfg-model", "digits-guide-model")


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def load(path):
    with np.load(path, allow_pickle=False) as data:
        return data["arr_0"], data["arr_1"]


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_weights_are_small_and_match_their_sha256(name):
    artifact = default_registry().artifacts[name]
    path = ensure_artifact(name)  # verifies the sha256 too
    assert artifact.url.startswith("package:adm.assets/") and len(artifact.sha256) == 64
    assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact.sha256
    assert path.stat().st_size < 5_000_000


def test_the_presets_pair_a_null_class_model_with_its_guide_and_the_digits_classifier():
    registry = default_registry()
    cfg, guide, digits = registry.preset("digits-cfg"), registry.preset("digits-guide"), registry.preset("digits")
    assert null_label(cfg.model_flags) == 10 and null_label(guide.model_flags) == 10
    assert cfg.guide_model == "digits-guide" and cfg.classifier_flags == digits.classifier_flags
    assert cfg.sampling == digits.sampling and cfg.classifier_scale == 0
    # `adm train --preset NAME` builds exactly the shipped networks (the recipe rebuilds them)
    for name in ("digits-cfg", "digits-guide"):
        assert registry.network_flags(registry.training_preset(name, "diffusion")) == registry.preset(name).model_flags


def test_adm_sample_preset_digits_cfg_with_no_other_argument(offline):
    invoke("sample", "--preset", "digits-cfg", "-n", 20)
    images, labels = load(offline / "digits-cfg_samples.npz")
    assert images.shape == (20, 16, 16, 3) and labels.tolist() == [i % 10 for i in range(20)]
    scores = Judge.load(ensure_artifact("digits-judge")).score(images, labels)
    assert scores.accuracy >= 0.9


@pytest.mark.parametrize("guidance", [
    ["--cfg-scale", 2],
    ["--autoguidance", 1, "--guide-model", "digits-guide"],
    ["--cfg-scale", 1, "--cfg-interval", "0.2,0.8", "--autoguidance", 1],  # the preset's guide
    ["--cfg-scale", 1, "--scale", 1],  # CFG + the digits classifier
])
def test_each_guidance_samples_offline_and_is_recorded(offline, guidance):
    common = ["sample", "--preset", "digits-cfg", "-n", 10, "--steps", 6, "--seed", 3, "-q",
              "--cfg-scale", 0, "--autoguidance", 0]  # the preset's defaults off: the plain model
    invoke(*common, "--out", "plain.npz")
    invoke(*common, *guidance, "--out", "guided.npz")
    assert not np.array_equal(load(offline / "plain.npz")[0], load(offline / "guided.npz")[0])
    key = json.loads((offline / "guided.json").read_text())["key"]
    given = dict(zip(guidance[::2], guidance[1::2], strict=True))
    assert key["cfg_scale"] == float(given.get("--cfg-scale", 0))
    assert key["autoguidance"] == float(given.get("--autoguidance", 0))
    assert key["scale"] == float(given.get("--scale", 0))


def test_unconditional_samples_of_digits_cfg(offline):
    invoke("sample", "--preset", "digits-cfg", "-n", 10, "--steps", 6, "--classes", "null", "--cfg-scale", 0,
           "--autoguidance", 0, "--out", "null.npz", "-q")
    images, labels = load(offline / "null.npz")
    assert images.shape == (10, 16, 16, 3) and labels.tolist() == [10] * 10


@pytest.mark.slow
def test_the_recipe_runs_end_to_end_in_a_shortened_form(tmp_path):
    invoke("recipe", "digits-cfg", tmp_path, "--quick")
    report = json.loads((tmp_path / "recipe.json").read_text())
    assert [(row["cfg_scale"], row["autoguidance"]) for row in report["guidance"]] == [(0, 0), (1, 0), (0, 1)]
    assert report["numbers"]["digits-cfg_steps_trained"] == 20 and report["numbers"]["digits-guide_steps_trained"] == 20
    for name in ("digits_cfg_model.safetensors", "digits_guide_model.safetensors"):
        assert (tmp_path / "assets" / name).stat().st_size > 0
    assert json.loads((tmp_path / "runs" / "digits-cfg" / "config.json").read_text())["model_flags"]["null_class"]
