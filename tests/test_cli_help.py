"""Help text: flags without a value placeholder, defaults of `adm train`, `--iterations` (issue 11)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from adm.cli.convert_cmd import convert
from adm.cli.download_cmd import download
from adm.cli.evaluate_cmd import evaluate
from adm.cli.main import app
from adm.cli.presets_cmd import presets
from adm.cli.train_cmd import train, train_classifier
from adm.training import ClassifierTrainConfig, TrainConfig

COMMANDS = {
    "presets": presets, "download": download, "convert": convert, "evaluate": evaluate,
    "train": train, "train-classifier": train_classifier, "sample": None, "upsample": None, "samplers": None,
}


def help_of(application: typer.Typer, *args: str) -> str:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(application, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def adm_app() -> typer.Typer:
    """The real `adm` app (commands registered with cls=AdmCommand / AdmGroup)."""
    return app


def test_the_cause_typer_shows_a_type_for_flags():
    """typer 0.29's rich help prints `<bool>` after every flag; this is what AdmCommand undoes."""
    plain = typer.Typer(add_completion=False)

    @plain.command()
    def cmd(quiet: bool = typer.Option(False, "--quiet", help="Q.")) -> None:
        """cmd"""

    assert "<bool>" in help_of(plain, "cmd")


@pytest.mark.parametrize("command", [*COMMANDS, "data digits", "recipe digits", ""])
def test_no_flag_shows_a_value_placeholder(adm_app, command):
    text = help_of(adm_app, *command.split())
    assert "<bool>" not in text
    assert "--help" in text


def test_options_with_values_keep_their_type(adm_app):
    text = help_of(adm_app, "train")
    assert "--iterations" in text and "<int>" in text and "<float>" in text
    flags = [line for line in text.splitlines() if "--plot" in line or "--anneal-lr" in line or "--resume" in line]
    assert flags and not any("<" in line for line in flags)


def test_the_real_subapps_are_fixed():
    for command in ("data", "recipe"):
        assert "<bool>" not in help_of(app, command, "digits")


def test_train_help_shows_the_config_defaults():
    train_help = help_of(app, "train")
    assert f"Default: {TrainConfig.model_fields['iterations'].default}." in train_help  # 100000
    assert "AdamW learning rate. Default: 0.0001." in train_help
    assert "Default: 0.9999." in train_help and "Default: uniform." in train_help
    classifier_help = help_of(app, "train-classifier")
    assert f"Default: {ClassifierTrainConfig.model_fields['iterations'].default}." in classifier_help  # 150000
    assert "Default: 0.0003." in classifier_help and "Default: none." in classifier_help  # lr, no EMA
    assert "from the training preset, else from the run being continued" in train_help


def test_iterations_replaces_steps_in_training(tmp_path):
    for command in ("train", "train-classifier"):
        text = help_of(app, command)
        assert "--iterations" in text and "--steps" not in text


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "d.npz"
    np.savez(path, np.zeros((4, 16, 16, 3), np.uint8), np.arange(4) % 2)
    return path


def test_old_steps_still_works_with_a_warning(data, tmp_path):
    result = CliRunner().invoke(app, ["train", "--preset", "tiny", "--data", str(data), "--run-dir", str(tmp_path / "r"), "--steps", "7", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["train"]["iterations"] == 7
    warning = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warning) == 1 and "--steps` is deprecated, use --iterations" in warning[0]
    result = CliRunner().invoke(app, ["train-classifier", "--preset", "tiny", "--data", str(data), "--run-dir", str(tmp_path / "r"),
                                      "--iterations", "3", "--steps", "4"])
    assert result.exit_code == 2 and "--iterations 3 and --steps 4 disagree" in result.stderr


def test_a_finished_run_says_so_and_draws_no_bar(data, tmp_path):
    from adm.presets import default_registry, get_training_preset
    from adm.training import fit_diffusion

    preset = get_training_preset("tiny", "diffusion")
    config = TrainConfig(data=str(data), **{**preset.train, "iterations": 2, "batch_size": 2, "save_every": 2})
    fit_diffusion(config, default_registry().network_flags(preset), tmp_path / "run")
    events = []
    again = fit_diffusion(config.model_copy(update={"iterations": 1}), default_registry().network_flags(preset), tmp_path / "run", on_progress=events.append)
    assert (again.step, again.start_step, events) == (2, 2, [])
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["train", "--run-dir", str(tmp_path / "run"), "--iterations", "1"])
    assert result.exit_code == 0 and "is already at step 2; raise --iterations to train further" in result.stdout
    assert "2/1" not in result.output
