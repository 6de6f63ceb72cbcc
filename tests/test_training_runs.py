"""The run rule in the library (adm.training.runs): what the CLI and adm.train share."""

from __future__ import annotations

import numpy as np
import pytest

import adm
from adm.core.errors import UsageError
from adm.training.runs import RunRequest, resolve_run


@pytest.fixture()
def data(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, arr_0=rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), arr_1=np.arange(8) % 2)
    return path


def test_layers_preset_then_saved_run_then_explicit(data, tmp_path):
    run_dir = tmp_path / "run"
    fresh = resolve_run(RunRequest("diffusion", run_dir, "tiny", None, {"data": str(data)}))
    preset_lr = fresh.config.lr
    adm.train("tiny", data=data, run_dir=run_dir, iterations=2, batch_size=4, save_every=2, lr=preset_lr * 2)
    again = resolve_run(RunRequest("diffusion", run_dir, None, None, {}))  # the saved run, nothing given
    assert again.config.lr == preset_lr * 2 and again.preset == "tiny" and again.config.iterations == 2
    more = resolve_run(RunRequest("diffusion", run_dir, None, "--dropout 0.1", {"iterations": 3}))
    assert more.config.iterations == 3 and more.config.lr == preset_lr * 2 and more.flags.dropout == 0.1


def test_adm_train_called_again_continues_the_run(data, tmp_path):
    run_dir = tmp_path / "run"
    first = adm.train("tiny", data=data, run_dir=run_dir, iterations=2, batch_size=4, save_every=2)
    assert first.start_step == 0 and first.step == 2
    second = adm.train(run_dir=run_dir, iterations=4)  # no preset, no data: both come from the run
    assert second.start_step == 2 and second.step == 4


def test_a_run_written_with_the_old_name_steps_continues(data, tmp_path):
    """`iterations` was called `steps` in config.json and the API: earlier runs and callers keep working."""
    import json

    run_dir = tmp_path / "run"
    adm.train("tiny", data=data, run_dir=run_dir, steps=2, batch_size=4, save_every=2)  # the old keyword
    doc = json.loads((run_dir / "config.json").read_text())
    assert doc["train"]["iterations"] == 2 and "steps" not in doc["train"]
    doc["train"]["steps"] = doc["train"].pop("iterations")  # as an earlier adm wrote it
    (run_dir / "config.json").write_text(json.dumps(doc))
    assert resolve_run(RunRequest("diffusion", run_dir, None, None, {})).config.iterations == 2
    assert adm.train(run_dir=run_dir, iterations=3).step == 3
    with pytest.raises(UsageError, match="iterations=3 and steps=4 disagree"):
        adm.train(run_dir=run_dir, iterations=3, steps=4)


def test_classifier_runs_take_the_noising_process_from_the_flags(data, tmp_path):
    run = resolve_run(RunRequest("classifier", tmp_path / "c", "tiny", "--diffusion_steps 50 --classifier_depth 1",
                                 {"data": str(data)}))
    assert run.noise.diffusion_steps == 50 and run.flags.classifier_depth == 1
    result = adm.train_classifier("tiny", run_dir=tmp_path / "c", data=data, iterations=1, batch_size=4)
    assert result.step == 1


def test_nothing_to_train_is_a_one_line_error(tmp_path, data):
    with pytest.raises(UsageError, match="no network given"):
        resolve_run(RunRequest("diffusion", tmp_path / "r", None, None, {"data": str(data)}))
    with pytest.raises(UsageError, match="no training data given"):
        resolve_run(RunRequest("diffusion", tmp_path / "r", "tiny", None, {}))
