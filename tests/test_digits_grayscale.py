"""`adm data digits --grayscale`: the digits as one-channel data, the walk-through's own images."""

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from adm.cli.main import app

runner = CliRunner()


def test_grayscale_pngs_are_L_images_of_the_rgb_digits(tmp_path):
    for out, extra in (("rgb", []), ("gray", ["--grayscale"])):
        result = runner.invoke(app, ["data", "digits", str(tmp_path / out), "--format", "png", "--split", "heldout", *extra])
        assert result.exit_code == 0, result.output
    gray = sorted((tmp_path / "gray").glob("*.png"))
    assert len(gray) == 359 and [p.name for p in gray] == sorted(p.name for p in (tmp_path / "rgb").glob("*.png"))
    with Image.open(gray[7]) as g, Image.open(tmp_path / "rgb" / gray[7].name) as c:
        assert g.mode == "L" and g.size == (16, 16) and c.mode == "RGB"
        assert np.array_equal(np.asarray(g), np.asarray(c)[..., 0])


def test_grayscale_npz_is_one_channel_nhwc_and_evaluates_as_samples_and_reference(tmp_path):
    result = runner.invoke(app, ["data", "digits", str(tmp_path / "d.npz"), "--split", "heldout", "--grayscale"])
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "d.npz") as data:
        assert data["arr_0"].shape == (359, 16, 16, 1) and data["arr_0"].dtype == np.uint8
        assert data["arr_1"].shape == (359,)
    result = runner.invoke(app, ["evaluate", str(tmp_path / "d.npz"), "--ref", str(tmp_path / "d.npz"),
                                 "--metric", "digits"])
    assert result.exit_code == 0, result.output


def test_the_grayscale_folder_trains_a_one_channel_digits_model(tmp_path):
    runner.invoke(app, ["data", "digits", str(tmp_path / "gray"), "--format", "png", "--split", "heldout", "--grayscale"])
    result = runner.invoke(app, ["train", "--preset", "digits", "--data", str(tmp_path / "gray"),
                                 "--run-dir", str(tmp_path / "run"), "--dry-run"])
    assert result.exit_code == 0, result.output
    flags = json.loads(result.output[result.output.index("{"):])["model_flags"]
    assert flags["in_channels"] == 1 and flags["num_classes"] == 10 and flags["class_cond"] is True
