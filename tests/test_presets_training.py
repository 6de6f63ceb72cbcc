"""`adm presets` lists and shows training presets too (issue 11: `adm train --help` pointed at
`adm presets`, which said "unknown preset" for `tiny`)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from adm.cli.main import app
from adm.presets import default_registry

WIDE = {"COLUMNS": "250"}


def invoke(*args: str):
    return CliRunner(env=WIDE).invoke(app, list(args))


def test_listing_has_a_training_table():
    result = invoke("presets")
    assert result.exit_code == 0, result.output
    released, _, training = result.stdout.partition("training presets")
    assert "imagenet64" in released and "tiny-cond" not in released
    diffusion, _, classifier = training.partition("│ classifier ")  # one section per kind, headed by it

    def tiny_rows(section: str) -> dict[str, list[str]]:
        rows = [line for line in section.splitlines() if line.startswith("│ tiny")]
        return {row.split("│")[1].strip(): [cell.strip() for cell in row.split("│")[2:-1]] for row in rows}

    assert set(tiny_rows(diffusion)) == {"tiny", "tiny-cond", "tiny-sr"} and set(tiny_rows(classifier)) == {"tiny"}
    size, params, _, description = tiny_rows(diffusion)["tiny"]
    assert (size, params) == ("16", "828k") and "CPU tests" in description
    shown = invoke("presets", "tiny").stdout
    assert "--iterations 400 --batch-size 16" in shown and "own flags (16)" in shown  # the options it sets: in full
    assert "released (128)" in invoke("presets", "imagenet128").stdout  # the released model of the same name


def test_one_training_preset_as_json():
    doc = json.loads(invoke("presets", "tiny", "--json").stdout)
    assert doc["name"] == "tiny" and doc["kind"] == "training"
    assert set(doc["training"]) == {"diffusion", "classifier"}
    diffusion, classifier = doc["training"]["diffusion"], doc["training"]["classifier"]
    assert diffusion["command"] == "adm train --preset tiny"
    assert diffusion["network_flags"]["image_size"] == 16 and diffusion["train"]["iterations"] == 400
    assert classifier["command"] == "adm train-classifier --preset tiny"
    assert classifier["network_flags"]["classifier_num_classes"] == 10
    assert classifier["diffusion_flags"]["diffusion_steps"] == 100


def test_a_released_preset_shows_its_training_presets():
    doc = json.loads(invoke("presets", "imagenet128", "--json").stdout)
    assert doc["model_flags"]["image_size"] == 128 and doc["download"] == ["128-cond", "128-classifier"]
    assert doc["training"]["classifier"]["train"]["iterations"] == 300_000
    assert doc["training"]["classifier"]["source"].startswith("openai/guided-diffusion README")
    assert "batch_size" in doc["training"]["diffusion"]["unverified"]


def test_the_table_view_of_a_training_preset():
    result = invoke("presets", "tiny-sr")
    assert result.exit_code == 0
    assert "training preset tiny-sr (adm train --preset tiny-sr)" in result.stdout
    assert "own flags (8→16)" in result.stdout


def test_all_as_json_is_every_name():
    registry = default_registry()
    doc = json.loads(invoke("presets", "--json").stdout)
    assert set(doc) == set(registry.presets) | {p.name for p in registry.all_training_presets}
    assert doc["tiny"] == json.loads(invoke("presets", "tiny", "--json").stdout)
    assert doc["lsun-cat"]["classifier_flags"] is None and "diffusion" in doc["lsun-cat"]["training"]


@pytest.mark.parametrize("kind", ["diffusion", "classifier"])
def test_every_training_preset_is_shown_where_train_help_says(kind):
    """`adm train --preset` points at `adm presets`: every name it takes must be there."""
    registry = default_registry()
    for name in registry.training_presets(kind):
        result = invoke("presets", name, "--json")
        assert result.exit_code == 0 and kind in json.loads(result.stdout)["training"], name


def test_unknown_names_suggest_both_sorts():
    result = invoke("presets", "tiny-cnd")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown preset 'tiny-cnd' (did you mean tiny-cond" in lines[0]
