"""Training opened to new objectives (issue 24, item 1): the registry of training tasks keyed by a
run dir's kind, and losses chosen by config.

A task added from outside the package is a real installed distribution (a ``.dist-info`` with an
``adm.training_tasks`` entry point) used by fresh processes, as a third-party package would be:
it trains with the shared bookkeeping (checkpoints, resume) and, as it declares that it yields a
generator, its run samples with ``adm sample --run-dir`` and ``adm edit --run-dir``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

import adm
from adm.cli.main import app
from adm.core.errors import UsageError
from adm.diffusion.losses import ChainLoss
from adm.training.rundir import read_run, read_run_config, run_config
from adm.training.runs import RunRequest, resolve_run
from adm.training.tasks import BUILTIN, TaskSpec, get_task
from tests_support import install_plugin, run_adm_with
from tiny import CLASSIFIER_FLAGS, MODEL_FLAGS

TASK_PLUGIN = '''
"""A third party's objective: the diffusion network and data, trained with an L1 loss on eps."""
from pydantic import Field

from adm.training.config import TrainConfig
from adm.training.tasks import TaskSpec

CALLS = []  # the loss's calls in this process: proof that the config's loss is the one trained


class ToyConfig(TrainConfig):
    loss: str = Field("l1", description="l1: |eps - eps_hat| at the chain's t")


class L1Loss:
    """Built as the diffusion task builds its losses, called as it calls them."""

    def __init__(self, process, adapter, loss_type):
        self.process, self.adapter = process, adapter

    def __call__(self, net, x0, *, t, noise, model_kwargs=None):
        from adm.diffusion.gaussian import q_sample
        from adm.diffusion.losses import mean_flat

        CALLS.append(len(x0))
        x_t = q_sample(self.process, x0, t, noise)
        eps, _ = self.adapter.split(net(x_t, self.process.model_timesteps(t), **(model_kwargs or {})), x_t)
        return {"loss": mean_flat((eps - noise).abs())}


def fit(run, *, dist=None, on_progress=None, resume=False):
    from adm.core.distributed import Dist
    from adm.training.data import open_training_data
    from adm.training.diffusion import DiffusionTask
    from adm.training.engine import run_task
    from adm.training.rundir import run_config

    class ToyTask(DiffusionTask):
        kind = run.kind

    flags, source = open_training_data(run.flags, run.config.data, run.config.labels, init=run.config.init)
    doc = run_config(run.kind, flags, run.config.model_dump(mode="json"), preset=run.preset)
    return run_task(doc, run.config, run.run_dir, dist or Dist(), lambda resuming: ToyTask(flags, run.config, source=source),
                    resume=resume, on_progress=on_progress)


TOY = TaskSpec("toy", ToyConfig, fit, generator=True, command="toy-train", description="L1 on eps, by a plugin",
               losses={"l1": L1Loss})
ENCODER = TaskSpec("toy-encoder", ToyConfig, fit, description="yields no generator", losses={"l1": L1Loss})
'''

TRAIN_TWICE = '''
import json, sys
import adm.training as training
from adm.training.rundir import read_run
from adm.core.errors import UsageError
import toy_task

run_dir, data, flags = sys.argv[1:4]
first = training.train_task("toy", run_dir=run_dir, network_flags=flags, data=data, iterations=2, batch_size=4,
                            save_every=1, workers=0, ema_rates=(0.5,))
second = training.train_task("toy", run_dir=run_dir, iterations=3)  # the network and data from the run
try:
    training.get_task("broken")
    broken = None
except UsageError as err:
    broken = str(err)
print(json.dumps({"steps": [first.start_step, first.step, second.start_step, second.step],
                  "loss_calls": len(toy_task.CALLS), "kind": read_run(run_dir).task.kind,
                  "diffusion_command": training.get_task("diffusion").command, "broken": broken,
                  "kinds": training.task_kinds()}))
'''

runner = CliRunner()


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "d.npz"
    np.savez(path, arr_0=rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), arr_1=np.arange(8) % 2)
    return path


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    return install_plugin(root, "toy_task", textwrap.dedent(TASK_PLUGIN), {"adm.training_tasks": {
        "toy": "toy_task:TOY", "toy-encoder": "toy_task:ENCODER",
        "diffusion": "toy_task:TOY",  # a built-in kind is not overridden
        "broken": "toy_task:MISSING",
    }})


@pytest.mark.slow
def test_a_plugin_task_trains_resumes_and_samples_with_run_dir(plugin, data, tmp_path):
    run_dir = tmp_path / "toy"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", TRAIN_TWICE, run_dir, data, MODEL_FLAGS], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["steps"] == [0, 2, 2, 3]  # the second call continued from the checkpoint of step 2
    assert found["loss_calls"] == 3 and found["kind"] == "toy"  # one micro-batch a step, through the L1 loss
    assert found["diffusion_command"] == "adm train" and found["kinds"] == ["diffusion", "classifier", "distillation", "broken", "toy", "toy-encoder"]
    assert "'broken'" in found["broken"] and "failed to load" in found["broken"]
    doc = json.loads((run_dir / "config.json").read_text())
    assert doc["kind"] == "toy" and doc["train"]["loss"] == "l1" and doc["model_flags"]["num_channels"] == 32
    assert sorted(p.name for p in run_dir.glob("model*.pt")) == ["model000002.pt", "model000003.pt"]

    sampled = run_adm_with(plugin, "sample", "--run-dir", run_dir, "-n", 2, "--steps", 3, "--classes", "0,1", "-q",
                           "--out", tmp_path / "s.npz", cwd=tmp_path)
    assert sampled.returncode == 0, sampled.stderr
    assert np.load(tmp_path / "s.npz")["arr_0"].shape == (2, 16, 16, 3)
    np.savez(tmp_path / "in.npz", arr_0=np.full((1, 16, 16, 3), 128, np.uint8))
    edited = run_adm_with(plugin, "edit", tmp_path / "in.npz", "--run-dir", run_dir, "--steps", 3, "--classes", "1",
                          "-q", "--out", tmp_path / "e.npz", cwd=tmp_path)
    assert edited.returncode == 0, edited.stderr
    assert np.load(tmp_path / "e.npz")["arr_0"].shape == (1, 16, 16, 3)

    # a kind that declares no generator is refused by the sampling commands, in one line
    encoder = tmp_path / "enc"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({**doc, "kind": "toy-encoder"}))
    refused = run_adm_with(plugin, "sample", "--run-dir", encoder, "-n", 1, "-q", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is a toy-encoder run, not a diffusion model" in lines[0], refused.stderr
    assert "yields no generator" in lines[0]


def test_an_unknown_kind_in_a_config_json_is_a_one_line_error(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"kind": "diffusoin", "model_flags": {}, "train": {}}))
    with pytest.raises(UsageError, match="kind 'diffusoin', which no installed training task trains") as err:
        read_run_config(run_dir)
    assert "did you mean diffusion" in err.value.hint
    line = one_line_error(runner.invoke(app, ["sample", "--run-dir", str(run_dir), "-n", "1", "-q"]))
    assert "kind 'diffusoin'" in line
    (run_dir / "config.json").write_text(json.dumps({"kind": "mine", "model_flags": {}, "train": {}}))
    with pytest.raises(UsageError) as err:
        read_run_config(run_dir)
    assert "known kinds: diffusion, classifier" in err.value.hint
    (run_dir / "config.json").write_text(json.dumps({"model_flags": {}, "train": {}}))
    with pytest.raises(UsageError, match=r"has no valid 'kind' \(diffusion or classifier or distillation\)"):
        read_run_config(run_dir)
    with pytest.raises(UsageError, match="unknown training task 'mine'"):
        resolve_run(RunRequest("mine", tmp_path / "r", None, MODEL_FLAGS, {"data": "x"}))


def test_the_built_in_kinds_write_config_json_as_before():
    """Old run dirs keep loading: the two built-in kinds record the same keys as always."""
    from adm.spec.flags import ClassifierFlags, parse_flags, parse_model_flags

    diffusion = run_config("diffusion", parse_model_flags(MODEL_FLAGS), {"lr": 1.0}, preset="p")
    assert list(diffusion) == ["kind", "model_flags", "train", "adm_version", "preset"]
    classifier = run_config("classifier", parse_flags(ClassifierFlags, CLASSIFIER_FLAGS), {})
    assert list(classifier) == ["kind", "classifier_flags", "diffusion_flags", "train", "adm_version", "preset"]
    assert get_task("diffusion").generator and not get_task("classifier").generator
    assert list(BUILTIN) == ["diffusion", "classifier", "distillation"]  # adm distill's (tests/test_distill.py)


def test_a_task_yielding_a_generator_records_model_flags():
    with pytest.raises(ValueError, match="only a task recording model flags can yield a generator"):
        TaskSpec("x", "m:C", "m:fit", flags="classifier", generator=True)
    with pytest.raises(ValueError, match="flags must be one of"):
        TaskSpec("x", "m:C", "m:fit", flags="unet")


def test_the_diffusion_loss_is_chosen_by_config(data, tmp_path):
    run = resolve_run(RunRequest("diffusion", tmp_path / "r", "tiny", None, {"data": str(data)}))
    assert run.config.loss == "ddpm" and get_task("diffusion").loss("ddpm") is ChainLoss
    with pytest.raises(UsageError, match="diffusion training has no loss 'l2' \\(--loss\\)") as err:
        resolve_run(RunRequest("diffusion", tmp_path / "r", "tiny", None, {"data": str(data), "loss": "l2"}))
    assert err.value.hint == "its losses: ddpm"
    line = one_line_error(runner.invoke(app, ["train", "--preset", "tiny", "--data", str(data), "--run-dir",
                                              str(tmp_path / "r"), "--loss", "dpm"]))
    assert "no loss 'dpm'" in line


def test_a_run_recorded_before_the_loss_option_continues(data, tmp_path):
    run_dir = tmp_path / "run"
    adm.train("tiny", data=data, run_dir=run_dir, iterations=1, batch_size=4, save_every=1, workers=0)
    doc = json.loads((run_dir / "config.json").read_text())
    del doc["train"]["loss"]  # as adm wrote it before losses were chosen by config
    (run_dir / "config.json").write_text(json.dumps(doc))
    result = adm.train(run_dir=run_dir, iterations=2)
    assert (result.start_step, result.step) == (1, 2)
    assert json.loads((run_dir / "config.json").read_text())["train"]["loss"] == "ddpm"
    assert read_run(run_dir).task is get_task("diffusion")
