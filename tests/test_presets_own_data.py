"""Training presets for one's own data (issue 25, item 5): the networks other papers reused, each
the size its paper says, resolvable by `adm train --preset`, with its cost listed by `adm presets`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from typer.testing import CliRunner

from adm.cli.main import app
from adm.presets import TrainPreset, default_registry
from adm.presets.costs import count_costs, recorded_costs
from adm.spec.costs import build_network, count_cost, time_training_step

# name -> (the size its source gives, lower and upper bound of the count)
CITED = {
    # P2-weighting README: "lightweight version (93M parameter) of ADM"
    "lightweight-256": (93_000_000, 94_000_000),
    # improved-diffusion's checkpoint cifar10_uncond_50M_500K.pt ("50M")
    "iddpm-cifar10": (50_000_000, 55_000_000),
    # the released ImageNet networks (counted from the original's classes, shared/notes), less the
    # 1000-class label embedding (1000 x 4 x num_channels): these presets are unconditional
    "adm-64": (295_904_454 - 1000 * 768,) * 2,
    "adm-128": (421_529_606 - 1000 * 1024,) * 2,
    "adm-256": (552_814_086,) * 2,  # = the released unconditional 256x256 model
}
FLAGS = {  # what each network is: its source's flags (the rest are the released preset's)
    "lightweight-256": {"image_size": 256, "num_channels": 128, "num_res_blocks": 1, "attention_resolutions": "16",
                        "num_head_channels": 64, "resblock_updown": True, "use_scale_shift_norm": True,
                        "learn_sigma": True, "noise_schedule": "linear", "rescale_learned_sigmas": True},
    "iddpm-cifar10": {"image_size": 32, "num_channels": 128, "num_res_blocks": 3, "dropout": 0.3, "learn_sigma": True,
                      "diffusion_steps": 4000, "noise_schedule": "cosine", "rescale_timesteps": True},
    "adm-64": {"image_size": 64, "num_channels": 192, "num_res_blocks": 3, "use_new_attention_order": True},
    "adm-128": {"image_size": 128, "num_channels": 256, "num_heads": 4},
    "adm-256": {"image_size": 256, "num_channels": 256, "num_head_channels": 64},
}


def invoke(*args):
    return CliRunner(env={"COLUMNS": "250"}).invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two 256x256 images (large enough for every preset: smaller networks take a crop)."""
    path = tmp_path_factory.mktemp("own") / "images.npz"
    np.savez(path, np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize("name", list(CITED))
def test_each_network_is_the_size_its_source_says(name):
    registry = default_registry()
    flags = registry.network_flags(registry.training_preset(name, "diffusion"))
    low, high = CITED[name]
    params = sum(p.numel() for p in build_network(flags, "meta").parameters())
    assert low <= params <= high
    assert flags.class_cond is False  # a folder of one's own images has no labels unless asked
    assert {k: getattr(flags, k) for k in FLAGS[name]} == FLAGS[name]


def test_the_adm_networks_are_the_imagenet_ones_without_labels():
    registry = default_registry()
    for name, released in (("adm-64", "imagenet64"), ("adm-128", "imagenet128"), ("adm-256", "imagenet256")):
        flags = registry.network_flags(registry.training_preset(name, "diffusion")).flag_dict()
        assert flags == {**registry.preset(released).model_flags.flag_dict(), "class_cond": False}, name


def test_changes_apply_only_to_a_released_network():
    with pytest.raises(ValidationError, match="`changes` applies to a released preset"):
        TrainPreset(name="x", kind="diffusion", flags="--image_size 16", changes="--dropout 0.1")


@pytest.mark.parametrize("name", list(CITED))
def test_adm_train_resolves_each_preset(name, images, tmp_path):
    result = invoke("train", "--preset", name, "--data", images, "--run-dir", tmp_path / "run", "--dry-run")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    preset = default_registry().training_preset(name, "diffusion")
    assert doc["preset"] == name
    assert {k: doc["model_flags"][k] for k in FLAGS[name]} == FLAGS[name]
    assert {k: doc["train"][k] for k in ("batch_size", "lr")} == {k: preset.train[k] for k in ("batch_size", "lr")}
    assert not (tmp_path / "run").exists()


def test_labelled_data_makes_an_adm_preset_class_conditional(tmp_path):
    for i in range(4):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(tmp_path / f"{'cat' if i % 2 else 'dog'}_{i}.png")
    result = invoke("train", "--preset", "adm-64", "--model-flags", "--class_cond True", "--data", tmp_path,
                    "--run-dir", tmp_path / "run", "--dry-run")
    assert result.exit_code == 0, result.output
    flags = json.loads(result.output)["model_flags"]
    assert flags["class_cond"] is True and flags["num_classes"] == 2  # the count is the data's


def test_one_real_step_of_the_cifar_network_narrowed(tmp_path):
    """The smallest preset trains through `adm train` (narrowed to 32 channels to stay fast): its
    improved-diffusion conventions (4000 cosine steps, rescaled timesteps, no flip) run end to end."""
    data = tmp_path / "d.npz"
    np.savez(data, np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    run = tmp_path / "run"
    result = invoke("train", "--preset", "iddpm-cifar10", "--model-flags", "--num_channels 32", "--data", data,
                    "--run-dir", run, "--iterations", 1, "--batch-size", 2, "--save-every", 1)
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["model_flags"]["family"] == "improved-diffusion" and config["model_flags"]["dropout"] == 0.3
    assert config["train"]["random_flip"] is False and config["train"]["lr"] == 1e-4
    assert "trained" in result.output and "to step 1" in result.output


def test_the_recorded_costs_are_the_flags_counted_now():
    """costs.json is what `adm presets` lists without torch; it must say what the flags count.
    Stale: run `python benchmarks/preset_costs.py count`."""
    registry = default_registry()
    counted = count_costs(registry.all_training_presets, registry)
    stale = {key for key in {*counted, *recorded_costs()} if counted.get(key) != recorded_costs().get(key)}
    assert not stale, f"src/adm/presets/costs.json is stale for {sorted(stale)}: run python benchmarks/preset_costs.py count"


def test_the_listing_shows_each_preset_s_cost():
    result = invoke("presets")
    assert result.exit_code == 0, result.output
    training = result.stdout.partition("training presets")[2]
    row = next(line for line in training.splitlines() if line.startswith("│ lightweight-256 "))
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[:4] == ["lightweight-256", "256", "93.6M", "388"]
    assert "ILVR" in cells[4] and "P2-weighting" in cells[4] and "DPS" in cells[4]  # where it was used
    cost = count_cost(default_registry().network_flags(default_registry().training_preset("adm-256", "diffusion")))
    assert round(cost.gflops) == 2240  # one forward pass of one image
    adm = next(line for line in training.splitlines() if line.startswith("│ adm-256 "))
    assert " 552.8M " in adm and " 2240 " in adm


def test_one_preset_shows_its_cost_and_source():
    doc = json.loads(invoke("presets", "lightweight-256", "--json").stdout)["training"]["diffusion"]
    assert doc["params"] == 93_563_910 and doc["flops_per_image"] == recorded_costs()["diffusion/lightweight-256"].flops
    assert doc["released"] == "ilvr-ffhq256" and doc["changes"] == "--rescale_learned_sigmas True"
    assert "arXiv:2108.02938" in doc["source"] and "arXiv:2204.00227" in doc["source"] and "arXiv:2209.14687" in doc["source"]
    text = invoke("presets", "adm-128").stdout
    assert "420,505,606 (420.5M)" in text and "614 per image" in text


def test_measure_times_a_step_of_each_kind_here():
    result = invoke("presets", "tiny", "--measure", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)["training"]
    for kind in ("diffusion", "classifier"):
        measured = doc[kind]["measured"]
        assert measured["batch_size"] == 1 and len(measured["seconds_per_step"]) == 2
        assert all(s > 0 for s in measured["seconds_per_step"])
    text = invoke("presets", "tiny-cond", "--measure", "--batch-size", 2).stdout
    assert "s per training step at batch 2 on this machine" in text


def test_timing_leaves_the_global_random_stream_alone():
    flags = default_registry().network_flags(default_registry().training_preset("tiny", "diffusion"))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    time_training_step(flags, 1, warmup=0, repeats=1)  # dropout draws from the global stream
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(("args", "message"), [
    (("presets", "lightweight256"), "unknown preset 'lightweight256' (did you mean lightweight-256?)"),
    (("presets", "--measure"), "--measure times one preset's training step"),
    (("train", "--preset", "adm64", "--data", "x.npz"), "did you mean adm-64"),
])
def test_bad_names_get_one_line(args, message, tmp_path):
    result = invoke(*args, *(("--run-dir", tmp_path / "r") if args[0] == "train" else ()))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
