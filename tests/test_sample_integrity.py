"""What a resumed or repeated `adm sample` may and may not reuse, and checks made before any work.

A shard or output is reused only by the command that made it, with the same weights (a content
fingerprint, so a run dir trained further or a checkpoint overwritten in place is noticed); a
finished npz is never silently replaced; growing ``-n`` reuses what exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import adm
import adm.sampling.batches as batches_module
from adm.api.sources import ModelSource
from adm.cli.main import app
from adm.core.errors import MissingFileError, UsageError
from tiny import CLASSIFIER_FLAGS, MODEL_FLAGS, UPSAMPLER_FLAGS, randomize, write_tiny_checkpoints

runner = CliRunner()


@pytest.fixture()
def ckpt(tmp_path):
    return write_tiny_checkpoints(tmp_path / "ckpt")


def source(ckpt, model=None):
    return ModelSource(model_flags=MODEL_FLAGS, model_path=model or ckpt["model"], classifier_flags=CLASSIFIER_FLAGS,
                       classifier_path=ckpt["classifier"])


def run(ckpt, out, model=None, **kwargs):
    settings = {"scale": 2.0, "steps": "3", "num_samples": 4, "batch_size": 1, "seed": 0, **kwargs}
    return adm.sample(source=source(ckpt, model), out=out, **settings)


def interrupt_after(monkeypatch, batches: int):
    """Make the sampling loop die (as Ctrl-C would) after ``batches`` batches."""
    real, calls = batches_module.sample_batch, []

    def dying(*args, **kwargs):
        if len(calls) == batches:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(batches_module, "sample_batch", dying)


def rewrite_weights(path: Path, seed: int) -> None:
    from adm.hub.checkpoints import save_state_dict
    from adm.spec.factory import build_model
    from adm.spec.flags import parse_model_flags

    save_state_dict(randomize(build_model(parse_model_flags(MODEL_FLAGS)), seed).state_dict(), path)


def test_shards_of_other_weights_are_refused_with_how_to_start_over(ckpt, tmp_path, monkeypatch):
    out = tmp_path / "s.npz"
    interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(ckpt, out)
    monkeypatch.undo()
    rewrite_weights(ckpt["model"], seed=99)  # the same file, other weights
    with pytest.raises(UsageError, match="different command") as info:
        run(ckpt, out)
    assert "model_weights" in str(info.value) and "--overwrite" in str(info.value)
    fresh = run(ckpt, out, overwrite=True)
    assert fresh.result.already_done == 0 and fresh.result.computed == 4


def test_a_moved_checkpoint_with_the_same_weights_resumes(ckpt, tmp_path, monkeypatch):
    out = tmp_path / "s.npz"
    interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(ckpt, out)
    monkeypatch.undo()
    moved = tmp_path / "elsewhere.pt"
    moved.write_bytes(ckpt["model"].read_bytes())
    resumed = run(ckpt, out, model=moved)
    assert resumed.result.already_done == 2 and resumed.result.computed == 2


def test_a_finished_npz_is_not_replaced_by_another_command(ckpt, tmp_path):
    out = tmp_path / "s.npz"
    run(ckpt, out)
    before = out.read_bytes()
    with pytest.raises(UsageError, match=r"different command \(seed 0 → 1\)"):
        run(ckpt, out, seed=1)
    assert out.read_bytes() == before
    replaced = run(ckpt, out, seed=1, overwrite=True)
    assert replaced.result.computed == 4 and out.read_bytes() != before


def test_growing_num_samples_reuses_the_finished_ones(ckpt, tmp_path):
    small, grown, direct = tmp_path / "g.npz", tmp_path / "g.npz", tmp_path / "d.npz"
    run(ckpt, small, num_samples=4)
    result = run(ckpt, grown, num_samples=6).result
    assert result.already_done == 4 and result.computed == 2
    run(ckpt, direct, num_samples=6)
    assert np.array_equal(np.load(grown)["arr_0"], np.load(direct)["arr_0"])
    with pytest.raises(UsageError, match="already holds 6 samples"):
        run(ckpt, grown, num_samples=3)


def test_a_file_adm_did_not_write_is_not_overwritten(ckpt, tmp_path):
    out = tmp_path / "mine.npz"
    np.savez(out, arr_0=np.zeros((1, 16, 16, 3), np.uint8))
    with pytest.raises(UsageError, match="mine.npz exists and was not written by adm"):
        run(ckpt, out)


def test_a_run_dir_trained_further_is_refused_on_resume(tmp_path, monkeypatch):
    data = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(data, arr_0=rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), arr_1=np.arange(8) % 2)
    run_dir, out = tmp_path / "run", tmp_path / "s.npz"

    def train(steps):
        result = runner.invoke(app, ["train", "--preset", "tiny", "--data", str(data), "--run-dir", str(run_dir),
                                     "--iterations", str(steps), "--batch-size", "4", "--save-every", "2", "--device", "cpu"])
        assert result.exit_code == 0, result.output

    sample_args = dict(source=ModelSource(run_dir=run_dir, weights="model"), steps="2", num_samples=4, batch_size=1,
                       out=out)
    train(2)
    interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        adm.sample(**sample_args)
    monkeypatch.undo()
    train(4)
    with pytest.raises(UsageError, match="model_weights model000002.pt .* → model000004.pt"):
        adm.sample(**sample_args)


def test_seed_out_of_range_is_refused_before_anything_is_written(ckpt, tmp_path):
    out = tmp_path / "s.npz"
    result = runner.invoke(app, ["sample", "--model-flags", MODEL_FLAGS, "--model-path", str(ckpt["model"]),
                                 "--scale", "0", "--seed", "-1", "--out", str(out), "-q"])
    assert result.exit_code == 2 and "--seed must be a non-negative integer" in result.output
    assert list(tmp_path.iterdir()) == [tmp_path / "ckpt"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model-flags", UPSAMPLER_FLAGS, "--model-path", "{upsampler}"], "adm upsample"),
        (["--model-flags", MODEL_FLAGS, "--model-path", "{model}", "--classifier-path", "{classifier}"],
         "--classifier-path needs --classifier-flags"),
        (["--model-flags", MODEL_FLAGS, "--model-path", "{model}", "--scale", "0", "--eta", "0.5"],
         "sampler ddpm has no option 'eta'"),
        (["--model-flags", MODEL_FLAGS, "--model-path", "{model}", "--scale", "0", "--sampler", "dpm++2m",
          "--sampler-opt", "order=7"], "bad value for sampler option order"),
        (["--model-flags", MODEL_FLAGS, "--model-path", "{model}", "--scale", "0", "--sampler", "ddim",
          "--spacing", "karras"], "ddim walks the model's respaced chain"),
        (["--model-flags", MODEL_FLAGS, "--model-path", "{model}", "--scale", "0", "--sampler", "heun",
          "--steps", "ddim25"], "are for --sampler ddpm or ddim"),
        (["--model-flags", MODEL_FLAGS, "--model-path", "{model}", "--scale", "0", "--guidance-interval", "0.5"],
         "--guidance-interval expects LO,HI"),
        (["--model-flags", MODEL_FLAGS, "--model-path", "{model}", "--scale", "0", "--sampler-opt", "order"],
         "--sampler-opt expects KEY=VALUE"),
        (["--model-flags", MODEL_FLAGS, "--model-path", "{model}", "--weights", "model"], "--run-dir"),
    ],
)
def test_bad_sampling_options_are_one_line_errors_before_any_work(ckpt, tmp_path, args, message):
    files = {k: str(v) for k, v in ckpt.items()}
    out = tmp_path / "s.npz"
    result = runner.invoke(app, ["sample", *[a.format(**files) for a in args], "--out", str(out), "-q"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists() and not Path(str(out) + ".parts").exists()


def test_a_classifier_run_dir_is_not_a_diffusion_model(tmp_path):
    run_dir = tmp_path / "cls"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"kind": "classifier", "classifier_flags": {}, "train": {}}))
    with pytest.raises(UsageError, match="is a classifier run"):
        adm.sample(source=ModelSource(run_dir=run_dir), out=tmp_path / "s.npz")


def test_every_missing_checkpoint_is_named_in_one_message(tmp_path, monkeypatch):
    monkeypatch.setenv("ADM_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingFileError) as info:
        adm.sample("imagenet64", then_upsample="upsample-64-256", out=tmp_path / "s.npz")
    text = str(info.value)
    assert "64-cond" in text and "64-classifier" in text and "64-256-upsampler" in text
    assert "adm download 64-cond 64-classifier 64-256-upsampler" in text


def test_a_cascade_with_the_wrong_upsampler_fails_before_sampling(tmp_path):
    with pytest.raises(UsageError, match="upsamples 128x128 images, the base model makes 16x16"):
        adm.sample("digits", then_upsample="upsample-128-512", out=tmp_path / "s.npz", download=False)
    assert not (tmp_path / "s.npz").exists()


def test_the_sidecar_says_which_rule_chose_the_steps(ckpt, tmp_path):
    out = tmp_path / "s.npz"
    adm.sample(source=ModelSource(model_flags=MODEL_FLAGS + " --timestep_respacing 3", model_path=ckpt["model"]),
               scale=0.0, num_samples=1, out=out)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["steps_rule"] == "the model flags' --timestep_respacing" and meta["key"]["steps"] == "3"
    assert meta["evaluations"] == 3
    adm.sample(source=ModelSource(model_flags=MODEL_FLAGS + " --timestep_respacing 3", model_path=ckpt["model"]),
               scale=0.0, num_samples=1, steps="2", out=tmp_path / "t.npz")
    meta = json.loads((tmp_path / "t.json").read_text())
    assert meta["steps_rule"] == "--steps" and meta["evaluations"] == 2


def test_a_young_ema_is_warned_about(tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, arr_0=np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8),
             arr_1=np.arange(8) % 2)
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", "--preset", "tiny", "--data", str(data), "--run-dir", str(run_dir),
                                 "--iterations", "2", "--batch-size", "4", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    events = []
    adm.sample(source=ModelSource(run_dir=run_dir), steps="2", num_samples=1, on_progress=events.append)
    warnings = [e.message for e in events if e.message and e.message.startswith("warning:")]
    assert warnings and "--weights model" in warnings[0] and "--ema-rate" in warnings[0]
    events.clear()
    adm.sample(source=ModelSource(run_dir=run_dir, weights="model"), steps="2", num_samples=1, on_progress=events.append)
    assert not [e for e in events if e.message and e.message.startswith("warning:")]


def test_batch_size_changes_at_most_a_few_values_by_one(ckpt, tmp_path):
    """The guarantee (docs/sampling.md): identical bytes for the same batch size, threads, device and
    precision; across batch sizes kernels may round differently, so at most ±1 in a few values."""
    same = [run(ckpt, tmp_path / f"same{i}.npz", num_samples=6, batch_size=2, steps="4") for i in range(2)]
    assert same[0].path.read_bytes() == same[1].path.read_bytes()
    other = run(ckpt, tmp_path / "other.npz", num_samples=6, batch_size=6, steps="4")
    a = np.load(same[0].path)["arr_0"].astype(int)
    b = np.load(other.path)["arr_0"].astype(int)
    assert np.abs(a - b).max() <= 1
    assert (a != b).mean() <= 0.001
    assert np.array_equal(np.load(same[0].path)["arr_1"], np.load(other.path)["arr_1"])


# --- files beside --out (issue 20, item 14) ---------------------------------------------------


@pytest.mark.parametrize("beside, grid", [(".png", 64), (".json", 64), (".json", 0)])
def test_a_file_beside_out_that_adm_did_not_write_is_kept(ckpt, tmp_path, beside, grid):
    """`echo notes > notes.png; adm sample --out notes.npz` replaced the notes; with --grid 0 the
    JSON sidecar still would. Refused, naming the file and --overwrite; nothing is written."""
    out = tmp_path / "notes.npz"
    mine = out.with_suffix(beside)
    mine.write_bytes(b"notes")
    with pytest.raises(UsageError, match=f"{mine.name} exists and was not written by adm") as info:
        run(ckpt, out, grid=grid)
    assert "--overwrite" in str(info.value)
    assert mine.read_bytes() == b"notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ckpt", mine.name])
    run(ckpt, out, grid=grid, overwrite=True)
    assert mine.read_bytes() != b"notes"


def test_a_grid_png_without_grid_is_not_adms_concern(ckpt, tmp_path):
    out = tmp_path / "s.npz"
    out.with_suffix(".png").write_text("notes")
    samples = run(ckpt, out, grid=0)  # no grid is written: the picture is not in the way
    assert out.with_suffix(".png").read_text() == "notes"
    assert samples.grid is None  # what the CLI's summary reads: it names no grid
    with pytest.raises(UsageError, match="s.png exists and was not written by adm"):
        run(ckpt, out, num_samples=6)  # the --grid 0 run's sidecar does not make the picture adm's
    assert out.with_suffix(".png").read_text() == "notes"
    assert run(ckpt, out, num_samples=6, overwrite=True).grid == out.with_suffix(".png")


def test_adms_own_grid_and_sidecar_are_replaced_but_a_picture_put_there_since_is_not(ckpt, tmp_path):
    out = tmp_path / "s.npz"
    run(ckpt, out, num_samples=2)
    grown = run(ckpt, out, num_samples=4)  # the same command, grown: its own files are rewritten
    assert grown.result.already_done == 2 and json.loads(out.with_suffix(".json").read_text())["num_samples"] == 4
    out.with_suffix(".png").write_bytes(b"a picture of my own")
    with pytest.raises(UsageError, match="s.png exists and was not written by adm"):
        run(ckpt, out, num_samples=6)
    assert run(ckpt, out, num_samples=4).result.computed == 0  # finished: nothing to write, nothing refused
    assert out.with_suffix(".png").read_bytes() == b"a picture of my own"


# --- interruptions (item 13) -------------------------------------------------------------------


def test_an_interruption_before_any_batch_says_nothing_was_written_and_leaves_nothing(ckpt, tmp_path, monkeypatch):
    from adm.core.signals import Interrupted
    from adm.sampling.shards import ShardStore

    out = tmp_path / "s.npz"
    store = ShardStore(out)  # a manifest without shards, as a process killed outright left it
    store.open({"stale": True})
    interrupt_after(monkeypatch, 0)
    with pytest.raises(Interrupted) as info:
        run(ckpt, out, overwrite=True)
    assert str(info.value) == "interrupted: nothing was written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_an_interruption_says_how_many_batches_were_kept(ckpt, tmp_path, monkeypatch):
    from adm.core.signals import Interrupted

    out = tmp_path / "s.npz"
    interrupt_after(monkeypatch, 1)
    with pytest.raises(Interrupted) as info:
        run(ckpt, out)
    assert str(info.value) == (f"interrupted: 1 finished batch (1 of 4 samples) kept in {out}.parts "
                               "(run the same command to continue)")
    monkeypatch.undo()
    interrupt_after(monkeypatch, 1)  # another batch on top of the first
    with pytest.raises(Interrupted, match=r"2 finished batches \(2 of 4 samples\)"):
        run(ckpt, out)


def test_the_command_line_says_nothing_was_kept_with_exit_130(ckpt, tmp_path, monkeypatch):
    out = tmp_path / "s.npz"
    interrupt_after(monkeypatch, 0)
    result = runner.invoke(app, ["sample", "--model-flags", MODEL_FLAGS, "--model-path", str(ckpt["model"]),
                                 "--scale", "0", "--steps", "3", "-n", "2", "--out", str(out), "-q"])
    assert result.exit_code == 130
    assert result.stderr.strip() == "error: interrupted: nothing was written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


# --- two writers of one output (item 16) -------------------------------------------------------


def test_a_second_writer_waits_for_the_first_and_reuses_its_samples(ckpt, tmp_path):
    """Two identical runs at once: one wrote the file, the other said samples were missing and left
    a stray shard. Now the second waits for the first's lock, says so, and finds its samples."""
    from adm.core.locks import exclusive
    from adm.sampling.job import lock_path

    first = run(ckpt, tmp_path / "first" / "s.npz")  # what the other process will have written
    out = tmp_path / "s.npz"
    other = exclusive(lock_path(out))
    other.__enter__()
    said = []

    def progress(event):
        if event.message and "waiting for another adm process" in event.message and not said:
            said.append(event.message)
            for suffix in (".npz", ".json", ".png"):  # the other process finishes, then lets go
                out.with_suffix(suffix).write_bytes(first.path.with_suffix(suffix).read_bytes())
            other.__exit__(None, None, None)

    second = run(ckpt, out, on_progress=progress)
    assert said and str(out) in said[0]
    assert second.result.already_done == 4 and second.result.computed == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "first", "s.json", "s.npz", "s.png"]


def test_a_writer_of_another_command_is_refused_without_waiting(ckpt, tmp_path, monkeypatch):
    from adm.core.locks import exclusive
    from adm.sampling.job import lock_path

    out = tmp_path / "s.npz"
    interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        run(ckpt, out, seed=1)  # the shards of the other writer's command
    monkeypatch.undo()
    with exclusive(lock_path(out)), pytest.raises(UsageError, match=r"different command \(seed 1 → 0\)"):
        run(ckpt, out)


def test_samples_that_overflow_are_refused_not_written_black(ckpt, tmp_path, monkeypatch):
    """NaN samples became black images without a word (a classifier scale of 1e30 overflows)."""
    import torch

    import adm.sampling.batches as batches

    monkeypatch.setattr(batches, "run_sampler", lambda *a, **k: torch.full((len(a[4]), 3, 16, 16), float("nan")))
    with pytest.raises(UsageError, match="sample 0 came out as NaN/infinity: the arithmetic overflowed"):
        run(ckpt, tmp_path / "s.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_latents_file_adm_did_not_write_is_kept(tmp_path):
    inputs = tmp_path / "in.npz"
    np.savez(inputs, arr_0=np.zeros((1, 16, 16, 3), np.uint8), arr_1=np.array([3]))
    mine = tmp_path / "latents.npz"
    mine.write_bytes(b"mine")
    for out in (tmp_path / "e.npz", None):  # to a file, and in memory
        with pytest.raises(UsageError, match="latents.npz exists and was not written by adm: .*--overwrite"):
            adm.edit("digits", inputs=inputs, save_latents=mine, out=out, sampler="dpm++2m-sde", steps=2)
    assert mine.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == ["in.npz", "latents.npz"]
    adm.edit("digits", inputs=inputs, save_latents=mine, out=tmp_path / "e.npz", sampler="dpm++2m-sde", steps=2,
             overwrite=True)
    assert np.load(mine)["arr_0"].shape == (1, 3, 16, 16)
