"""adm at 80 columns (issue 21): listings whose headers read `ki…`, paths folded over four lines,
help with 20 characters left for the descriptions, and `adm edit`'s grid one tall strip.

A table cut short shows rich's ellipsis; every check below refuses one.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from adm.cli.main import app
from adm.data.digits import load_digits
from adm.data.grid import make_grid
from adm.presets import default_registry
from adm.sampling.batches import grouped_columns

WIDTH = 80
CUT = "…"
BOX = "┏┃┡│└┌├╭╰"


def at_80(*args: str, **env: str) -> str:
    result = CliRunner(env={"COLUMNS": str(WIDTH), **env}).invoke(app, list(args))
    assert result.exit_code == 0, result.output
    assert CUT not in result.stdout, result.stdout
    tables = [line for line in result.stdout.splitlines() if line[:1] in BOX]  # prose lines are the terminal's to wrap
    assert max(len(line) for line in tables) <= WIDTH
    return result.stdout


def row(text: str, name: str) -> str:
    """The first line of a table row whose first cell is ``name``."""
    return next(line for line in text.splitlines() if line.startswith(f"│ {name} "))


def test_presets_fit_with_whole_headers_and_one_line_per_released_model():
    text = at_80("presets")
    released, _, training = text.partition("training presets")
    for header in ("name", "size", "classes", "guidance", "sampler"):
        assert f" {header} " in released
    for header in ("name", "size", "params", "GFLOPs", "description"):
        assert f" {header} " in training
    for preset in default_registry().presets.values():
        line = row(released, preset.name)
        assert f" {preset.sampling.sampler} {preset.sampling.steps} " in line
    assert " 128 " in row(training, "imagenet128") and " 8→16 " in row(training, "tiny-sr")
    assert " 552.8M " in row(training, "adm-256") and " 2240 " in row(training, "adm-256")  # cost cells whole


def test_download_list_shows_each_file_on_its_row(tmp_path):
    text = at_80("download", "--list", ADM_HOME=str(tmp_path))
    assert f"in the cache {tmp_path} " in text  # the folder said once, not on every row
    registry = default_registry()
    for artifact in registry.artifacts.values():
        assert f" {artifact.filename} " in row(text, artifact.name)
    assert " ? " not in text and " unknown " in row(text, "64-cond")  # no published size: said so
    assert " yes " in row(text, "digits-model") and "part of adm itself" in text


def test_samplers_keep_names_and_options_whole():
    text = at_80("samplers")
    assert " dpm++2m-sde " in text and " final_order=unipc " in text and " variant=bh2 " in text


def test_edit_help_leaves_room_for_the_descriptions():
    text = at_80("edit", "--help")
    preset = next(line for line in text.splitlines() if "--preset" in line)
    assert WIDTH - preset.index("Named preset") >= 30  # it was 20: `--no-clip-denoised` had a column
    assert "--classifier-run-dir " in text  # option names whole
    switch = [line for line in text.splitlines() if "clip-denoised" in line]
    assert "--clip-denoised " in switch[0] and "--no-clip-denoised " in switch[1]


def test_help_paragraphs_are_wrapped_once():
    """typer kept the docstring's line breaks and rich wrapped each source line again: a stub
    (`continued in`) every other line."""
    assert "continued in --run-dir, else from the defaults shown." in at_80("train", "--help")


@pytest.mark.parametrize(("count", "group"), [(20, 3), (20, 2), (4, 3), (64, 3), (1, 2)])
def test_grid_groups_are_laid_out_close_to_square(count, group):
    columns = grouped_columns(count, group)
    assert columns % group == 0  # a sample's input | mask | output stay on one row
    height, width, _ = make_grid(np.zeros((count * group, 16, 16, 3), np.uint8), columns).shape
    assert 0.5 <= width / height <= 2


def test_edit_grid_of_20_edits_is_roughly_square(tmp_path):
    from PIL import Image

    held = load_digits().split("heldout")
    inputs = tmp_path / "in.npz"
    np.savez(inputs, arr_0=held.images[:20], arr_1=held.labels[:20])
    result = CliRunner().invoke(app, ["edit", str(inputs), "--preset", "digits", "--sampler", "dpm++2m-sde",
                                      "--steps", "2", "--strength", "0.3", "--out", str(tmp_path / "e.npz"), "-q"])
    assert result.exit_code == 0, result.output
    width, height = Image.open(tmp_path / "e.png").size
    assert 0.75 <= width / height <= 1.33, (width, height)  # was 134 x 1322: input | output, one edit a row


def test_a_grid_of_fewer_samples_than_classes_has_no_blank_columns():
    """`adm sample --preset digits -n 4` drew a 10-column grid with six blank cells."""
    images = np.zeros((4, 16, 16, 3), np.uint8)
    assert make_grid(images, columns=10).shape[1] == 4 * (16 + 2) + 2
    assert make_grid(np.zeros((20, 16, 16, 3), np.uint8), columns=10).shape[1] == 10 * 18 + 2
