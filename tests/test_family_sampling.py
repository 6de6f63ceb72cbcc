"""Every family end to end: consistency models in one and two evaluations, an EDM teacher with
Heun, an improved-diffusion (4000-step cosine, rescaled timesteps) model, through the CLI and the
Python API, with shards, resume, torchrun and per-sample seeds, on tiny networks the tests write."""

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
from adm.spec.factory import build_model
from adm.spec.flags import parse_model_flags
from tiny import randomize

runner = CliRunner()
SMALL = ("--image_size 16 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2 --attention_resolutions 8 "
         "--num_head_channels 16 --resblock_updown True --class_cond True --num_classes 10")
FLAGS = {
    "cd": f"--training_mode consistency_distillation {SMALL}",
    "edm": f"--training_mode edm {SMALL}",
    "iddpm": "--family improved-diffusion --image_size 32 --num_channels 32 --num_res_blocks 1 --learn_sigma True "
             "--diffusion_steps 4000 --noise_schedule cosine --attention_resolutions 16 --channel_mult 1,2",
}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("families")
    paths = {}
    for seed, (name, flags) in enumerate(FLAGS.items()):
        paths[name] = folder / f"{name}.safetensors"
        save_state_dict(randomize(build_model(parse_model_flags(flags)), seed).state_dict(), paths[name])
    return paths


def args(ckpts, name: str, out: Path, *extra) -> list[str]:
    return ["sample", "--model-flags", FLAGS[name], "--model-path", str(ckpts[name]), "--out", str(out), "-q", *map(str, extra)]


def invoke(arguments):
    result = runner.invoke(app, [str(a) for a in arguments])
    assert result.exit_code == 0, result.output
    return result


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def evaluations(out: Path) -> int:
    return json.loads(out.with_suffix(".json").read_text())["evaluations"]


@pytest.mark.parametrize("steps, evals", [("1", 1), ("0,22,39", 2), ("2", 2)])
def test_a_consistency_model_samples_in_one_and_two_evaluations(ckpts, tmp_path, steps, evals):
    out = tmp_path / "cm.npz"
    invoke(args(ckpts, "cd", out, "-n", 3, "--steps", steps, "--classes", "balanced"))
    assert evaluations(out) == evals
    got = load(out)
    assert got["arr_0"].shape == (3, 16, 16, 3) and got["arr_1"].tolist() == [0, 1, 2]
    api = adm.sample(source=ModelSource(model_flags=FLAGS["cd"], model_path=ckpts["cd"]), steps=steps, num_samples=3,
                     classes="balanced")
    assert np.array_equal(api.images, got["arr_0"])  # cm is the default sampler of a consistency model


def test_each_family_samples_with_its_own_code_s_sampler_by_default(ckpts, tmp_path):
    edm = tmp_path / "edm.npz"
    invoke(args(ckpts, "edm", edm, "-n", 2, "--steps", 7))
    sidecar = json.loads(edm.with_suffix(".json").read_text())
    assert sidecar["key"]["sampler"] == "heun" and sidecar["evaluations"] == 7
    iddpm = tmp_path / "iddpm.npz"
    invoke(args(ckpts, "iddpm", iddpm, "-n", 2, "--steps", 6))
    assert load(iddpm)["arr_0"].shape == (2, 32, 32, 3)
    assert json.loads(iddpm.with_suffix(".json").read_text())["key"]["sampler"] == "ddpm"


@pytest.mark.parametrize("sampler, steps", [("dpm++2m", 6), ("unipc", 6), ("dpm++2m-sde", 6), ("heun", 5)])
def test_every_solver_runs_on_an_edm_model(ckpts, tmp_path, sampler, steps):
    out = tmp_path / f"{sampler}.npz"
    invoke(args(ckpts, "edm", out, "-n", 2, "--sampler", sampler, "--steps", steps))
    assert evaluations(out) == steps and load(out)["arr_0"].std() > 0


@pytest.mark.parametrize("name", ["cd", "edm", "iddpm"])
def test_same_seed_same_images_whatever_the_batch_size(ckpts, tmp_path, name):
    steps = {"cd": "0,22,39", "edm": "5", "iddpm": "5"}[name]
    one, three = tmp_path / "one.npz", tmp_path / "three.npz"
    invoke(args(ckpts, name, one, "-n", 4, "-b", 1, "--steps", steps, "--seed", 5))
    invoke(args(ckpts, name, three, "-n", 4, "-b", 3, "--steps", steps, "--seed", 5))
    # equal up to the kernels' batch-size-dependent float rounding (~1e-6 per forward here), which
    # can flip a pixel by one level
    diff = np.abs(load(one)["arr_0"].astype(int) - load(three)["arr_0"].astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


def test_an_interrupted_consistency_run_resumes_from_its_shards(ckpts, tmp_path, monkeypatch):
    from adm.sampling.batches import SampleProducer

    out, straight = tmp_path / "r.npz", tmp_path / "straight.npz"
    invoke(args(ckpts, "cd", straight, "-n", 6, "-b", 2, "--steps", "0,22,39"))
    real, calls = SampleProducer.__call__, []

    def stop_after_two(self, indices):
        calls.append(indices)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real(self, indices)

    monkeypatch.setattr(SampleProducer, "__call__", stop_after_two)
    interrupted = runner.invoke(app, args(ckpts, "cd", out, "-n", 6, "-b", 2, "--steps", "0,22,39"))
    assert interrupted.exit_code != 0 and not out.exists()
    monkeypatch.setattr(SampleProducer, "__call__", real)
    resumed = invoke([a for a in args(ckpts, "cd", out, "-n", 6, "-b", 2, "--steps", "0,22,39") if a != "-q"])
    assert "4 reused, 2 sampled" in resumed.output
    assert np.array_equal(load(out)["arr_0"], load(straight)["arr_0"])


def test_a_changed_index_list_is_another_run(ckpts, tmp_path):
    out = tmp_path / "k.npz"
    invoke(args(ckpts, "cd", out, "-n", 2, "--steps", "0,22,39"))
    result = runner.invoke(app, args(ckpts, "cd", out, "-n", 2, "--steps", "0,17,39"))
    assert result.exit_code == 2 and "different command" in result.output


@pytest.mark.slow
def test_torchrun_two_processes_give_the_single_process_result_for_a_consistency_model(ckpts, tmp_path):
    single, double = tmp_path / "one.npz", tmp_path / "two.npz"
    invoke(args(ckpts, "cd", single, "-n", 5, "-b", 2, "--steps", "0,22,39"))
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "adm.cli",
           *args(ckpts, "cd", double, "-n", 5, "-b", 2, "--steps", "0,22,39", "--device", "cpu")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.array_equal(load(single)["arr_0"], load(double)["arr_0"])
    assert np.array_equal(load(single)["arr_1"], load(double)["arr_1"])


def test_ddpm_on_a_consistency_model_is_a_one_line_error(ckpts, tmp_path):
    result = runner.invoke(app, args(ckpts, "cd", tmp_path / "x.npz", "--sampler", "ddim"))
    assert result.exit_code == 2
    assert "discrete Gaussian chain" in result.output and "cm" in result.output
    assert "Traceback" not in result.output


def test_edits_of_a_consistency_model_renoise_and_inpaint(ckpts, tmp_path):
    """SDEdit by re-noising to the strength's level, and inpainting through x̂_0, with the cm sampler."""
    images = (np.random.default_rng(0).random((2, 16, 16, 3)) * 255).astype(np.uint8)
    inputs = tmp_path / "in.npz"
    np.savez(inputs, images, np.array([1, 2]))
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[:, :8] = 255
    masks = tmp_path / "mask.npz"
    np.savez(masks, mask[None])
    common = ["edit", str(inputs), "--model-flags", FLAGS["cd"], "--model-path", str(ckpts["cd"]), "-q"]
    sdedit = tmp_path / "sdedit.npz"
    invoke([*common, "--strength", "0.5", "--steps", "0,22,39", "--out", str(sdedit)])
    assert load(sdedit)["arr_0"].shape == (2, 16, 16, 3)
    painted = tmp_path / "paint.npz"
    invoke([*common, "--mask", str(masks), "--steps", "0,22,39", "--out", str(painted)])
    assert np.array_equal(load(painted)["arr_0"][:, :, :8], images[:, :, :8])  # the known half, bit for bit


def test_an_edm_model_is_guided_through_the_classifiers_own_schedule(ckpts, tmp_path, monkeypatch):
    """The classifier reads the t its own training process gives each σ (the σ ↔ t map); without
    that process recorded, guidance of an EDM model is a one-line error."""
    from adm.diffusion.continuous import NoiseSchedule
    from adm.presets import Artifact, Preset, Registry, SamplingDefaults
    from adm.presets.builtin import register as builtin
    from adm.spec.factory import build_classifier
    from adm.spec.flags import ClassifierFlags, parse_flags
    from tiny import CLASSIFIER_FLAGS

    classifier = tmp_path / "classifier.safetensors"
    save_state_dict(randomize(build_classifier(parse_flags(ClassifierFlags, CLASSIFIER_FLAGS)), 7).state_dict(), classifier)
    source = ModelSource(model_flags=FLAGS["edm"], model_path=ckpts["edm"], classifier_flags=CLASSIFIER_FLAGS,
                         classifier_path=classifier)
    with pytest.raises(adm.UsageError, match="noising process the classifier was trained on"):
        adm.sample(source=source, scale=2.0, steps="5", num_samples=2)

    def plugin(registry):
        for name, path in (("tiny-edm", ckpts["edm"]), ("tiny-edm-classifier", classifier)):
            registry.add_artifact(Artifact(name=name, url=f"http://127.0.0.1:9/{path.name}", filename=path.name,
                                           kind="checkpoint"))
        registry.add_preset(Preset(name="tiny-edm", model_flags=FLAGS["edm"], checkpoint="tiny-edm",
                                   classifier_flags=CLASSIFIER_FLAGS, classifier_checkpoint="tiny-edm-classifier",
                                   classifier_noise="--diffusion_steps 100 --noise_schedule cosine",
                                   sampling=SamplingDefaults(sampler="heun", steps="5")))

    registry = Registry().load_plugins([("builtin", builtin), ("tiny", plugin)])
    seen = []
    real = adm.sampling.guidance.ClassifierGuidance.gradient

    def spy(self, x, time, **kwargs):
        seen.append((float(time[0]), self.schedule.num_steps))
        return real(self, x, time, **kwargs)

    monkeypatch.setattr(adm.sampling.guidance.ClassifierGuidance, "gradient", spy)
    kwargs = dict(num_samples=2, classes="balanced", registry=registry, seed=3)
    unguided = adm.sample(source=ModelSource(preset="tiny-edm", model_path=ckpts["edm"]), scale=0.0, **kwargs)
    assert not seen
    guided = adm.sample(source=ModelSource(preset="tiny-edm", model_path=ckpts["edm"], classifier_path=classifier),
                        scale=5.0, **kwargs)
    assert not np.array_equal(guided.images, unguided.images)
    cosine = NoiseSchedule.create("cosine", 100)
    first_sigma = 80.0  # the heun grid's top; the classifier's t there is its own schedule's
    assert seen[0][1] == 100
    assert seen[0][0] == pytest.approx(float(cosine.tau_at(first_sigma)), abs=1e-3)
