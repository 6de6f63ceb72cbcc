"""The classes a label may name: an unconditional model guided by a classifier draws from the
classifier's classes (not the unconditional flags' default 1000), for adm sample and adm distill."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import adm
from adm.cli.main import app
from adm.hub.checkpoints import save_state_dict
from adm.spec.factory import build_model
from adm.spec.flags import parse_model_flags
from tiny import CLASSIFIER_FLAGS, MODEL_FLAGS, randomize, write_tiny_checkpoints

UNCONDITIONAL = MODEL_FLAGS.replace("--class_cond True --num_classes 10", "--class_cond False")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    paths = write_tiny_checkpoints(root)
    paths["uncond"] = root / "uncond.pt"
    save_state_dict(randomize(build_model(parse_model_flags(UNCONDITIONAL)), 4).state_dict(), paths["uncond"])
    return paths


def source(files):
    return adm.ModelSource(model_flags=UNCONDITIONAL, model_path=files["uncond"], classifier_flags=CLASSIFIER_FLAGS,
                           classifier_path=files["classifier"])


@pytest.mark.parametrize("classes", ["random", "balanced"])
def test_a_guided_unconditional_model_draws_the_classifier_s_classes(files, classes):
    samples = adm.sample(source=source(files), scale=1.0, classes=classes, num_samples=12, steps="2", sampler="ddim")
    assert samples.labels.min() >= 0 and samples.labels.max() < 10
    if classes == "balanced":
        assert samples.labels.tolist() == [i % 10 for i in range(12)]


def test_a_class_outside_the_classifier_s_is_a_one_line_error(files, tmp_path):
    result = CliRunner().invoke(app, ["sample", "--model-flags", UNCONDITIONAL, "--model-path", str(files["uncond"]),
                                      "--classifier-flags", CLASSIFIER_FLAGS, "--classifier-path",
                                      str(files["classifier"]), "--scale", "1", "--classes", "12", "-n", "2",
                                      "--steps", "2", "--out", str(tmp_path / "s.npz")])
    assert result.exit_code == 2
    assert "class id 12 is out of range for a model of 10 classes" in result.output
    assert not (tmp_path / "s.npz").exists()  # nothing written
