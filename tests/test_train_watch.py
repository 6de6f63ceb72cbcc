"""Watching a run (issue 25, items 1-3): sample grids and evaluations while training, `@best`,
TensorBoard, images/s and the ETA.

The runs are tiny (4 steps of the tiny-cond preset on the held-out digits, dropout on so that the
training draws from the global RNG); what they check is user-visible: files at the right steps,
records in metrics.jsonl, weights bitwise those of an unwatched run and of a resumed one.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

import adm
from adm.cli.main import app
from adm.cli.progress import RichProgress
from adm.core.distributed import Dist
from adm.core.errors import UsageError
from adm.core.progress import Progress
from adm.hub.checkpoints import load_state_dict
from adm.training.checkpoint import read_records
from adm.training.config import TrainConfig
from adm.training.metrics import read_metrics
from adm.training.monitor import Objective, Observation, watching
from adm.training.rundir import read_best, read_run

DROPOUT = "--dropout 0.1"  # the training then draws from the global RNG, which the monitors must not move
STEPS = dict(iterations=4, batch_size=2, save_every=100, keep=1, log_every=2, workers=0)
WATCH = dict(sample_every=2, sample_count=4, sample_steps="2", eval_every=2, eval_samples=8, eval_metric="digits")
BIN = Path(sys.executable).parent


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def weights(run: Path, step: int = 4) -> dict[str, torch.Tensor]:
    return {**load_state_dict(run / f"model{step:06d}.pt"),
            **{f"ema.{k}": v for k, v in load_state_dict(run / f"ema_0.99_{step:06d}.pt").items()}}


def assert_bitwise(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, different[:5]


def train(run: Path, data: Path, **options):
    return adm.train("tiny-cond", model_flags=DROPOUT, data=str(data), run_dir=run, **{**STEPS, **options})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from adm.data.digits import load_digits

    digits = load_digits().split("heldout")
    path = tmp_path_factory.mktemp("digits") / "d.npz"
    np.savez(path, arr_0=digits.images[:64], arr_1=digits.labels[:64])
    return path


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict[str, Path]:
    """The same 4 steps unwatched, watched, and watched in two calls (2 steps, then 2 more)."""
    root = tmp_path_factory.mktemp("runs")
    found = {name: root / name for name in ("plain", "watched", "resumed")}
    train(found["plain"], data)
    train(found["watched"], data, **WATCH)
    train(found["resumed"], data, **{**WATCH, "iterations": 2})
    train(found["resumed"], data, **WATCH)
    return found


# --------------------------------------------------------------------------------------------
# sample grids and evaluations never change the training


def test_watching_never_changes_the_weights_and_a_resumed_run_matches(runs):
    assert_bitwise(weights(runs["plain"]), weights(runs["watched"]))
    assert_bitwise(weights(runs["watched"]), weights(runs["resumed"]))
    plain = [r["loss"] for r in read_metrics(runs["plain"]) if "loss" in r]
    assert plain == [r["loss"] for r in read_metrics(runs["watched"]) if "loss" in r]


def test_grids_and_evaluations_appear_at_their_steps(runs):
    for name in ("watched", "resumed"):
        samples = runs[name] / "samples"
        assert sorted(p.name for p in samples.iterdir()) == ["000002.png", "000004.png", "latest.png"]
        assert (samples / "latest.png").read_bytes() == (samples / "000004.png").read_bytes()
        grid = Image.open(samples / "000004.png")
        assert grid.size[0] > 4 * 16  # small images are upscaled to be seen
        evals = [r for r in read_metrics(runs[name]) if "digits_fd" in r]
        assert [r["step"] for r in evals] == [2, 4]
        assert all(0 <= r["digits_accuracy"] <= 1 for r in evals)  # the labels were balanced over the classes
        assert (runs[name] / "eval.png").is_file()
    # the same seeds and labels at every step, so a straight and a resumed run draw the same grid
    assert (runs["watched"] / "samples" / "000004.png").read_bytes() == (runs["resumed"] / "samples" / "000004.png").read_bytes()
    assert [r["digits_fd"] for r in read_metrics(runs["watched"]) if "digits_fd" in r] == \
           [r["digits_fd"] for r in read_metrics(runs["resumed"]) if "digits_fd" in r]
    assert not (runs["plain"] / "samples").exists() and not (runs["plain"] / "best.json").exists()


def test_an_evaluation_step_is_a_checkpoint_and_the_best_is_recorded(runs):
    run = runs["watched"]
    best = read_best(run)
    evals = {r["step"]: r["digits_fd"] for r in read_metrics(run) if "digits_fd" in r}
    assert best.metric == "digits_fd" and best.direction == "min"
    assert best.value == min(evals.values()) and best.step == min(evals, key=evals.get)
    assert best.step in {r.step for r in read_records(run)}  # --keep 1 kept it (save_every is 100)
    assert read_best(runs["resumed"]) == best
    assert read_run(f"{run}@best").step == best.step


def test_a_monitor_that_draws_from_the_global_rng_changes_nothing(data, tmp_path, runs):
    """The engine keeps the RNG states around any monitor, whatever it draws."""

    class Greedy:
        name, every, objective = "greedy", 1, None

        def __call__(self, model, step):
            torch.rand(1000)  # the global generator, as dropout in the training does
            model(torch.randn(2, 3, 16, 16), torch.tensor([5, 7]), y=torch.tensor([0, 1]))
            return Observation()

    with watching(lambda run: [Greedy()]):
        from adm.training import train as unwatched_api  # the training layer: only this factory

        unwatched_api("tiny-cond", model_flags=DROPOUT, data=str(data), run_dir=tmp_path, **STEPS)
    assert_bitwise(weights(runs["plain"]), weights(tmp_path))


# --------------------------------------------------------------------------------------------
# the best checkpoint: kept, named by best.json, resolved by RUN@best


class Scores:
    """A monitor whose objective takes given values: a fast stand-in for a metric."""

    name, every = "scores", 1

    def __init__(self, values: dict[int, float], direction="min"):
        self.values, self.objective = values, Objective("score", direction)

    def __call__(self, model, step):
        return Observation({"score": self.values[step]})


def test_keep_never_deletes_the_best_checkpoint_and_best_follows_a_resume(data, tmp_path):
    from adm.training import train as layer_train

    run = tmp_path / "run"
    with watching(lambda r: [Scores({1: 5.0, 2: 3.0, 3: 4.0, 4: 6.0, 5: 1.0, 6: 2.0})]):
        layer_train("tiny-cond", data=str(data), run_dir=run, **STEPS)
        assert read_best(run).step == 2 and read_best(run).value == 3.0
        assert [r.step for r in read_records(run)] == [2, 4]  # --keep 1, plus the best
        assert read_run(f"{run}@best").weights().name == "ema_0.99_000002.pt"
        layer_train("tiny-cond", data=str(data), run_dir=run, **{**STEPS, "iterations": 6})
    best = json.loads((run / "best.json").read_text())
    assert best == {"step": 5, "metric": "score", "value": 1.0, "direction": "min"}
    assert [r.step for r in read_records(run)] == [5, 6]  # the old best went once a better one was kept


def test_at_best_samples_that_checkpoint_and_a_run_without_evals_says_so(runs, tmp_path):
    best = read_best(runs["watched"]).step
    out, direct = tmp_path / "best.npz", tmp_path / "direct.npz"
    common = ("sample", "-n", 2, "--steps", 2, "--sampler", "dpm++2m", "-q", "--classes", "0,1")
    result = invoke(*common, "--run-dir", f"{runs['watched']}@best", "--out", out)
    assert result.exit_code == 0, result.output
    result = invoke(*common, "--model-path", runs["watched"] / f"ema_0.99_{best:06d}.pt", "--out", direct)
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(out)["arr_0"], np.load(direct)["arr_0"])
    source = adm.ModelSource(run_dir=Path(f"{runs['watched']}@best"))
    assert adm.sample(source=source, num_samples=2, steps="2", sampler="dpm++2m", classes=[0, 1]).images.shape[0] == 2

    result = invoke(*common, "--run-dir", f"{runs['plain']}@best", "--out", tmp_path / "x.npz")
    assert result.exit_code == 2
    line = error_line(result)
    assert "never evaluated" in line and "--eval-every" in line


# --------------------------------------------------------------------------------------------
# bad options: one line, exit 2, nothing written


@pytest.mark.parametrize("args, expected", [
    (("--eval-every", 2, "--eval-metric", "digit_fd"), "unknown --eval-metric 'digit_fd' (did you mean digits_fd"),
    (("--eval-every", 2, "--eval-metric", "fid"), "needs --eval-ref"),
    (("--eval-every", 2, "--eval-metric", "digits", "--eval-ref", "nowhere.npz"), "--eval-ref nowhere.npz does not exist"),
    (("--eval-every", 2, "--eval-metric", "digits", "--eval-ref", "{big}"), "holds 32x32 images and the model makes 16x16"),
    (("--eval-every", 2, "--eval-metric", "digits_accuracy", "--model-flags", "--class_cond False"), "unconditional"),
    (("--sample-every", 2, "--sample-sampler", "dpm++2"), "unknown sampler 'dpm++2'"),
    (("--sample-every", 2, "--sample-steps", "ddim5"), "--sample-steps"),
    (("--eval-metric", "digit"), "add --eval-every N"),  # nothing uses it: a mistake, not a no-op
    (("--sample-steps", "5"), "add --sample-every N"),
])
def test_bad_watch_options_are_one_line_errors(data, tmp_path, args, expected):
    run = tmp_path / "run"
    np.savez(tmp_path / "big.npz", arr_0=np.zeros((4, 32, 32, 3), np.uint8))
    args = [str(a).replace("{big}", str(tmp_path / "big.npz")) for a in args]
    result = invoke("train", "--preset", "tiny-cond", "--data", data, "--run-dir", run, "--iterations", 2, *args)
    assert result.exit_code == 2, result.output
    assert expected in error_line(result)
    assert not run.exists()


def test_an_inception_metric_of_a_four_channel_model_is_refused_before_training(tmp_path):
    four = tmp_path / "four.npz"
    np.savez(four, arr_0=np.zeros((8, 16, 16, 4), np.uint8), arr_1=np.arange(8) % 2)
    run = tmp_path / "run"
    result = invoke("train", "--preset", "tiny-cond", "--data", four, "--run-dir", run, "--iterations", 2,
                    "--eval-every", 2, "--eval-metric", "fid", "--eval-ref", four)
    assert result.exit_code == 2, result.output
    assert "makes 4-channel ones" in error_line(result) and not run.exists()


def test_a_young_ema_is_said_once_when_its_grids_would_look_like_noise(data, tmp_path):
    said: list[str] = []
    train(tmp_path / "run", data, sample_every=2, sample_count=4, sample_steps="2", ema_rates=(0.999,),
          on_progress=lambda event: said.append(event.message or ""))
    young = [m for m in said if "still weighs the initial weights" in m]
    assert len(young) == 1 and "EMA of rate 0.999" in young[0] and "--ema-rate 0.99" in young[0]


def test_an_upsampler_is_not_watched_and_the_training_layer_refuses_what_it_cannot_draw(data, tmp_path):
    result = invoke("train", "--preset", "tiny-sr", "--data", data, "--run-dir", tmp_path / "sr", "--sample-every", 2)
    assert result.exit_code == 2 and "upsampler" in error_line(result)
    from adm.training import train as layer_train

    with pytest.raises(UsageError, match="drawn by adm.train"):
        layer_train("tiny-cond", data=str(data), run_dir=tmp_path / "x", sample_every=2, **STEPS)
    assert not (tmp_path / "x").exists()


def test_eval_metric_names_and_values():
    from adm.api.monitors import eval_metric

    assert [(s.name, o) for s, o in [eval_metric("auto", 16), eval_metric("digits_accuracy", 16)]] == [
        ("digits", Objective("digits_fd", "min")), ("digits", Objective("digits_accuracy", "max"))]
    assert eval_metric("auto", 64)[0].name == "inception" and eval_metric("auto", 64)[1] == Objective("fid", "min")
    assert eval_metric("recall", 64)[1] == Objective("recall", "max")


# --------------------------------------------------------------------------------------------
# TensorBoard


def test_tensorboard_files_hold_losses_metrics_and_grids(data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = invoke("train", "--preset", "tiny-cond", "--data", data, "--run-dir", run, "--iterations", 2,
                    "--batch-size", 2, "--log-every", 1, "--log", "tensorboard", "--sample-every", 2,
                    "--sample-count", 4, "--sample-steps", 2, "--eval-every", 2, "--eval-samples", 8)
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars, images = events.Tags()["scalars"], events.Tags()["images"]
    assert {"train/loss", "train/lr", "train/grad_norm", "train/img_per_sec", "eval/digits_fd"} <= set(scalars)
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    assert images == ["samples"] and [e.step for e in events.Images("samples")] == [2]
    assert (run / "metrics.jsonl").is_file()  # written as well


def test_without_tensorboard_the_option_says_how_to_get_it(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were absent
    run = tmp_path / "run"
    result = invoke("train", "--preset", "tiny", "--data", data, "--run-dir", run, "--log", "tensorboard")
    assert result.exit_code == 2
    assert 'pip install "adm-diffusion[tensorboard]"' in error_line(result)
    assert not run.exists()
    result = invoke("train", "--preset", "tiny", "--data", data, "--run-dir", run, "--iterations", 1, "--batch-size", 2)
    assert result.exit_code == 0, result.output  # without the option: unchanged
    assert not (run / "tb").exists()


# --------------------------------------------------------------------------------------------
# images/s and the ETA


class TwoRanks(Dist):
    """What rank 0 sees of a 2-process run whose other rank did the same."""

    def all_reduce_mean(self, tensor):
        return tensor


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_images_per_second_count_the_global_batch_and_leave_out_the_monitors():
    from adm.training.engine import _Meter
    from adm.training.trainer import Trainer

    config = TrainConfig(data="x", batch_size=8, microbatch=2, iterations=10, ema_rates=())
    dist = TwoRanks(world_size=2)
    trainer = Trainer(torch.nn.Linear(2, 2), config, Dist())
    clock = Clock()
    meter = _Meter(config, dist, 0, clock)
    for now in (10.0, 12.0):  # the first step compiles and warms up: 10 s
        clock.now = now
        meter.add([], torch.tensor(1.0), True)
    record = meter.record(trainer, 2)
    assert record["steps_per_sec"] == pytest.approx(2 / 12) and record["img_per_sec"] == pytest.approx(8 * 2 / 12)
    meter.exclude(5.0)  # a sample grid
    clock.now = 19.0
    meter.add([], torch.tensor(1.0), True)
    record = meter.record(trainer, 3)
    assert record["img_per_sec"] == pytest.approx(8 / 2)  # 7 s, 5 of them in the monitor
    # the pace since the first step: 4 s for 2 steps without the monitor; 7 steps to go
    assert meter.eta(3) == pytest.approx(7 * 2.0)


def test_the_progress_bar_shows_images_per_second_and_the_eta_it_is_given():
    console = Console(file=io.StringIO(), width=200, color_system=None, force_terminal=True)
    bars = RichProgress(console=console)
    with bars:
        bars(Progress("train", 10, 100, "step", info={"loss": 0.5, "img/s": 123.4, "eta": 3725.0}))
        bars(Progress("train", 10, 100, "step", message="step 10: digits_fd 103.2 (best so far)"))
        out = Console(file=io.StringIO(), width=200, color_system=None)
        out.print(bars.bars.make_tasks_table(bars.bars.tasks))
        text = out.file.getvalue()
    assert "eta 1:02:05" in text and "img/s 123.4" in text and "loss 0.5" in text  # a message keeps the figures
    assert "eta 3725" not in text


def test_records_report_global_images_per_second_and_an_eta(runs):
    records = [r for r in read_metrics(runs["watched"]) if "img_per_sec" in r]
    assert all(r["img_per_sec"] == pytest.approx(r["steps_per_sec"] * 2) for r in records)


@pytest.mark.slow
def test_two_processes_watch_from_rank_zero(data, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--preset", "tiny-cond", "--data", str(data), "--run-dir", str(run), "--iterations", "2",
            "--batch-size", "4", "--microbatch", "1", "--log-every", "1", "--workers", "0", "--sample-every", "2",
            "--sample-count", "4", "--sample-steps", "2", "--eval-every", "2", "--eval-samples", "8"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    result = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "adm"), *args],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (run / "samples" / "000002.png").is_file() and read_best(run).step == 2
    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2]  # one record per step: rank 0 writes
    assert all(r["img_per_sec"] == pytest.approx(r["steps_per_sec"] * 4) for r in records)  # the global batch
    assert result.stdout.count("step 2: digits_fd") + result.stderr.count("step 2: digits_fd") == 1


def test_help_lists_the_watch_options():
    result = invoke("train", "--help")
    text = " ".join(result.output.split())
    for option in ("--sample-every", "--sample-count", "--sample-sampler", "--sample-steps", "--eval-every",
                   "--eval-metric", "--eval-samples", "--eval-ref", "--log"):
        assert option in text
    assert 'adm-diffusion[tensorboard]' in text


