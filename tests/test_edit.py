"""`adm edit` on the shipped digits model: every mode through the CLI and the API."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import adm
from adm.cli.main import app
from adm.data.digits import load_digits

runner = CliRunner()


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """8 held-out real digits with their labels, as an npz in the original's format."""
    held = load_digits().split("heldout")
    path = tmp_path_factory.mktemp("inputs") / "real.npz"
    np.savez(path, arr_0=held.images[:8], arr_1=held.labels[:8])
    return path, held.images[:8], held.labels[:8]


def cli(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def load(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


FAST = ["--sampler", "dpm++2m-sde", "--steps", "6"]


def test_image_to_image_keeps_labels_and_is_reproducible(digits, tmp_path):
    path, images, labels = digits
    cli("edit", path, "--preset", "digits", "--strength", "0.5", *FAST, "-n", 4, "-b", 2, "--out", tmp_path / "a.npz", "-q")
    out = load(tmp_path / "a.npz")
    assert out["arr_0"].shape == (4, 16, 16, 3) and out["arr_1"].tolist() == labels[:4].tolist()
    meta = json.loads((tmp_path / "a.json").read_text())
    assert meta["key"]["edit"]["strength"] == 0.5 and meta["key"]["inputs"]["sha256"]
    api = adm.edit("digits", inputs=path, strength=0.5, sampler="dpm++2m-sde", steps=6, num_samples=4, batch_size=2)
    assert np.array_equal(api.images, out["arr_0"])
    other = adm.edit("digits", inputs=path, strength=0.5, sampler="dpm++2m-sde", steps=6, num_samples=4, seed=1)
    assert not np.array_equal(other.images, out["arr_0"])
    weak = adm.edit("digits", inputs=path, strength=0.1, sampler="dpm++2m-sde", steps=6, num_samples=4, scale=0.0)
    strong = adm.edit("digits", inputs=path, strength=1.0, sampler="dpm++2m-sde", steps=6, num_samples=4, scale=0.0)
    diff = lambda edited: np.abs(edited.images.astype(int) - images[:4].astype(int)).mean()  # noqa: E731
    assert diff(weak) < diff(strong)  # a weak edit stays near the input


def test_class_transfer_labels_and_guides_towards_the_target(digits, tmp_path):
    path, *_ = digits
    edited = adm.edit("digits", inputs=path, strength=0.8, classes="7", sampler="dpm++2m-sde", steps=8, num_samples=8)
    assert edited.labels.tolist() == [7] * 8
    from adm.evaluation.digits_judge import Judge
    from adm.hub.download import ensure_artifact

    judge = Judge.load(ensure_artifact("digits-judge"))
    assert judge.score(edited.images, edited.labels).accuracy >= 0.75


@pytest.mark.parametrize("how", [["--inpaint", "x0", *FAST], ["--inpaint", "repaint", "--sampler", "ddpm", "--steps", "6",
                                                              "--jumps", "2", "--jump-length", "2"]])
def test_inpainting_keeps_the_known_pixels_exactly(digits, tmp_path, how):
    path, images, _ = digits
    from PIL import Image

    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[:, :8] = 255  # keep the left half
    Image.fromarray(mask).save(tmp_path / "mask.png")
    cli("edit", path, "--preset", "digits", "--strength", "1", "--mask", tmp_path / "mask.png", *how, "-n", 4,
        "--out", tmp_path / "i.npz", "-q")
    out = load(tmp_path / "i.npz")["arr_0"]
    assert np.array_equal(out[:, :, :8], images[:4, :, :8])
    assert not np.array_equal(out[:, :, 8:], images[:4, :, 8:])
    grid = np.asarray(Image.open(tmp_path / "i.png"))
    assert grid.shape[1] > grid.shape[0] / 2  # input | mask | output per row: a wide grid


def test_inversion_reconstructs_better_with_more_steps_and_saves_latents(digits, tmp_path):
    path, images, _ = digits
    errors = []
    for steps in ("ddim5", "ddim25"):
        out = tmp_path / f"r{steps}.npz"
        cli("edit", path, "--preset", "digits", "--invert", "--strength", "1", "--scale", "0", "--steps", steps,
            "-n", 4, "--save-latents", tmp_path / f"z{steps}.npz", "--out", out, "-q")
        errors.append(np.abs(load(out)["arr_0"].astype(int) - images[:4].astype(int)).mean())
    assert errors[1] < errors[0] and errors[1] < 4.0  # of 255
    latents = load(tmp_path / "zddim25.npz")["arr_0"]
    assert latents.shape == (4, 3, 16, 16) and latents.dtype == np.float32


def test_an_interrupted_edit_resumes_to_the_same_file(digits, tmp_path, monkeypatch):
    from adm.sampling.edit import EditProducer

    path, *_ = digits
    args = ["edit", path, "--preset", "digits", *FAST, "-n", 4, "-b", 2]
    cli(*args, "--out", tmp_path / "whole.npz", "-q")
    real, calls = EditProducer.__call__, []

    def once(self, indices):  # dies in the second batch, as Ctrl-C would
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(self, indices)

    monkeypatch.setattr(EditProducer, "__call__", once)
    assert "run the same command to continue" in cli(*args, "--out", tmp_path / "r.npz", code=130).output
    monkeypatch.undo()
    assert "2 reused, 2 sampled" in cli(*args, "--out", tmp_path / "r.npz").output
    assert np.array_equal(load(tmp_path / "r.npz")["arr_0"], load(tmp_path / "whole.npz")["arr_0"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--strength", "0"], "bad value for --strength"),
        (["--strength", "1.5"], "bad value for --strength"),
        (["--invert", "--sampler", "dpm++2m-sde"], "--invert inverts with DDIM"),
        (["--inpaint", "repaint", "--sampler", "dpm++2m", "--mask", "{mask}"], "--inpaint repaint resamples the ancestral chain"),
        (["--mask", "{masks3}"], "3 masks for 8 inputs"),
        (["--mask", "{big}"], "masks are 32x32, the model takes 16x16"),
        (["--jumps", "3"], "need a --mask"),
        (["-n", "9"], "asked for 9 edits of 8 inputs"),
    ],
)
def test_bad_edits_are_one_line_errors(digits, tmp_path, extra, message):
    path, *_ = digits
    np.savez(tmp_path / "masks3.npz", arr_0=np.zeros((3, 16, 16), np.uint8))
    np.savez(tmp_path / "big.npz", arr_0=np.zeros((1, 32, 32), np.uint8))
    np.savez(tmp_path / "mask.npz", arr_0=np.zeros((1, 16, 16), np.uint8))
    files = {"mask": tmp_path / "mask.npz", "masks3": tmp_path / "masks3.npz", "big": tmp_path / "big.npz"}
    args = [str(a).format(**files) for a in extra]
    result = runner.invoke(app, ["edit", str(path), "--preset", "digits", *args, "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "x.npz.parts").exists()


@pytest.mark.slow
def test_two_torchrun_ranks_edit_what_one_process_edits(digits, tmp_path):
    """Edits are split across ranks like samples: the npz is the single-process one, byte for byte."""
    from tests_support import run_two_gloo_ranks

    path, *_ = digits
    args = ["edit", str(path), "--preset", "digits", "--strength", "0.6", *FAST, "-n", "6", "-b", "2", "-q"]
    cli(*args, "--out", tmp_path / "one.npz")
    run_two_gloo_ranks(["-m", "adm.cli", *args, "--out", str(tmp_path / "two.npz")], timeout=300)
    one, two = load(tmp_path / "one.npz"), load(tmp_path / "two.npz")
    assert np.array_equal(one["arr_0"], two["arr_0"]) and np.array_equal(one["arr_1"], two["arr_1"])


def test_a_refined_inversion_reconstructs_more_exactly(digits):
    """One fixed-point refinement per inversion step (the default) beats plain DDIM inversion."""
    path, images, _ = digits

    def error(iterations: int) -> float:
        out = adm.edit("digits", inputs=path, invert=True, strength=1.0, scale=0.0, steps="ddim25", num_samples=4,
                       invert_iterations=iterations)
        return float(np.abs(out.images.astype(int) - images[:4].astype(int)).mean())

    plain, refined = error(0), error(1)
    assert refined < 0.75 * plain, (plain, refined)


@pytest.mark.parametrize("sampling", [{}, {"sampler": "ddim", "steps": "25"}], ids=["default", "plain-count"])
def test_inversion_at_strength_1_reconstructs_with_the_default_and_plain_step_counts(digits, sampling):
    """A plain count keeps t = 999 (√ᾱ ≈ 5e-5) in the original's chain: inverting up to it returned noise
    (mean error ~106 of 255). Edits start at the schedule's start (t = 995), so the chain's top is 957."""
    path, images, _ = digits
    out = adm.edit("digits", inputs=path, invert=True, strength=1.0, scale=0.0, num_samples=4, **sampling)
    assert np.abs(out.images.astype(int) - images[:4].astype(int)).mean() < 4.0  # of 255
