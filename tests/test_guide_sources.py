"""Where autoguidance's guide comes from (issue 23, item 3): a run dir at a given step (`runs/x@2000`,
also for `adm sample --run-dir`), a checkpoint with flags, or a preset; the guide must be
conditioned as the model is, and its weights are part of the run's key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from adm.api.sources import guide_identity, load_guide, resolve_guide
from adm.cli.main import app
from adm.core.errors import UsageError
from adm.hub.checkpoints import save_state_dict
from adm.presets import default_registry
from adm.spec.factory import build_model
from adm.spec.flags import ClassifierFlags, parse_model_flags
from adm.training.checkpoint import write_checkpoint
from adm.training.rundir import latest_weights, read_run, run_config, write_run_config
from tiny import MODEL_FLAGS

runner = CliRunner()
REGISTRY = default_registry()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line(info) -> str:
    text = str(info.value)
    assert "\n" not in text
    return text


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A class-conditional run with a null class (label dropout), checkpoints at steps 2 and 4."""
    root = tmp_path_factory.mktemp("guide")
    rng = np.random.default_rng(0)
    np.savez(root / "d.npz", arr_0=rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), arr_1=np.arange(8) % 2)
    result = invoke("train", "--preset", "tiny-cond", "--data", root / "d.npz", "--run-dir", root / "run",
                    "--iterations", 4, "--batch-size", 4, "--save-every", 2, "--label-dropout", 0.5, "--device", "cpu")
    assert result.exit_code == 0, result.output
    return root / "run"


def main_flags(run: Path):
    return read_run(run).flags


# ---- a run dir at a given step -----------------------------------------------------------------

def test_at_step_picks_that_checkpoint(run):
    assert read_run(run).step == 4
    at2 = read_run(f"{run}@2")
    assert at2.path == run and at2.step == 2 and at2.steps == (2, 4)
    assert at2.weights().name == "ema_0.99_000002.pt" and at2.weights("model").name == "model000002.pt"
    assert latest_weights(f"{run}@2")[1].name == "ema_0.99_000002.pt"
    assert read_run(run, step=2).weights() == at2.weights()


def test_a_missing_step_lists_the_steps_the_run_has(run):
    with pytest.raises(UsageError, match=r"has no checkpoint at step 3 \(it has: 2, 4\)") as info:
        read_run(f"{run}@3")
    one_line(info)
    with pytest.raises(UsageError, match="after @ comes the step"):
        read_run(f"{run}@last")
    with pytest.raises(UsageError, match="never evaluated"):  # @best names an evaluated run's best step
        read_run(f"{run}@best")


def test_sample_run_dir_at_step(run, tmp_path):
    common = ("sample", "-n", 2, "--steps", 3, "-q", "--classes", "0,1")
    at2, by_path, newest = tmp_path / "at2.npz", tmp_path / "path.npz", tmp_path / "newest.npz"
    for args, out in (((("--run-dir", f"{run}@2")), at2), (("--model-path", run / "ema_0.99_000002.pt"), by_path),
                      (("--run-dir", run), newest)):
        result = invoke(*common, *args, "--out", out)
        assert result.exit_code == 0, result.output
    with np.load(at2) as a, np.load(by_path) as b, np.load(newest) as c:
        np.testing.assert_array_equal(a["arr_0"], b["arr_0"])
        assert not np.array_equal(a["arr_0"], c["arr_0"])
    result = invoke(*common, "--run-dir", f"{run}@3", "--out", tmp_path / "x.npz")
    assert result.exit_code == 2 and "has no checkpoint at step 3 (it has: 2, 4)" in result.output


# ---- resolve_guide -----------------------------------------------------------------------------

def test_guide_from_a_run_dir_at_a_step(run):
    guide = resolve_guide(f"{run}@2", registry=REGISTRY, main_flags=main_flags(run))
    assert guide.flags == main_flags(run) and guide.path == run / "ema_0.99_000002.pt" and guide.preset is None
    assert guide.warnings and "guide" in guide.warnings[0]  # the 0.99 EMA at step 2 is still the init
    raw = resolve_guide(f"{run}@2", registry=REGISTRY, main_flags=main_flags(run), weights="model")
    assert raw.path == run / "model000002.pt" and raw.warnings == () and raw.artifacts == ()


def test_guide_from_a_checkpoint_with_or_without_flags(run, tmp_path):
    flags = main_flags(run)
    inside = resolve_guide(run / "model000002.pt", registry=REGISTRY, main_flags=flags)
    assert inside.flags == flags and inside.path == run / "model000002.pt"  # the run dir's config.json
    # a smaller network of the same conditioning, from flags
    small = flags.replace(num_channels=32, num_res_blocks=1, channel_mult="1", attention_resolutions="")
    path = tmp_path / "small.pt"
    save_state_dict(build_model(small).state_dict(), path)
    guide = resolve_guide(str(path), small.flag_dict(), registry=REGISTRY, main_flags=flags)
    assert guide.flags == small and guide.path == path
    with pytest.raises(UsageError, match="--guide-model needs --guide-flags") as info:
        resolve_guide(path, registry=REGISTRY, main_flags=flags)
    one_line(info)


def test_guide_from_a_preset_loads_and_has_a_fingerprint():
    preset = REGISTRY.preset("digits")
    guide = resolve_guide("digits", registry=REGISTRY, main_flags=preset.model_flags)
    assert guide.preset is preset and guide.path is None and guide.artifacts == (preset.checkpoint,)
    loaded = load_guide(guide, device="cpu", download=False, registry=REGISTRY)
    assert loaded.classifier is None
    found = guide_identity(loaded)
    assert found["guide_model"] == "digits" and found["guide_weights"]["sha256"]


def test_guide_weights_of_each_step_are_another_key(run):
    keys = [guide_identity(load_guide(resolve_guide(f"{run}@{step}", registry=REGISTRY, main_flags=main_flags(run)),
                                      device="cpu", download=False, registry=REGISTRY)) for step in (2, 4)]
    assert keys[0]["guide_model"] == keys[1]["guide_model"] and keys[0]["guide_weights"] != keys[1]["guide_weights"]


@pytest.mark.parametrize("change, message", [
    ({"class_cond": False, "null_class": False}, "has class_cond True, the model False"),
    ({"num_classes": 12}, "has num_classes 10, the model 12"),
    ({"null_class": False}, "has null_class True, the model False"),
    ({"image_size": 32}, "has image size 16, the model 32"),
])
def test_a_guide_conditioned_otherwise_is_a_one_line_error(run, change, message):
    with pytest.raises(UsageError, match=message) as info:
        resolve_guide(f"{run}@2", registry=REGISTRY, main_flags=main_flags(run).replace(**change))
    one_line(info)


def test_an_upsampler_is_no_guide_for_a_base_model(run, tmp_path):
    upsampler = parse_model_flags("--large_size 16 --small_size 8 --num_channels 32 --channel_mult 1,2 "
                                  "--attention_resolutions 8 --class_cond True --num_classes 10 --null_class True")
    path = tmp_path / "up.pt"
    save_state_dict(build_model(upsampler).state_dict(), path)
    with pytest.raises(UsageError, match="is an upsampler, the model a base model"):
        resolve_guide(path, upsampler.flag_dict(), registry=REGISTRY, main_flags=main_flags(run))


def test_what_is_not_a_guide(run, tmp_path):
    flags = main_flags(run)
    with pytest.raises(UsageError, match="digitz is not a checkpoint file, a run dir or a preset") as info:
        resolve_guide("digitz", registry=REGISTRY, main_flags=flags)
    assert "did you mean digits" in info.value.hint
    with pytest.raises(UsageError, match="--guide-flags are for a checkpoint file"):
        resolve_guide("digits", MODEL_FLAGS, registry=REGISTRY, main_flags=flags)
    with pytest.raises(UsageError, match="--guide-flags are for a checkpoint file"):
        resolve_guide(f"{run}@2", MODEL_FLAGS, registry=REGISTRY, main_flags=flags)
    classifier = tmp_path / "cls"
    write_run_config(classifier, run_config("classifier", ClassifierFlags(image_size=16), {}))
    write_checkpoint(classifier, 1, model={"w": torch.zeros(1)}, emas={}, optimizer={}, state={}, keep=0)
    with pytest.raises(UsageError, match="is a classifier run, not a diffusion model"):
        resolve_guide(classifier, registry=REGISTRY, main_flags=flags)
    with pytest.raises(UsageError, match="has no checkpoint at step 9"):
        resolve_guide(f"{run}@9", registry=REGISTRY, main_flags=flags)

