"""The class count of a classifier / class-conditional model comes from the data unless the flags
set it (issue 11: 10-class data trained a 1000-way classifier, loss near ln 1000)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from adm.cli.main import app
from adm.core.errors import UsageError
from adm.hub.checkpoints import read_signature
from adm.spec.flags import ClassifierFlags, parse_flags, parse_model_flags
from adm.training import ClassifierTrainConfig, TrainConfig, fit_classifier, fit_diffusion
from adm.training.data import open_training_data
from adm.training.metrics import read_metrics

# a small classifier / model with no class count in the flags (the original's flags never have one)
CLASSIFIER = (
    "--image_size 16 --classifier_width 32 --classifier_channel_mult 1,2 --classifier_depth 1 "
    "--classifier_attention_resolutions 8 --classifier_num_head_channels 32"
)
NOISE = " --diffusion_steps 10 --noise_schedule cosine"  # train-classifier's --classifier-flags also take the noising process
MODEL = (
    "--image_size 16 --num_channels 32 --channel_mult 1,2 --num_res_blocks 1 --attention_resolutions 8 "
    "--num_head_channels 32 --diffusion_steps 10 --noise_schedule cosine --class_cond True"
)
FAST = ["--iterations", "1", "--batch-size", "4", "--workers", "0", "--save-every", "1", "--log-every", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """An npz of 20 images in 5 classes (labels 0..4)."""
    path = tmp_path_factory.mktemp("data") / "five.npz"
    rng = np.random.default_rng(0)
    np.savez(path, rng.integers(0, 255, (20, 16, 16, 3), dtype=np.uint8), np.arange(20) % 5)
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_classifier_without_a_count_gets_the_datas(data, tmp_path):
    run = tmp_path / "run"
    result = invoke("train-classifier", "--classifier-flags", CLASSIFIER + NOISE, "--data", data, "--run-dir", run, *FAST)
    assert result.exit_code == 0, result.output
    doc = json.loads((run / "config.json").read_text())
    assert doc["classifier_flags"]["classifier_num_classes"] == 5
    shapes = read_signature(run / "model000001.pt")
    assert shapes["out.2.c_proj.weight"][0] == 5  # the attention-pool head: one logit per class
    assert read_metrics(run)[0]["loss"] < math.log(1000) / 2  # about ln 5, not ln 1000


def test_dry_run_shows_the_inferred_count(data, tmp_path):
    result = invoke("train-classifier", "--classifier-flags", CLASSIFIER + NOISE, "--data", data, "--run-dir", tmp_path / "r", "--dry-run")
    assert result.exit_code == 0 and json.loads(result.stdout)["classifier_flags"]["classifier_num_classes"] == 5
    result = invoke("train", "--model-flags", MODEL, "--data", data, "--run-dir", tmp_path / "r", "--dry-run")
    assert result.exit_code == 0 and json.loads(result.stdout)["model_flags"]["num_classes"] == 5
    assert not (tmp_path / "r").exists()


def test_a_count_in_the_flags_is_kept_and_checked(data, tmp_path):
    run = tmp_path / "run"
    result = invoke("train-classifier", "--classifier-flags", CLASSIFIER + " --classifier_num_classes 8",
                    "--data", data, "--run-dir", run, "--dry-run")
    assert json.loads(result.stdout)["classifier_flags"]["classifier_num_classes"] == 8
    result = invoke("train-classifier", "--classifier-flags", CLASSIFIER + " --classifier_num_classes 3",
                    "--data", data, "--run-dir", run, *FAST)
    assert result.exit_code == 2
    assert "--data has 5 classes but the classifier has 3 outputs (--classifier_num_classes)" in error_line(result)
    result = invoke("train", "--model-flags", MODEL + " --num_classes 4", "--data", data, "--run-dir", run, *FAST)
    assert result.exit_code == 2 and "--data has 5 classes but the model has 4 (--num_classes)" in error_line(result)
    assert not run.exists()


def test_presets_that_state_a_count_keep_it(data, tmp_path):
    # tiny-cond: "up to 10 classes" (its flags say --num_classes 10)
    result = invoke("train", "--preset", "tiny-cond", "--data", data, "--run-dir", tmp_path / "r", "--dry-run")
    assert json.loads(result.stdout)["model_flags"]["num_classes"] == 10
    # a count given on top of a preset that has none replaces the inference
    result = invoke("train", "--preset", "tiny", "--model-flags", "--class_cond True --num_classes 7",
                    "--data", data, "--run-dir", tmp_path / "r", "--dry-run")
    assert json.loads(result.stdout)["model_flags"]["num_classes"] == 7


def test_with_init_the_count_must_fit_the_weights(data, tmp_path):
    """Fine-tuning keeps the network of the weights: the flags' count stays (1000 by default)."""
    flags = parse_flags(ClassifierFlags, CLASSIFIER)
    kept, _ = open_training_data(flags, data, "auto", init="weights.pt")
    assert kept.classifier_num_classes == 1000
    inferred, source = open_training_data(flags, data, "auto", init=None)
    assert inferred.classifier_num_classes == 5 == source.num_classes
    small = parse_flags(ClassifierFlags, CLASSIFIER + " --classifier_num_classes 2")
    with pytest.raises(UsageError, match="raise --classifier_num_classes in the flags") as info:
        open_training_data(small, data, "auto", init="weights.pt")
    assert "leave it out" not in str(info.value)


def test_python_api_infers_too(data, tmp_path):
    flags = parse_flags(ClassifierFlags, CLASSIFIER)
    config = ClassifierTrainConfig(data=str(data), iterations=1, batch_size=4, workers=0, save_every=1)
    fit_classifier(config, flags, tmp_path / "c")
    assert json.loads((tmp_path / "c" / "config.json").read_text())["classifier_flags"]["classifier_num_classes"] == 5
    model = parse_model_flags(MODEL)
    fit_diffusion(TrainConfig(data=str(data), iterations=1, batch_size=4, workers=0, save_every=1), model, tmp_path / "d")
    doc = json.loads((tmp_path / "d" / "config.json").read_text())
    assert doc["model_flags"]["num_classes"] == 5
    assert read_signature(tmp_path / "d" / "model000001.pt")["label_emb.weight"][0] == 5


def test_unconditional_models_read_no_labels(tmp_path):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, np.zeros((4, 16, 16, 3), np.uint8))
    flags = parse_model_flags(MODEL.replace("--class_cond True", "--class_cond False"))
    same, source = open_training_data(flags, path, "auto", init=None)
    assert same == flags and source.labels is None
