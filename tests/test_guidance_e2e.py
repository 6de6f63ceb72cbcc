"""Classifier-free guidance and autoguidance end to end: a CFG model trained by the test samples
conditionally and unconditionally; every sampler runs with each guidance through the CLI and the
API, reproducibly; the guidance settings and the guide's weights are part of the run's key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import adm
from adm.api.sources import ModelSource
from adm.cli.main import app
from adm.hub.checkpoints import save_state_dict
from adm.sampling.registry import BUILTIN
from adm.spec.factory import build_classifier
from adm.spec.flags import ClassifierFlags, parse_flags
from tiny import CLASSIFIER_FLAGS, randomize

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny class-conditional model trained with label dropout (snapshot at step 2 for the guide),
    and a classifier for CFG + classifier."""
    root = tmp_path_factory.mktemp("cfg")
    rng = np.random.default_rng(0)
    data = root / "d.npz"
    np.savez(data, arr_0=rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8), arr_1=np.arange(16) % 3)
    run = root / "cfg-run"
    invoke("train", "--preset", "tiny-cond", "--data", data, "--run-dir", run, "--batch-size", 4, "--iterations", 4,
           "--save-every", 4, "--snapshots", "2", "--label-dropout", 0.5, "--ema-rate", "0.5", "--device", "cpu")
    classifier = root / "classifier.safetensors"
    save_state_dict(randomize(build_classifier(parse_flags(ClassifierFlags, CLASSIFIER_FLAGS)), 3).state_dict(), classifier)
    return {"run": run, "classifier": classifier, "root": root}


def sample(runs, out, *extra):
    return invoke("sample", "--run-dir", runs["run"], "-n", 4, "-b", 2, "--classes", "0,1,2,3", "--out", out, "-q", *extra)


def test_a_cfg_model_samples_conditionally_unconditionally_and_guided(runs, tmp_path):
    plain, guided, null = tmp_path / "p.npz", tmp_path / "g.npz", tmp_path / "n.npz"
    sample(runs, plain, "--sampler", "dpm++2m", "--steps", 6)
    sample(runs, guided, "--sampler", "dpm++2m", "--steps", 6, "--cfg-scale", 3)
    invoke("sample", "--run-dir", runs["run"], "-n", 4, "--classes", "null", "--sampler", "dpm++2m", "--steps", 6,
           "--out", null, "-q")
    assert not np.array_equal(load(plain)["arr_0"], load(guided)["arr_0"])
    assert load(null)["arr_1"].tolist() == [10, 10, 10, 10]  # the null label is what was sampled
    assert not np.array_equal(load(null)["arr_0"], load(plain)["arr_0"])
    key = json.loads(guided.with_suffix(".json").read_text())["key"]
    assert key["cfg_scale"] == 3.0


GUIDES = {
    "cfg": ["--cfg-scale", 2],
    "autoguidance": ["--autoguidance", 1.5, "--guide-model", "{run}@2"],
    "cfg+classifier": ["--cfg-scale", 1, "--scale", 2, "--classifier-flags", CLASSIFIER_FLAGS,
                       "--classifier-path", "{classifier}"],
    "cfg on an interval": ["--cfg-scale", 2, "--cfg-interval", "0,0.5"],
}


@pytest.mark.parametrize("sampler", sorted(BUILTIN))
@pytest.mark.parametrize("guide", sorted(GUIDES))
def test_every_sampler_runs_with_each_guidance_reproducibly(runs, tmp_path, sampler, guide):
    steps = {"ddpm": "4", "ddim": "4", "heun": "5", "cm": "2"}.get(sampler, "4")
    extra = [str(a).format(run=runs["run"], classifier=runs["classifier"]) for a in GUIDES[guide]]
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    sample(runs, one, "--sampler", sampler, "--steps", steps, "--seed", 7, *extra)
    sample(runs, two, "--sampler", sampler, "--steps", steps, "--seed", 7, "-b", 4, *extra)
    a, b = load(one)["arr_0"].astype(int), load(two)["arr_0"].astype(int)
    assert np.abs(a - b).max() <= 1  # same seed, same images (up to kernels' batch-size rounding)


def test_the_api_takes_the_same_guidance(runs, tmp_path):
    source = ModelSource(run_dir=runs["run"], guide_model=f"{runs['run']}@2")
    api = adm.sample(source=source, sampler="unipc", steps="5", cfg_scale=1.0, autoguidance=1.0, num_samples=4,
                     classes=[0, 1, 2, 3], seed=7)
    cli = tmp_path / "c.npz"
    sample(runs, cli, "--sampler", "unipc", "--steps", 5, "--cfg-scale", 1, "--autoguidance", 1,
           "--guide-model", f"{runs['run']}@2", "--seed", 7, "-b", 4)
    assert np.array_equal(api.images, load(cli)["arr_0"])


def test_a_resume_with_another_scale_or_guide_is_refused(runs, tmp_path):
    out = tmp_path / "r.npz"
    sample(runs, out, "--sampler", "dpm++2m", "--steps", 4, "--cfg-scale", 2)
    other = runner.invoke(app, [str(a) for a in ["sample", "--run-dir", runs["run"], "-n", 4, "-b", 2, "--classes",
                                                    "0,1,2,3", "--out", out, "--sampler", "dpm++2m", "--steps", 4,
                                                    "--cfg-scale", 3]])
    assert other.exit_code == 2 and "different command" in other.output and "cfg_scale 2.0 → 3.0" in other.output
    auto = tmp_path / "a.npz"
    args = ["--sampler", "dpm++2m", "--steps", 4, "--autoguidance", 1]
    sample(runs, auto, *args, "--guide-model", f"{runs['run']}@2")
    moved = runner.invoke(app, [str(a) for a in ["sample", "--run-dir", runs["run"], "-n", 4, "-b", 2, "--classes",
                                                    "0,1,2,3", "--out", auto, *args, "--guide-model", f"{runs['run']}@4"]])
    assert moved.exit_code == 2 and "different command" in moved.output  # another guide checkpoint


@pytest.mark.parametrize("args, message", [
    (["--cfg-scale", 2, "--classes", "null", "--scale", 1], "classifier"),
    (["--autoguidance", 1], "needs a guide model"),
    (["--guide-model", "x"], "its scale is 0"),
    (["--guidance", "cfg=2"], "its own option"),
    (["--guidance", "nope=2"], "unknown guidance"),
])
def test_guidance_mistakes_are_one_line_errors(runs, tmp_path, args, message):
    result = runner.invoke(app, [str(a) for a in ["sample", "--run-dir", runs["run"], "-n", 2, "--out",
                                                  tmp_path / "x.npz", *args]])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cfg_needs_a_model_with_a_null_class(tmp_path):
    from tiny import MODEL_FLAGS, write_tiny_checkpoints

    ckpt = write_tiny_checkpoints(tmp_path)
    result = runner.invoke(app, ["sample", "--model-flags", MODEL_FLAGS, "--model-path", str(ckpt["model"]), "-n", "2",
                                 "--cfg-scale", "2", "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 2 and "null class" in result.output


def test_edit_takes_classifier_free_guidance(runs, tmp_path):
    images = (np.random.default_rng(1).random((2, 16, 16, 3)) * 255).astype(np.uint8)
    inputs = tmp_path / "in.npz"
    np.savez(inputs, images, np.array([0, 1]))
    plain, guided = tmp_path / "p.npz", tmp_path / "g.npz"
    common = ["edit", inputs, "--run-dir", runs["run"], "--strength", 0.6, "--sampler", "dpm++2m", "--steps", 5, "-q"]
    invoke(*common, "--out", plain)
    invoke(*common, "--cfg-scale", 3, "--out", guided)
    assert not np.array_equal(load(plain)["arr_0"], load(guided)["arr_0"])


@pytest.mark.slow
def test_torchrun_two_processes_give_the_single_process_result_with_cfg(runs, tmp_path):
    single, double = tmp_path / "one.npz", tmp_path / "two.npz"
    args = ["--sampler", "dpm++2m-sde", "--steps", 4, "--cfg-scale", 2, "--autoguidance", 1, "--guide-model",
            f"{runs['run']}@2"]
    sample(runs, single, *args)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "adm.cli", "sample", "--run-dir",
           str(runs["run"]), "-n", "4", "-b", "2", "--classes", "0,1,2,3", "--out", str(double), "-q", "--device", "cpu",
           *map(str, args)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.array_equal(load(single)["arr_0"], load(double)["arr_0"])


def test_guidance_that_changes_nothing_is_said(runs, tmp_path):
    common = ["sample", "--run-dir", runs["run"], "-n", 2, "--sampler", "dpm++2m", "--steps", 3]
    null = runner.invoke(app, [str(a) for a in [*common, "--classes", "null", "--cfg-scale", 2, "--out", tmp_path / "n.npz"]])
    assert null.exit_code == 0 and "--cfg-scale changes nothing" in null.output
    itself = runner.invoke(app, [str(a) for a in [*common, "--autoguidance", 1, "--guide-model", runs["run"],
                                                  "--out", tmp_path / "s.npz"]])
    assert itself.exit_code == 0 and "the guide model is the model itself" in itself.output


def test_every_step_of_a_long_chain_is_noted(tmp_path):
    from adm.api.options import SamplingOptions
    from adm.api.setup import resolve
    from adm.hub.checkpoints import save_state_dict
    from adm.presets import default_registry
    from adm.spec.factory import build_model
    from adm.spec.flags import parse_model_flags

    flags = ("--family improved-diffusion --image_size 16 --num_channels 32 --channel_mult 1,2 --num_res_blocks 1 "
             "--attention_resolutions 8 --diffusion_steps 4000 --noise_schedule cosine --learn_sigma True")
    path = tmp_path / "m.safetensors"
    save_state_dict(build_model(parse_model_flags(flags)).state_dict(), path)
    setup = resolve(ModelSource(model_flags=flags, model_path=path), SamplingOptions(), default_registry(),
                    upsampler=False, device="cpu", download=False, dist=None)
    assert setup.plan.evaluations == 4000 and any("--steps 250" in note for note in setup.plan.notes)
