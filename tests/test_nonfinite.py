"""Non-finite losses and gradients (issue 25, item 6): in every precision a step whose loss or
gradient is not finite is skipped and counted, weights untouched; K in a row stop the run with one
line naming the step and the last good checkpoint, which is kept and samples."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from adm.cli.main import app
from adm.core.distributed import Dist
from adm.core.errors import DivergedError
from adm.hub.checkpoints import load_state_dict
from adm.training import TrainConfig, fit_diffusion
from adm.training.checkpoint import read_records
from adm.training.diffusion import DiffusionTask
from adm.training.guard import NonFiniteGuard
from adm.training.metrics import read_metrics
from adm.training.trainer import Trainer
from test_training_loop import colored_squares, tiny

BATCH = 4
NAN = float("nan")


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    return colored_squares(tmp_path_factory.mktemp("squares"), n=24)


def plant(monkeypatch, steps, how="nan-loss"):
    """Make the loss of the given (1-based) optimizer steps non-finite: ``nan-loss`` through the
    graph (gradients NaN too), ``nan-constant`` added outside it (gradients finite)."""
    original = DiffusionTask.micro

    def micro(self, trainer, batch):
        out = original(self, trainer, batch)
        if batch.positions[0] // BATCH + 1 in steps:
            out.loss = out.loss * NAN if how == "nan-loss" else out.loss + torch.tensor(NAN)
        return out

    monkeypatch.setattr(DiffusionTask, "micro", micro)


def run(squares, run_dir, messages=None, **changes):
    flags, train = tiny(**{"batch_size": BATCH, "save_every": 1, "keep": 0, "log_every": 1, "workers": 0, **changes})
    on_progress = (lambda event: event.message and messages.append(event.message)) if messages is not None else None
    return fit_diffusion(TrainConfig(data=str(squares), **train), flags, run_dir, on_progress=on_progress)


def files(run_dir, step):
    """Every tensor of a checkpoint: model, EMAs, AdamW state."""
    out = {f"model.{k}": v for k, v in load_state_dict(run_dir / f"model{step:06d}.pt").items()}
    for path in run_dir.glob(f"ema_*_{step:06d}.pt"):
        out.update({f"{path.name[:-10]}.{k}": v for k, v in load_state_dict(path).items()})
    opt = torch.load(run_dir / f"opt{step:06d}.pt", weights_only=True)
    for index, state in opt["state"].items():
        out.update({f"opt.{index}.{k}": torch.as_tensor(v) for k, v in state.items()})
    return out


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_nan_step_is_skipped_and_counted_in_every_precision(squares, tmp_path, monkeypatch, precision):
    plant(monkeypatch, {2})
    messages = []
    run(squares, tmp_path, messages, iterations=3, precision=precision, ema_rates=(0.5,),
        schedule_sampler="loss-second-moment")
    assert same(files(tmp_path, 1), files(tmp_path, 2))  # weights, EMA and AdamW untouched by step 2
    assert not same(files(tmp_path, 2), files(tmp_path, 3))  # and training went on
    records = {r["step"]: r for r in read_metrics(tmp_path)}
    assert "nonfinite_steps" not in records[1] and records[2]["nonfinite_steps"] == records[3]["nonfinite_steps"] == 1
    assert "loss" not in records[2] and "grad_norm" not in records[2]  # nothing of the skipped step is logged
    assert all(np.isfinite(v) for r in records.values() for v in r.values() if isinstance(v, float))
    history = torch.load(tmp_path / "state000003.pt", weights_only=True)["task"]["sampler"]["history"]
    assert torch.isfinite(history).all()  # the NaN losses never reached the timestep sampler
    assert [m for m in messages if "not finite" in m] == [
        "step 2: the loss is not finite, the step was skipped (nonfinite_steps in metrics.jsonl; 10 in a row stop the run)"
    ]


class InfGrad(torch.autograd.Function):
    """The identity forward, infinite gradients backward: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def trainer_of(squares, **changes):
    flags, train = tiny(batch_size=BATCH, ema_rates=(0.5,), **changes)
    config = TrainConfig(data=str(squares), **train)
    model = DiffusionTask(flags, config).model
    return Trainer(model, config, Dist()), model


def small_loss(trainer):
    return sum((p.float() ** 2).sum() for p in trainer.params) * 1e-6


def test_a_gradient_that_is_not_finite_is_skipped_and_counted(squares):
    trainer, model = trainer_of(squares)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norm, took = trainer.step([lambda: InfGrad.apply(small_loss(trainer))])
    assert not took and trainer.guard.last.loss_finite and not trainer.guard.last.grad_finite
    assert trainer.guard.total == 1 and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert trainer.step([lambda: small_loss(trainer)])[1] and trainer.guard.streak == 0 and trainer.guard.total == 1


def test_fp16_overflows_count_only_at_a_tiny_loss_scale(squares):
    trainer, _ = trainer_of(squares, precision="fp16")
    for _ in range(3):  # the scaler's own business: skipped, the scale halved, not counted
        scale = trainer.scaler.get_scale()
        assert not trainer.step([lambda: InfGrad.apply(small_loss(trainer))])[1]
        assert trainer.scaler.get_scale() == scale / 2 and trainer.guard.total == 0
    trainer.scaler.update(1.0)
    assert not trainer.step([lambda: InfGrad.apply(small_loss(trainer))])[1]
    assert trainer.guard.total == trainer.guard.streak == 1  # overflowing unscaled: a real divergence
    trainer.scaler.update(1024.0)
    assert not trainer.step([lambda: small_loss(trainer) + NAN])[1]  # a NaN loss counts at any scale
    assert trainer.guard.total == 2


class OtherRankSaysNaN(Dist):
    """A world of two whose other rank had a NaN loss: the all-reduce brings its flag here."""

    def all_reduce_mean(self, tensor):
        return (tensor + torch.tensor([1.0, 0.0])) / 2


def test_a_nan_on_another_rank_skips_the_step_here_too():
    guard = NonFiniteGuard(10, OtherRankSaysNaN(rank=0, world_size=2))
    verdict = guard.judge(torch.tensor([0.5]), torch.tensor(1.0), None)
    assert verdict.skip and verdict.counted and not verdict.loss_finite


def test_max_nonfinite_zero_never_stops(squares, tmp_path, monkeypatch):
    plant(monkeypatch, {2, 3, 4})
    messages = []
    result = run(squares, tmp_path, messages, iterations=4, max_nonfinite=0)
    assert result.step == 4 and result.metrics["nonfinite_steps"] == 3
    assert sum("not finite" in m for m in messages) == 1 and "never stops" in messages[-1]


def test_a_resumed_run_skips_and_stops_as_a_straight_one(squares, tmp_path, monkeypatch):
    plant(monkeypatch, {2}, how="nan-constant")  # finite gradients: only the loss check catches it
    run(squares, tmp_path / "straight", iterations=4)
    run(squares, tmp_path / "resumed", iterations=2)
    run(squares, tmp_path / "resumed", iterations=4)
    assert same(files(tmp_path / "straight", 4), files(tmp_path / "resumed", 4))
    assert read_metrics(tmp_path / "resumed")[-1]["nonfinite_steps"] == 1
    # a streak across the resume: the count is in the checkpoint, so both stop at step 4
    plant(monkeypatch, {2, 3, 4, 5, 6})
    for name, stages in (("s2", (6,)), ("r2", (2, 6))):
        for iterations in stages:
            try:
                run(squares, tmp_path / name, iterations=iterations, max_nonfinite=3)
            except DivergedError as err:
                assert str(err).startswith("training stopped at step 4: the loss or gradient was not finite at 3 steps in a row (2-4,")
                break
        else:
            pytest.fail(f"{name} did not stop")


def test_weights_that_are_not_finite_are_never_checkpointed(squares, tmp_path, monkeypatch):
    original = DiffusionTask.micro

    def micro(self, trainer, batch):
        if batch.positions[0] // BATCH + 1 == 3:
            with torch.no_grad():
                trainer.params[0].fill_(NAN)  # what no finite update should do
        return original(self, trainer, batch)

    monkeypatch.setattr(DiffusionTask, "micro", micro)
    with pytest.raises(DivergedError, match=r"^training stopped at step 4: the weights are not finite; the last good "
                                            r"checkpoint, step 2, is kept: .*model000002\.pt"):
        run(squares, tmp_path, iterations=6, save_every=2, keep=1)
    assert [r.step for r in read_records(tmp_path)] == [2] and not list(tmp_path.glob("*000004*"))
    assert all(torch.isfinite(v).all() for v in load_state_dict(tmp_path / "model000002.pt").values())


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_k_in_a_row_stop_adm_train_with_one_line_and_the_last_good_checkpoint_samples(squares, tmp_path, monkeypatch):
    plant(monkeypatch, set(range(5, 100)))
    run_dir = tmp_path / "run"
    result = invoke("train", "--preset", "tiny", "--data", squares, "--run-dir", run_dir, "--iterations", 20,
                    "--batch-size", BATCH, "--save-every", 2, "--keep", 1, "--max-nonfinite", 3, "--workers", 0)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert result.output.count("the loss is not finite, the step was skipped") == 1  # the note, once
    assert lines[0].startswith("error: training stopped at step 7: the loss or gradient was not finite at 3 steps in a "
                               "row (5-7, --max-nonfinite 3); the last good checkpoint, step 6, is kept: ")
    assert "model000006.pt (the weights of step 4: the skipped steps changed nothing)" in lines[0]
    assert [r.step for r in read_records(run_dir)] == [6]  # the stop wrote nothing over it
    weights = load_state_dict(run_dir / "model000006.pt")
    assert all(torch.isfinite(v).all() for v in weights.values())
    monkeypatch.undo()
    out = tmp_path / "s.npz"
    sampled = invoke("sample", "--run-dir", run_dir, "--steps", 4, "-n", 2, "--out", out, "-q")
    assert sampled.exit_code == 0, sampled.output
    assert np.load(out)["arr_0"].shape[0] == 2


@pytest.mark.slow
def test_under_torchrun_a_nan_on_one_rank_skips_the_step_on_both(squares, tmp_path):
    """Rank 1's loss is NaN at step 2 with finite gradients: DDP would average them in, so only the
    agreed flag keeps rank 0 from stepping while rank 1 skips (the replicas would drift apart)."""
    script = tmp_path / "run.py"
    script.write_text(f"""
import sys, torch
sys.path.insert(0, {str(Path(__file__).parent)!r})
from adm.core.distributed import init_distributed
from adm.training import TrainConfig, fit_diffusion
from adm.training.diffusion import DiffusionTask
from test_training_loop import tiny
dist = init_distributed("cpu")
original = DiffusionTask.micro
def micro(self, trainer, batch):
    out = original(self, trainer, batch)
    if dist.rank == 1 and batch.positions[0] // {BATCH} + 1 == 2:
        out.loss = out.loss + torch.tensor(float("nan"))
    return out
DiffusionTask.micro = micro
flags, train = tiny(batch_size={BATCH}, iterations=3, save_every=1, keep=0, workers=0)
fit_diffusion(TrainConfig(data={str(squares)!r}, **train), flags, {str(tmp_path / "run")!r}, dist=dist)
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(script)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = tmp_path / "run"
    # rank 0 (whose checkpoints these are) had a finite loss and finite averaged gradients at step 2
    assert same(files(run_dir, 1), files(run_dir, 2)) and not same(files(run_dir, 2), files(run_dir, 3))
    assert read_metrics(run_dir)[-1]["nonfinite_steps"] == 1
