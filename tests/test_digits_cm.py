"""The shipped `digits-cm` preset: the guided digits sampler distilled into a consistency model
samples offline in one or two network evaluations without the classifier; its flags are the ones
`adm distill` gives the student; the shipped file is the recorded one; the recipe that rebuilds it runs."""

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
from adm.recipes.digits_cm import DISTILL, TEACHER
from adm.training.distill import student_flags
from adm.training.distill_config import DistillConfig

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_the_shipped_weights_are_small_and_match_their_sha256():
    artifact = default_registry().artifacts["digits-cm-model"]
    path = ensure_artifact("digits-cm-model")  # verifies the sha256 too
    assert artifact.url.startswith("package:adm.assets/") and len(artifact.sha256) == 64
    assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact.sha256
    assert path.stat().st_size < 5_000_000


def test_the_preset_is_the_student_adm_distill_makes_of_digits():
    registry = default_registry()
    preset, teacher = registry.preset("digits-cm"), registry.preset(TEACHER)
    config = DistillConfig(data="x", **{k: v for k, v in DISTILL.items() if k in DistillConfig.model_fields})
    assert preset.model_flags == student_flags(teacher.model_flags, config)
    assert preset.classifier_flags is None and preset.sampling.sampler == "cm"
    assert preset.sampling.options == {"karras_steps": DISTILL["scales"]}


@pytest.mark.parametrize("steps", ["1", None])
def test_it_samples_digits_offline_in_one_or_two_evaluations(offline, steps):
    given = ("--steps", steps) if steps else ()  # the preset's default: two
    invoke("sample", "--preset", "digits-cm", *given, "-n", 50, "--out", offline / "s.npz", "-q")
    sidecar = json.loads((offline / "s.json").read_text())
    assert sidecar["key"]["sampler"] == "cm" and sidecar["evaluations"] == (1 if steps else 2)
    assert sidecar["key"]["scale"] == 0  # no classifier: the guidance is in the weights
    with np.load(offline / "s.npz", allow_pickle=False) as data:
        images, labels = data["arr_0"], data["arr_1"]
    assert images.shape == (50, 16, 16, 3) and labels.tolist() == [i % 10 for i in range(50)]
    referee = Judge.load(ensure_artifact("digits-judge"))
    assert referee.score(images, labels).accuracy >= 0.9  # the digits asked for, without the classifier


@pytest.mark.slow
def test_the_recipe_runs_end_to_end_in_a_shortened_form(tmp_path):
    invoke("recipe", "digits-cm", tmp_path, "--quick")
    report = json.loads((tmp_path / "recipe.json").read_text())
    assert report["numbers"]["steps_distilled"] == 4
    assert [(row["preset"], row["steps"]) for row in report["guidance"]][:2] == [("digits-cm", "1"), ("digits-cm", "0,2")]
    assert (tmp_path / "assets" / "digits_cm_model.safetensors").stat().st_size > 0
    doc = json.loads((tmp_path / "runs" / "digits-cm" / "config.json").read_text())
    assert doc["kind"] == "distillation" and doc["teacher"]["guidance"][0]["method"] == "classifier"
