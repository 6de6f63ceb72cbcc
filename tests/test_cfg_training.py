"""Training for classifier-free guidance and autoguidance (issue 23, items 2 and 3): the null class
(one extra label row, recorded in the flags), label dropout planned per sample and exact on resume,
fine-tuning a checkpoint without a null class, and snapshots that --keep never deletes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import adm
from adm.cli.main import app
from adm.core.distributed import Dist
from adm.core.errors import UsageError
from adm.hub.checkpoints import load_state_dict, save_state_dict
from adm.presets import default_registry, get_training_preset
from adm.spec.factory import build_model, null_label
from adm.spec.flags import parse_model_flags
from adm.training import TrainConfig
from adm.training.checkpoint import read_records, write_checkpoint
from adm.training.data import collate, to_model_input
from adm.training.diffusion import DiffusionTask, dropped_labels
from adm.training.trainer import DeviceBatch, Trainer, train_step
from tiny import MODEL_FLAGS, randomize

runner = CliRunner()
NULL = 10  # tiny-cond has --num_classes 10: the null class is label 10


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """16 labelled 16x16 images, 3 classes (the model has room for 10)."""
    path = tmp_path_factory.mktemp("data") / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, arr_0=rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8), arr_1=np.arange(16) % 3)
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def refused(*args) -> str:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def tiny_cond(**changes):
    preset = get_training_preset("tiny-cond", "diffusion")
    return default_registry().network_flags(preset), {**preset.train, **changes}


# ---- the checkpoint format ---------------------------------------------------------------------

def test_null_class_is_one_extra_label_row_and_nothing_else():
    plain = build_model(parse_model_flags(MODEL_FLAGS), device="meta").state_dict()
    flags = parse_model_flags(MODEL_FLAGS + " --null_class True")
    with_null = build_model(flags, device="meta").state_dict()
    assert list(with_null) == list(plain)  # the original's keys, in its order
    assert with_null["label_emb.weight"].shape == (11, plain["label_emb.weight"].shape[1])
    assert {k: v.shape for k, v in with_null.items() if k != "label_emb.weight"} == {
        k: v.shape for k, v in plain.items() if k != "label_emb.weight"}
    assert null_label(flags) == 10 and null_label(parse_model_flags(MODEL_FLAGS)) is None


def test_null_class_needs_a_class_conditional_model():
    with pytest.raises(UsageError, match="--null_class True needs a class-conditional model") as info:
        parse_model_flags("--image_size 16 --num_channels 32 --channel_mult 1,2 --null_class True")
    assert "\n" not in str(info.value)


# ---- label dropout -----------------------------------------------------------------------------

def test_planned_dropout_is_per_position_and_near_p():
    planned = dropped_labels(7, range(2000), 0.3)
    assert 0.27 < sum(planned) / 2000 < 0.33
    assert dropped_labels(7, [1500, 3], 0.3) == [planned[1500], planned[3]]  # the position decides, not the batch
    assert dropped_labels(8, range(2000), 0.3) != planned  # the run's seed too
    assert not any(dropped_labels(7, range(100), 0.0))


def _labels_seen(task: DiffusionTask, positions, microbatch: int) -> torch.Tensor:
    """The labels the network is called with for one batch of these stream positions."""
    seen: list[torch.Tensor] = []
    hook = task.model.label_emb.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    trainer = Trainer(task.model, TrainConfig(data="-", batch_size=len(positions), microbatch=microbatch), Dist())
    batch = collate([task.dataset[p] for p in positions])
    train_step(trainer, task, DeviceBatch(to_model_input(batch.images, trainer.device), batch.labels, batch.positions),
               microbatch or len(positions))
    hook.remove()
    return torch.cat(seen), batch.labels


def test_the_network_sees_the_null_class_exactly_where_planned(data):
    flags, train = tiny_cond(batch_size=8, label_dropout=0.5)
    config = TrainConfig(data=str(data), **train)
    task = DiffusionTask(flags, config)
    assert task.flags.null_class and task.model.label_emb.weight.shape[0] == 11
    randomize(task.model, 1)  # out of the zero-initialised output layer: gradients reach the labels
    positions = list(range(24, 32))
    seen, labels = _labels_seen(task, positions, 0)
    planned = torch.tensor(dropped_labels(config.seed, positions, 0.5))
    assert 0 < planned.sum() < len(positions)  # some dropped, some kept
    assert torch.equal(seen, torch.where(planned, torch.tensor(NULL), labels))
    grad = task.model.label_emb.weight.grad
    assert grad[NULL].abs().sum() > 0 and grad[5].abs().sum() == 0  # the null row learns; an absent class not
    assert torch.equal(_labels_seen(task, positions, 2)[0], seen)  # micro-batches drop the same ones


def test_label_dropout_trains_a_null_class_model_and_resumes_bitwise(data, tmp_path):
    straight = tmp_path / "straight"
    args = ["train", "--preset", "tiny-cond", "--data", data, "--batch-size", 4, "--save-every", 2,
            "--label-dropout", 0.5, "--device", "cpu"]
    result = invoke(*args, "--iterations", 4, "--run-dir", straight)
    assert result.exit_code == 0, result.output
    doc = json.loads((straight / "config.json").read_text())
    assert doc["model_flags"]["null_class"] is True and doc["train"]["label_dropout"] == 0.5
    weights = load_state_dict(straight / "model000004.pt")
    assert weights["label_emb.weight"].shape[0] == 11
    resumed = tmp_path / "resumed"
    assert invoke(*args, "--iterations", 2, "--run-dir", resumed).exit_code == 0
    again = invoke(*args, "--iterations", 4, "--run-dir", resumed)
    assert again.exit_code == 0, again.output
    for name in ("model000004.pt", "ema_0.99_000004.pt"):
        a, b = load_state_dict(straight / name), load_state_dict(resumed / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    state = torch.load(resumed / "opt000004.pt", weights_only=True)["state"]
    reference = torch.load(straight / "opt000004.pt", weights_only=True)["state"]
    assert all(torch.equal(state[i]["exp_avg"], reference[i]["exp_avg"]) for i in reference)


def test_label_dropout_needs_labels_and_a_probability(data, tmp_path):
    line = refused("train", "--preset", "tiny", "--data", data, "--run-dir", tmp_path / "r", "--label-dropout", 0.5)
    assert "--label-dropout 0.5 needs a class-conditional model" in line
    assert not (tmp_path / "r").exists()
    line = refused("train", "--preset", "tiny-cond", "--data", data, "--run-dir", tmp_path / "r", "--label-dropout", 1)
    assert "--label-dropout" in line


def test_a_run_recorded_before_null_class_existed_continues(data, tmp_path):
    run_dir = tmp_path / "run"
    adm.train("tiny-cond", data=data, run_dir=run_dir, iterations=1, batch_size=4)
    doc = json.loads((run_dir / "config.json").read_text())
    del doc["model_flags"]["null_class"]  # as an earlier adm wrote it
    (run_dir / "config.json").write_text(json.dumps(doc))
    assert adm.train(run_dir=run_dir, iterations=2).step == 2


def test_fine_tuning_a_checkpoint_without_null_class_appends_the_mean_row(data, tmp_path):
    flags, train = tiny_cond(batch_size=4)
    released = randomize(build_model(flags), 5).state_dict()
    save_state_dict(released, tmp_path / "released.pt")
    config = TrainConfig(data=str(data), **{**train, "label_dropout": 0.2, "init": str(tmp_path / "released.pt")})
    loaded = DiffusionTask(flags, config, init=config.init).model.state_dict()
    table = released["label_emb.weight"]
    assert torch.equal(loaded["label_emb.weight"][:10], table)
    assert torch.allclose(loaded["label_emb.weight"][10], table.mean(0))
    assert all(torch.equal(loaded[k], v) for k, v in released.items() if k != "label_emb.weight")


# ---- snapshots ---------------------------------------------------------------------------------

def test_snapshots_are_written_and_survive_keep(data, tmp_path):
    run_dir = tmp_path / "run"
    result = invoke("train", "--preset", "tiny-cond", "--data", data, "--run-dir", run_dir, "--batch-size", 4,
                    "--iterations", 6, "--save-every", 3, "--keep", 1, "--snapshots", "4,2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert [(r.step, r.snapshot) for r in read_records(run_dir)] == [(2, True), (4, True), (6, False)]
    assert sorted(p.name for p in run_dir.glob("model*.pt")) == ["model000002.pt", "model000004.pt", "model000006.pt"]
    assert json.loads((run_dir / "config.json").read_text())["train"]["snapshots"] == [2, 4]
    # a later call that names no snapshots still keeps them
    assert adm.train(run_dir=run_dir, iterations=9, snapshots=()).step == 9
    assert [r.step for r in read_records(run_dir)] == [2, 4, 9]


def test_keep_prunes_all_but_marked_snapshots(tmp_path):
    weights = {"w": torch.zeros(1)}
    for step in (1, 2, 3, 4):
        write_checkpoint(tmp_path, step, model=weights, emas={}, optimizer={}, state={}, keep=1, snapshot=step == 2)
    assert [(r.step, r.snapshot) for r in read_records(tmp_path)] == [(2, True), (4, False)]
    assert sorted(p.name for p in tmp_path.glob("model*.pt")) == ["model000002.pt", "model000004.pt"]


def test_snapshot_steps_are_checked():
    with pytest.raises(UsageError, match="--snapshots"):
        adm.training.config.make_config(TrainConfig, {"data": "x", "snapshots": "2000,soon"})
    assert adm.training.config.make_config(TrainConfig, {"data": "x", "snapshots": "400,200,400"}).snapshots == (200, 400)


def test_dry_run_shows_the_null_class_the_run_will_record(data, tmp_path):
    result = invoke("train", "--preset", "tiny-cond", "--data", data, "--run-dir", tmp_path / "r", "--label-dropout", 0.1,
                    "--snapshots", "5,10", "--dry-run")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["model_flags"]["null_class"] is True and doc["train"]["snapshots"] == [5, 10]
