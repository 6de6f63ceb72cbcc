"""`adm train` / `adm train-classifier` end to end: bad input, resume after a kill, signals, torchrun."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from adm.cli.main import app
from adm.hub.checkpoints import load_state_dict
from adm.presets import default_registry, get_training_preset
from adm.training import TrainConfig
from adm.training.checkpoint import read_records
from adm.training.diffusion import DiffusionTask
from adm.training.metrics import read_metrics

BIN = Path(sys.executable).parent
ADM = str(BIN / "adm")
TORCHRUN = str(BIN / "torchrun")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    root = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(0)
    for i in range(32):
        image = rng.integers(60, 120, (16, 16, 3)).astype(np.uint8)
        y, x = rng.integers(0, 9, 2)
        image[y : y + 8, x : x + 8] = [(220, 40, 40), (40, 220, 40), (40, 40, 220)][i % 3]
        Image.fromarray(image).save(root / f"class{i % 3}_{i}.png")
    return root


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


# --------------------------------------------------------------------------------------------
# bad input: one line, exit 2, nothing written


def test_bad_inputs_are_one_line_errors_and_write_nothing(squares, tmp_path):
    (tmp_path / "small").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "small" / "a_1.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "flat" / "nolabel.png")
    run = tmp_path / "run"
    cases = [
        (["--preset", "tiny", "--data", tmp_path / "missing"], "does not exist"),
        (["--preset", "tiny", "--data", tmp_path / "small"], "smaller than the model"),
        (["--preset", "tiny", "--data", tmp_path / "empty"], "contains no images"),
        (["--preset", "tinyy", "--data", squares], "unknown training preset 'tinyy'"),
        (["--preset", "tiny", "--data", squares, "--batch-size", "8", "--microbatch", "3"], "--microbatch 3 does not divide"),
        (["--preset", "tiny-cond", "--data", tmp_path / "flat"], "no class prefix"),
        (["--model-flags", "--image_size 16 --channel_mult 1,2 --num_channels 30", "--data", squares], "not a positive multiple of 32"),
        (["--preset", "tiny", "--data", squares, "--init", tmp_path / "nope.pt"], "does not exist"),
        (["--preset", "tiny", "--data", squares, "--precision", "fp8"], "bad value for --precision"),
        (["--data", squares], "no network given"),
        (["--preset", "tiny", "--data", squares, "--resume"], "nothing to resume"),
    ]
    for args, message in cases:
        result = invoke("train", "--run-dir", run, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in error_line(result), (args, result.output)
        assert not run.exists(), args
    result = invoke("train-classifier", "--run-dir", run, "--preset", "tiny", "--data", tmp_path / "flat")
    assert result.exit_code == 2 and "no class prefix" in error_line(result)
    assert not run.exists()


def test_dry_run_prints_the_resolved_config(squares, tmp_path):
    result = invoke(
        "train", "--run-dir", tmp_path / "run", "--preset", "tiny", "--data", squares,
        "--model-flags", "--dropout 0.1", "--ema-rate", "0.9999,0.999", "--dry-run",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["kind"] == "diffusion" and doc["preset"] == "tiny"
    assert doc["model_flags"]["dropout"] == 0.1 and doc["model_flags"]["image_size"] == 16
    assert doc["train"]["ema_rates"] == [0.9999, 0.999] and doc["train"]["iterations"] == 400
    assert not (tmp_path / "run").exists()
    result = invoke(
        "train-classifier", "--run-dir", tmp_path / "c", "--preset", "tiny", "--data", squares,
        "--classifier-flags", "--classifier_depth 2 --noise_schedule linear", "--dry-run",
    )
    doc = json.loads(result.output)
    assert doc["classifier_flags"]["classifier_depth"] == 2 and doc["diffusion_flags"]["noise_schedule"] == "linear"


def test_cli_trains_plots_and_refuses_other_flags_in_the_same_run_dir(squares, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--run-dir", run, "--preset", "tiny", "--data", squares, "--iterations", "2", "--batch-size", "4",
            "--save-every", "1", "--log-every", "1", "--plot"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "trained diffusion model to step 2" in result.output
    assert (run / "loss.png").is_file() and len(read_metrics(run)) == 2
    result = invoke(*args[:-1], "--model-flags", "--num_res_blocks 2")
    assert result.exit_code == 2 and "was trained with --num_res_blocks 1, not 2" in error_line(result)
    result = invoke("train", "--run-dir", run, "--resume", "--iterations", "3")  # everything else from config.json
    assert result.exit_code == 0, result.output
    assert [r.step for r in read_records(run)][-1] == 3


# --------------------------------------------------------------------------------------------
# resume, signals, several processes


def train_args(data, run, steps, *extra):
    return [
        "train", "--preset", "tiny", "--data", str(data), "--run-dir", str(run), "--iterations", str(steps),
        "--batch-size", "8", "--log-every", "1", "--seed", "3", *[str(e) for e in extra],
    ]


def wait_for_step(run: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run / "checkpoint.json").is_file():
            try:
                records = read_records(run)
            except Exception:
                records = []
            if records and records[-1].step >= step:
                return records[-1].step
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    raise AssertionError("the run made no progress")


def same_checkpoint(a: Path, b: Path, step: int):
    for name in (f"model{step:06d}.pt", f"ema_0.99_{step:06d}.pt"):
        left, right = load_state_dict(a / name), load_state_dict(b / name)
        assert all(torch.equal(left[k], right[k]) for k in left), name
    opt_a = torch.load(a / f"opt{step:06d}.pt", weights_only=True)
    opt_b = torch.load(b / f"opt{step:06d}.pt", weights_only=True)
    for key, state in opt_a["state"].items():
        assert all(torch.equal(state[k], opt_b["state"][key][k]) for k in state)


@pytest.mark.slow
def test_resume_after_sigkill_is_bitwise_identical(squares, tmp_path):
    # dropout exercises the saved RNG states, loss-second-moment the sampler state (T = 5 warms up after 50 samples)
    extra = ["--save-every", "1", "--schedule-sampler", "loss-second-moment",
             "--model-flags", "--dropout 0.1 --diffusion_steps 5"]
    steps = 20
    straight = tmp_path / "straight"
    subprocess.run([ADM, *train_args(squares, straight, steps, *extra)], env=ENV, check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([ADM, *train_args(squares, killed, steps, *extra)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_step(killed, steps // 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = read_records(killed)[-1].step
    assert at_kill < steps, "the run finished before it could be killed"
    result = subprocess.run([ADM, *train_args(squares, killed, steps, *extra)], env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    same_checkpoint(straight, killed, steps)
    state = torch.load(killed / f"state{steps:06d}.pt", weights_only=True)
    assert state["task"]["sampler"]["counts"].min() == 10  # the importance sampler was in use
    losses = {r["step"]: r["loss"] for r in read_metrics(straight)}
    assert {r["step"]: r["loss"] for r in read_metrics(killed)} == losses  # metrics.jsonl without duplicates


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_before_exiting(squares, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([ADM, *train_args(squares, run, 10_000, "--save-every", "10000")], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not ((run / "metrics.jsonl").is_file() and read_metrics(run)) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output
    step = read_records(run)[-1].step
    assert 0 < step < 10_000 and (run / f"model{step:06d}.pt").is_file()
    assert "stopped by SIGTERM" in output and "Traceback" not in output


@pytest.mark.slow
def test_two_processes_match_one_and_resume_on_another_world_size(squares, tmp_path):
    # start from trained weights, so no gradient is near zero (Adam would magnify rounding)
    pre = tmp_path / "pre"
    subprocess.run([ADM, *train_args(squares, pre, 10, "--save-every", "10")], env=ENV, check=True, capture_output=True)
    init = ["--init", str(pre / "model000010.pt"), "--save-every", "2", "--keep", "0"]

    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([ADM, *train_args(squares, one, 4, *init)], env=ENV, check=True, capture_output=True)
    result = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc_per_node", "2", ADM, *train_args(squares, two, 2, *init)],
        env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("trained diffusion model") == 1  # only rank 0 prints
    state = torch.load(two / "state000002.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    # continue the 2-process run on 1 process: the data position follows from the step
    subprocess.run([ADM, *train_args(squares, two, 4, *init)], env=ENV, check=True, capture_output=True)

    flags = default_registry().network_flags(get_training_preset("tiny", "diffusion"))
    skip = _degenerate(squares, flags, pre / "model000010.pt")
    for step in (2, 4):
        a, b = load_state_dict(one / f"model{step:06d}.pt"), load_state_dict(two / f"model{step:06d}.pt")
        for name in a:
            if name not in skip:
                assert torch.allclose(a[name], b[name], rtol=0, atol=2e-5), (step, name)  # moved ~4e-3
    loss_one = [r["loss"] for r in read_metrics(one)]
    loss_two = [r["loss"] for r in read_metrics(two)]
    assert loss_one == pytest.approx(loss_two, rel=1e-4)


def _degenerate(data, flags, init) -> set[str]:
    """Parameters with a mathematically zero gradient (see test_training_loop.degenerate_parameters)."""
    from adm.core.distributed import Dist
    from adm.training.data import collate, to_model_input
    from adm.training.trainer import DeviceBatch, Trainer, train_step

    config = TrainConfig(data=str(data), batch_size=8, workers=0)
    task = DiffusionTask(flags, config, init=str(init))
    trainer = Trainer(task.model, config, Dist())
    batch = collate([task.dataset[p] for p in range(8)])
    train_step(trainer, task, DeviceBatch(to_model_input(batch.images, trainer.device), batch.labels, batch.positions), 8)
    grads = {n: p.grad for n, p in task.model.named_parameters()}
    scale = max(g.abs().max().item() for g in grads.values())
    return {n for n, g in grads.items() if g.abs().max() < 1e-6 * scale}
