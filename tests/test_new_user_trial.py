"""What a new-user trial of sampling and `adm edit` found (issues 10-13), each pinned down.

Edits: a mask inpaints from noise by default, unlabelled inputs of a class-conditional model
need --classes, masks of the inputs' size are fitted like the inputs, one image is an input,
masks may be one per edit. Sampling: `--steps 0` and `--grid -1` are refused, a chain sampler on
a solver preset keeps the preset's evaluation budget, a refusal names what the user changed,
an int class works from Python, `adm` alone is its help.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import adm
from adm.cli.main import app
from adm.data.digits import load_digits

runner = CliRunner()
FAST = ["--sampler", "dpm++2m-sde", "--steps", "4"]


def cli(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    held = load_digits().split("heldout")
    folder = tmp_path_factory.mktemp("real")
    np.savez(folder / "real.npz", arr_0=held.images[:4], arr_1=held.labels[:4])
    photos = folder / "photos"
    photos.mkdir()
    for i in range(2):  # unlabelled 32x32 pictures (twice the model's size)
        Image.fromarray(np.kron(held.images[i], np.ones((2, 2, 1), np.uint8))).save(photos / f"p{i}.png")
    return folder, held.images[:4], held.labels[:4]


def test_a_mask_inpaints_from_pure_noise_unless_a_strength_is_given(real, tmp_path):
    folder, *_ = real
    mask = np.zeros((16, 16), np.uint8)
    mask[:, :8] = 255
    Image.fromarray(mask).save(tmp_path / "left.png")
    cli("edit", folder / "real.npz", "--preset", "digits", "--mask", tmp_path / "left.png", *FAST, "--out", tmp_path / "a.npz", "-q")
    assert json.loads((tmp_path / "a.json").read_text())["key"]["edit"]["strength"] == 1.0
    cli("edit", folder / "real.npz", "--preset", "digits", "--mask", tmp_path / "left.png", "--strength", "0.5", *FAST,
        "--out", tmp_path / "b.npz", "-q")
    assert json.loads((tmp_path / "b.json").read_text())["key"]["edit"]["strength"] == 0.5


def test_unlabelled_inputs_of_a_conditional_model_need_classes(real, tmp_path):
    folder, *_ = real
    result = cli("edit", folder / "photos", "--preset", "digits", *FAST, "--out", tmp_path / "x.npz", code=2)
    assert "has no labels (arr_1)" in result.output and "--classes" in result.output
    edited = adm.edit("digits", inputs=folder / "photos", classes=[4, 9], sampler="dpm++2m-sde", steps=4)
    assert edited.labels.tolist() == [4, 9] and edited.images.shape == (2, 16, 16, 3)


def test_masks_of_the_inputs_size_are_fitted_like_the_inputs(real, tmp_path):
    folder, *_ = real
    big = np.zeros((32, 32), np.uint8)
    big[:, :16] = 255  # the left half of the 32x32 pictures
    Image.fromarray(big).save(tmp_path / "big.png")
    edited = adm.edit("digits", inputs=folder / "photos", mask=tmp_path / "big.png", classes="4", sampler="dpm++2m-sde",
                      steps=4)
    from adm.data.crops import center_crop  # what `adm train` and `adm edit` do to inputs

    inputs = np.stack([center_crop(np.asarray(Image.open(folder / "photos" / f"p{i}.png")), 16) for i in range(2)])
    assert np.array_equal(edited.images[:, :, :8], inputs[:, :, :8])  # the kept half, exactly
    bad = np.zeros((24, 24), np.uint8)
    Image.fromarray(bad).save(tmp_path / "bad.png")
    result = cli("edit", folder / "photos", "--preset", "digits", "--classes", "4", "--mask", tmp_path / "bad.png",
                 "--out", tmp_path / "y.npz", code=2)
    assert "masks are 24x24, the model takes 16x16" in result.output and "inputs' (32x32)" in result.output


def test_one_image_is_an_input_and_masks_may_be_one_per_edit(real, tmp_path):
    folder, images, labels = real
    one = adm.edit("digits", inputs=folder / "photos" / "p0.png", classes=7, sampler="dpm++2m-sde", steps=4)
    assert one.images.shape == (1, 16, 16, 3) and one.labels.tolist() == [7]
    np.savez(tmp_path / "masks2.npz", arr_0=np.full((2, 16, 16), 255, np.uint8))
    kept = adm.edit("digits", inputs=folder / "real.npz", mask=tmp_path / "masks2.npz", num_samples=2,
                    sampler="dpm++2m-sde", steps=4)
    assert np.array_equal(kept.images, images[:2])  # everything kept
    result = cli("edit", folder / "real.npz", "--preset", "digits", "--mask", tmp_path / "masks2.npz", "-n", "3",
                 "--out", tmp_path / "z.npz", code=2)
    assert "2 masks for 4 inputs (3 edits)" in result.output


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "takes a number of network evaluations (1 or more)"),
    (["--sampler", "heun", "--steps", "0"], "takes a number of network evaluations"),
    (["--steps", "ddim25"], "respacings such as ddim25 or 10,15,20 are for --sampler ddpm or ddim"),
    (["--grid", "-1"], "bad value for --grid"),
])
def test_sampling_refuses_what_would_write_noise(tmp_path, extra, message):
    result = cli("sample", "--preset", "digits", "-n", "2", *extra, "--out", tmp_path / "s.npz", code=2)
    assert message in result.output
    assert not (tmp_path / "s.npz").exists()


def test_a_chain_sampler_on_a_solver_preset_keeps_its_evaluation_budget(tmp_path):
    cli("sample", "--preset", "digits", "--sampler", "ddpm", "-n", "2", "--out", tmp_path / "s.npz", "-q")
    meta = json.loads((tmp_path / "s.json").read_text())
    preset_steps = adm.get_preset("digits").sampling.steps
    assert meta["key"]["steps"] == preset_steps and meta["evaluations"] == int(preset_steps)
    assert "number of evaluations of the preset digits" in meta["steps_rule"]


def test_a_refusal_names_what_the_user_changed(tmp_path):
    out = tmp_path / "s.npz"
    cli("sample", "--preset", "digits", "-n", "2", "--steps", "4", "--out", out, "-q")
    result = cli("sample", "--preset", "digits", "-n", "2", "--sampler", "unipc", "--steps", "3", "--out", out, code=2)
    assert "sampler 'dpm++2m-sde' → 'unipc'" in result.output and "steps '4' → '3'" in result.output
    assert "grid" not in result.output


def test_an_int_class_from_python(tmp_path):
    samples = adm.sample("digits", num_samples=2, classes=7, steps=4)
    assert samples.labels.tolist() == [7, 7]
    with pytest.raises(adm.UsageError, match="class id 12 is out of range"):
        adm.sample("digits", num_samples=2, classes=[12], steps=4)


def test_adm_alone_prints_its_help_and_succeeds():
    result = runner.invoke(app, [])
    assert result.exit_code == 0 and "sample" in result.output and "error" not in result.output


# --- issue 20 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("options, message", [
    ({"scale": float("inf")}, "bad value for --scale: Input should be a finite number, got inf"),
    ({"scale": "nan"}, "bad value for --scale: Input should be a finite number, got nan"),  # not ">= 0"
    ({"scale": "1e999"}, "bad value for --scale: Input should be a finite number, got inf"),
    ({"guidance_interval": (0.0, float("nan"))}, "bad value for --guidance-interval: Input should be a finite number"),
    ({"sampler": "ddim", "eta": float("nan")}, "bad value for --eta: Input should be a finite number"),
    ({"sampler": "dpm++2m-sde", "sampler_options": {"eta": "inf"}}, "bad value for sampler option eta: Input should be a finite number"),
])
def test_non_finite_numbers_are_refused_as_such(options, message):
    """`--scale inf` wrote saturated images and a sidecar with `"scale": Infinity` (not JSON);
    `--scale nan` was refused as "should be greater than or equal to 0"."""
    with pytest.raises(adm.UsageError) as info:
        adm.sample("digits", num_samples=1, **options)
    assert message in str(info.value)


def test_non_finite_numbers_are_refused_in_every_settings_object():
    from adm.core.validation import validated
    from adm.spec.flags import ModelFlags, parse_flags
    from adm.training import TrainConfig

    with pytest.raises(adm.UsageError, match="bad value for --lr: Input should be a finite number, got inf"):
        validated(TrainConfig, {"data": "d.npz", "lr": float("inf")})
    with pytest.raises(adm.UsageError, match="bad value for --dropout: Input should be a finite number, got nan"):
        parse_flags(ModelFlags, "--dropout nan")
    assert validated(TrainConfig, {"data": "d.npz", "lr": 1e-4}).lr == 1e-4


def test_a_sidecar_is_strict_json(tmp_path):
    from adm.core.fileio import write_json_atomic

    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_json_atomic(tmp_path / "x.json", {"scale": float("inf")})
    assert list(tmp_path.iterdir()) == []


def test_a_scale_that_overflows_float32_is_refused_not_written_black(tmp_path):
    """Finite is the rule for --scale; at 1e30 the guided step overflows float32 into NaN, which
    became black images. Refused instead (where it overflows depends on the model and precision)."""
    with pytest.raises(adm.UsageError, match=r"came out as NaN/infinity: the arithmetic overflowed .*\(lower the guidance scale\)"):
        adm.sample("digits", num_samples=1, scale=1e30, sampler="ddpm", steps="10", out=tmp_path / "s.npz")
    assert list(tmp_path.iterdir()) == []


def test_labels_out_of_range_in_an_input_npz_are_one_line(tmp_path):
    np.savez(tmp_path / "bad.npz", arr_0=np.zeros((2, 16, 16, 3), np.uint8), arr_1=np.array([-1, 3]))
    result = cli("edit", tmp_path / "bad.npz", "--preset", "digits", "--out", tmp_path / "e.npz", code=2)
    assert result.stderr.strip() == (f"error: {tmp_path / 'bad.npz'} (arr_1): label -1 (image 0) is out of range for a "
                                     "model of 10 classes (0..9) (fix them, or pass --classes: the classes to edit the inputs into)")
    edited = adm.edit("digits", inputs=tmp_path / "bad.npz", classes="4", sampler="dpm++2m-sde", steps=4)
    assert edited.labels.tolist() == [4, 4]  # the labels are not used: --classes replaces them


def test_fp16_on_a_cpu_is_warned_about():
    warnings = {}
    for precision in ("fp16", "bf16", "fp32"):
        events = []
        adm.sample("digits", num_samples=1, steps=2, precision=precision, device="cpu", on_progress=events.append)
        warnings[precision] = [e.message for e in events if e.message and e.message.startswith("warning:")]
    assert any("--precision fp16 on a CPU is several times slower than fp32" in w and "bf16" in w for w in warnings["fp16"])
    assert not any("fp16" in w for w in warnings["bf16"] + warnings["fp32"])


def test_adm_data_does_not_replace_a_file(tmp_path):
    mine = tmp_path / "d.npz"
    mine.write_bytes(b"my data")
    result = cli("data", "digits", mine, code=2)
    assert result.stderr.strip() == f"error: {mine} exists (pass --overwrite to replace it, or choose another path)"
    assert mine.read_bytes() == b"my data"
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "0_0000.png").write_bytes(b"mine")
    assert "0_0000.png exists" in cli("data", "digits", tmp_path / "pngs", "--format", "png", code=2).stderr
    assert [p.name for p in (tmp_path / "pngs").iterdir()] == ["0_0000.png"]
    cli("data", "digits", mine, "--overwrite")
    assert np.load(mine)["arr_0"].shape == (1797, 16, 16, 3)
