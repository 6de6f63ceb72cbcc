"""Your own runs sampled with nothing retyped (issue 20, items 7, 9, 17): a classifier run guides a
diffusion run (`--classifier-run-dir`, or a `--classifier-path` inside it), a checkpoint inside a run
dir brings its flags, `adm upsample --run-dir` samples a trained upsampler, and a resumed upsampling
of a folder notices that the folder's images changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import adm
from adm.api.sources import ModelSource
from adm.cli.main import app
from adm.spec.flags import parse_model_flags, split_flag_string
from tiny import MODEL_FLAGS, write_tiny_checkpoints

runner = CliRunner()
FAST = ["--iterations", "1", "--batch-size", "4", "--save-every", "1", "--device", "cpu"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def refused(*args) -> str:
    """The one-line error of a refused command (exit 2, no traceback)."""
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def images(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        return data["arr_0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-step runs of `adm train` (class-conditional 16px, and an 8->16 upsampler) and of
    `adm train-classifier`, all on the same 8 labelled 16x16 images."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    data = root / "d.npz"
    np.savez(data, arr_0=rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), arr_1=np.arange(8) % 2)
    found = {"model": root / "tc", "classifier": root / "cls", "upsampler": root / "sr"}
    ok("train", "--preset", "tiny-cond", "--data", data, "--run-dir", found["model"], *FAST)
    ok("train-classifier", "--preset", "tiny", "--data", data, "--run-dir", found["classifier"], "--workers", "0", *FAST)
    ok("train", "--preset", "tiny-sr", "--data", data, "--run-dir", found["upsampler"], *FAST)
    return found


def sample(*args):
    return ("sample", "-n", 2, "--steps", 3, "-q", *args)


# ---- item 7: a classifier run guides a diffusion run ------------------------------------------

def test_a_classifier_run_guides_a_diffusion_run_with_nothing_retyped(runs, tmp_path):
    by_dir, by_path = tmp_path / "dir.npz", tmp_path / "path.npz"
    ok(*sample("--run-dir", runs["model"], "--classifier-run-dir", runs["classifier"], "--out", by_dir))
    ok(*sample("--run-dir", runs["model"], "--classifier-path", runs["classifier"] / "model000001.pt", "--out", by_path))
    np.testing.assert_array_equal(images(by_dir), images(by_path))
    sidecar = json.loads(by_dir.with_suffix(".json").read_text())
    assert sidecar["key"]["scale"] == 1.0  # a classifier given: guided at scale 1 unless --scale says otherwise
    assert Path(sidecar["weights_files"]["classifier"]) == runs["classifier"] / "model000001.pt"
    unguided = tmp_path / "unguided.npz"
    ok(*sample("--run-dir", runs["model"], "--scale", 0, "--out", unguided, "--classes", ",".join(map(str, np.load(by_dir)["arr_1"]))))
    assert not np.array_equal(images(by_dir), images(unguided)), "the classifier steers the samples"
    # the Python API: the same source, in memory
    memory = adm.sample(source=ModelSource(run_dir=runs["model"], classifier_run_dir=runs["classifier"]),
                        num_samples=2, steps="3", device="cpu")
    np.testing.assert_array_equal(memory.images, images(by_dir))


def test_adm_edit_takes_the_same_run_dirs(runs, tmp_path):
    """`adm edit` guides with a classifier run and picks a run's weights as `adm sample` does."""
    inputs = tmp_path / "in.npz"
    np.savez(inputs, arr_0=np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8), arr_1=np.arange(2))
    edit = ("edit", inputs, "--steps", 3, "-q", "--run-dir", runs["model"])
    ok(*edit, "--classifier-run-dir", runs["classifier"], "--out", tmp_path / "dir.npz")
    ok(*edit, "--classifier-path", runs["classifier"] / "model000001.pt", "--out", tmp_path / "path.npz")
    np.testing.assert_array_equal(images(tmp_path / "dir.npz"), images(tmp_path / "path.npz"))
    ok(*edit, "--weights", "model", "--scale", 0, "--out", tmp_path / "raw.npz")
    assert json.loads((tmp_path / "raw.json").read_text())["weights_files"]["model"].endswith("model000001.pt")


def test_a_run_dirs_samples_are_named_after_the_run(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output goes to the working directory
    ok(*sample("--run-dir", runs["model"], "--scale", 0))
    assert (tmp_path / "tc_samples.npz").is_file()  # was model_samples.npz for every run


def test_a_checkpoint_inside_a_run_dir_brings_its_flags(runs, tmp_path):
    ok(*sample("--model-path", runs["model"] / "model000001.pt", "--scale", 0, "--out", tmp_path / "a.npz"))
    ok(*sample("--run-dir", runs["model"], "--weights", "model", "--scale", 0, "--out", tmp_path / "b.npz"))
    np.testing.assert_array_equal(images(tmp_path / "a.npz"), images(tmp_path / "b.npz"))


def test_a_classifier_trained_on_other_noise_is_warned_about(runs, tmp_path):
    ckpt = write_tiny_checkpoints(tmp_path / "ckpt")  # a 100-step linear model; the classifier run is cosine
    result = ok("sample", "--model-flags", MODEL_FLAGS, "--model-path", ckpt["model"], "--classifier-run-dir",
                runs["classifier"], "-n", 1, "--steps", 2, "--out", tmp_path / "w.npz")
    assert "trained on the cosine schedule of 100 steps, the model uses the linear schedule of 100" in " ".join(result.output.split())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run-dir", "{model}", "--classifier-run-dir", "{model}"], "is a diffusion run, not a classifier"),
        (["--run-dir", "{model}", "--classifier-path", "{model}/model000001.pt"], "checkpoint of a diffusion run"),
        (["--run-dir", "{model}", "--classifier-run-dir", "{classifier}", "--classifier-path", "{classifier}/model000001.pt"],
         "--classifier-run-dir gives the classifier's flags and checkpoint"),
        (["--model-path", "{outside}"], "--model-path needs --model-flags for a checkpoint outside a run dir"),
        (["--run-dir", "{classifier}"], "guide it with this classifier via --classifier-run-dir"),
        (["--run-dir", "{upsampler}"], "adm upsample"),
    ],
)
def test_sources_that_do_not_fit_are_one_line_errors(runs, tmp_path, args, message):
    outside = tmp_path / "copy.pt"
    outside.write_bytes((runs["model"] / "model000001.pt").read_bytes())
    files = {**{k: str(v) for k, v in runs.items()}, "outside": str(outside)}
    assert message in refused(*sample(*[a.format(**files) for a in args], "--out", tmp_path / "x.npz"))
    assert not (tmp_path / "x.npz").exists()


# ---- item 17: adm upsample --run-dir ----------------------------------------------------------

def base_folder(tmp_path: Path, n: int = 3) -> Path:
    folder = tmp_path / "base"
    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


def test_upsample_a_trained_upsampler_run(runs, tmp_path):
    base = base_folder(tmp_path)
    ok("upsample", "--run-dir", runs["upsampler"], "--base-samples", base, "--steps", 3, "--out", tmp_path / "r.npz", "-q")
    assert images(tmp_path / "r.npz").shape == (3, 16, 16, 3)
    # the same run rebuilt by hand from config.json: every flag, the empty --timestep_respacing included
    recorded = json.loads((runs["upsampler"] / "config.json").read_text())["model_flags"]
    flags = " ".join(f"--{name} {value}" for name, value in recorded.items())
    ema = next(runs["upsampler"].glob("ema_*_000001.pt"))
    ok("upsample", "--model-flags", flags, "--model-path", ema, "--base-samples", base, "--steps", 3,
       "--out", tmp_path / "f.npz", "-q")
    np.testing.assert_array_equal(images(tmp_path / "r.npz"), images(tmp_path / "f.npz"))
    memory = adm.upsample(source=ModelSource(run_dir=runs["upsampler"]), base_samples=base, steps="3", device="cpu")
    np.testing.assert_array_equal(memory.images, images(tmp_path / "r.npz"))
    assert "the model flags do not describe an upsampler" in refused(
        "upsample", "--run-dir", runs["model"], "--base-samples", base, "--out", tmp_path / "x.npz")


def test_an_empty_text_flag_without_a_value_is_the_empty_value():
    assert split_flag_string("--timestep_respacing --use_kl False") == {"timestep_respacing": "", "use_kl": "False"}
    assert parse_model_flags("--image_size 64 --channel_mult --timestep_respacing").timestep_respacing == ""
    with pytest.raises(adm.AdmError, match="flag --num_channels has no value"):
        split_flag_string("--num_channels --use_kl False")


# ---- item 9: a resumed upsampling of a folder checks the folder's content ---------------------

def test_a_changed_base_folder_is_not_mixed_into_a_resumed_run(runs, tmp_path):
    base = base_folder(tmp_path)
    out = tmp_path / "u.npz"
    args = ["upsample", "--run-dir", runs["upsampler"], "--weights", "model", "--base-samples", base, "--steps", 3,
            "--out", out, "-q"]
    ok(*args, "-n", 2)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(base / "0.png")  # an image already upsampled
    assert "holds samples of a different command (base" in refused(*args, "-n", 3)
    ok(*args, "-n", 3, "--overwrite")
    fresh = tmp_path / "fresh.npz"
    ok(*[fresh if a == out else a for a in args], "-n", 3)
    np.testing.assert_array_equal(images(out), images(fresh))
