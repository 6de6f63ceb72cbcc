"""Training building blocks: config, data sources and order, samplers, EMA, checkpoints, run dir."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from adm.core.errors import UsageError
from adm.data.crops import center_crop, random_crop
from adm.presets import default_registry, get_training_preset
from adm.spec.flags import ClassifierFlags, ModelFlags
from adm.training import (
    ClassifierTrainConfig,
    TrainConfig,
    latest_weights,
    make_config,
    read_run_config,
)
from adm.training.checkpoint import read_records, write_checkpoint
from adm.training.data import (
    Augment,
    SampleOrder,
    StreamDataset,
    StreamPlan,
    open_source,
    split_indices,
)
from adm.training.ema import EMA
from adm.training.metrics import MetricsLog, plot_curve, read_metrics
from adm.training.rundir import run_config, write_run_config
from adm.training.seeding import derive_seed, per_sample_normal, uniform
from adm.training.timesteps import LossSecondMomentSampler, UniformSampler, make_sampler


def save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def solid(size, value, h=None):
    return np.full((h or size, size, 3), value, dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# config


def test_batch_must_split_over_processes_and_microbatches():
    config = TrainConfig(data="x", batch_size=8, microbatch=2)
    assert config.local_batch(2) == 4 and config.micro_size(2) == 2
    with pytest.raises(UsageError, match="--microbatch 3 does not divide the per-process batch 8"):
        TrainConfig(data="x", batch_size=8, microbatch=3).local_batch(1)
    with pytest.raises(UsageError, match="does not divide over 3 processes"):
        config.local_batch(3)


def test_make_config_errors_are_one_line_and_name_the_option():
    with pytest.raises(UsageError, match="bad value for --ema-rate: EMA rates must lie in") as info:
        make_config(TrainConfig, {"data": "x", "ema_rates": (1.5,)})
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="--lr"):
        make_config(TrainConfig, {"data": "x", "lr": -1})
    with pytest.raises(UsageError, match="either val_data or val_fraction"):
        make_config(ClassifierTrainConfig, {"data": "x", "val_data": "y", "val_fraction": 0.1})


def test_default_duration_is_finite():
    assert TrainConfig(data="x").iterations == 100_000
    assert ClassifierTrainConfig(data="x").iterations == 150_000


# --------------------------------------------------------------------------------------------
# seeding


def test_counter_based_randomness_is_stable_and_independent_of_batching():
    assert derive_seed(1, "noise", 5) == derive_seed(1, "noise", 5) != derive_seed(1, "noise", 6)
    assert 0.0 <= uniform(0, "t", 3) < 1.0
    seeds = [derive_seed(0, "noise", p) for p in range(6)]
    whole = per_sample_normal(seeds, (3, 4, 4), torch.device("cpu"))
    parts = torch.cat([per_sample_normal(seeds[:2], (3, 4, 4), torch.device("cpu")),
                       per_sample_normal(seeds[2:], (3, 4, 4), torch.device("cpu"))])
    assert torch.equal(whole, parts)


# --------------------------------------------------------------------------------------------
# samplers


def test_uniform_sampler_draws_by_inverse_cdf_with_unit_weights():
    sampler = UniformSampler(10)
    t, w = sampler.sample([0.0, 0.05, 0.1, 0.999])
    assert t.tolist() == [0, 0, 1, 9]
    assert torch.allclose(w, torch.ones(4))


def test_loss_second_moment_warms_up_then_weights_by_rms_loss():
    sampler = make_sampler("loss-second-moment", 4)
    assert isinstance(sampler, LossSecondMomentSampler) and sampler.loss_aware
    for _ in range(10):
        sampler.update([0, 1, 2, 3], [1.0, 1.0, 1.0, 3.0])
    assert sampler.warmed_up
    weights = sampler.weights()
    expected = torch.tensor([1.0, 1.0, 1.0, 3.0], dtype=torch.float64) / 6 * 0.999 + 0.001 / 4
    assert torch.allclose(weights, expected)
    t, w = sampler.sample([0.99])
    assert t.tolist() == [3] and w.item() == pytest.approx(1 / (4 * expected[3].item()), rel=1e-6)
    sampler.update([3], [5.0])  # a full history shifts
    assert sampler.history[3, -1] == 5.0 and sampler.counts[3] == 10
    clone = LossSecondMomentSampler(4)
    clone.load_state_dict(sampler.state_dict())
    assert torch.equal(clone.weights(), sampler.weights())
    with pytest.raises(UsageError):
        LossSecondMomentSampler(5).load_state_dict(sampler.state_dict())
    with pytest.raises(UsageError, match="unknown schedule sampler"):
        make_sampler("importance", 4)


# --------------------------------------------------------------------------------------------
# data


def test_labels_from_prefix_folder_and_auto(tmp_path):
    for name in ("dog_1.png", "cat_2.png", "cat_3.png"):
        save_png(tmp_path / "flat" / name, solid(8, 10))
    for name in ("b/x.png", "a/y.png", "a/sub/z.webp"):
        save_png(tmp_path / "tree" / name, solid(8, 10))
    flat = open_source(tmp_path / "flat", image_size=8, need_labels=True)
    assert flat.class_names == ("cat", "dog") and flat.labels.tolist() == [0, 0, 1]
    tree = open_source(tmp_path / "tree", image_size=8, need_labels=True)  # auto -> folder
    assert tree.class_names == ("a", "b") and tree.labels.tolist() == [0, 0, 1]
    with pytest.raises(UsageError, match="no class prefix") as refused:
        open_source(tmp_path / "tree", image_size=8, need_labels=True, label_source="prefix")
    assert '--class_cond False' in refused.value.hint  # unlabelled data: an unconditional model
    with pytest.raises(UsageError, match="not in a class sub-folder"):
        open_source(tmp_path / "flat", image_size=8, need_labels=True, label_source="folder")
    unlabelled = open_source(tmp_path / "tree", image_size=8, need_labels=False)
    assert unlabelled.labels is None and unlabelled.count == 3


def test_source_errors_are_one_line(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        open_source(tmp_path / "missing", image_size=8, need_labels=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="contains no images"):
        open_source(tmp_path / "empty", image_size=8, need_labels=False)
    save_png(tmp_path / "small" / "a_1.png", solid(8, 0))
    with pytest.raises(UsageError, match="smaller than the model") as info:
        open_source(tmp_path / "small", image_size=16, need_labels=False)
    assert "\n" not in str(info.value)


def test_npz_source_with_labels(tmp_path):
    images = np.zeros((5, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "d.npz", images, np.array([0, 2, 2, 1, 0]))
    source = open_source(tmp_path / "d.npz", image_size=8, need_labels=True)
    assert source.count == 5 and source.num_classes == 3 and source.labels.tolist() == [0, 2, 2, 1, 0]
    np.savez(tmp_path / "nolabels.npz", images)
    with pytest.raises(UsageError, match="no labels"):
        open_source(tmp_path / "nolabels.npz", image_size=8, need_labels=True)
    np.savez(tmp_path / "nchw.npz", np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(UsageError, match="NCHW"):
        open_source(tmp_path / "nchw.npz", image_size=8, need_labels=False)


def test_center_crop_follows_the_original_resizing():
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 30:50] = 255  # a bar in the middle survives the center crop
    out = center_crop(wide, 16)  # 40x80 -> BOX to 20x40 -> BICUBIC to 16x32 -> center 16x16
    assert out.shape == (16, 16, 3)
    assert out[:, 8].min() > 200 and out[:, 0].max() < 60
    assert center_crop(solid(16, 7), 16) is not None and center_crop(solid(16, 7), 16).shape == (16, 16, 3)
    generator = torch.Generator().manual_seed(0)
    assert random_crop(wide, 16, generator).shape == (16, 16, 3)


def test_stream_order_is_a_permutation_per_epoch_and_seeded():
    order = SampleOrder(tuple(range(10)), seed=3)
    epoch0 = [order.index(p) for p in range(10)]
    epoch1 = [order.index(p) for p in range(10, 20)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(10)) and epoch0 != epoch1
    assert epoch0 == [SampleOrder(tuple(range(10)), seed=3).index(p) for p in range(10)]


def test_rank_slices_union_is_the_single_process_batch():
    one = StreamPlan(batch_size=8, world_size=1, rank=0)
    two = [StreamPlan(batch_size=8, world_size=2, rank=r) for r in range(2)]
    for step in range(3):
        assert two[0].positions(step) + two[1].positions(step) == one.positions(step)
    resumed = StreamPlan(batch_size=8, world_size=2, rank=1, base_step=5, base_position=40)
    assert resumed.positions(5) == one.positions(5)[4:]


def test_unreadable_images_are_skipped_and_reported(tmp_path):
    for i in range(4):
        save_png(tmp_path / f"img_{i}.png", solid(8, 50 * i))
    (tmp_path / "img_1.png").write_bytes(b"not a png")
    source = open_source(tmp_path, image_size=8, need_labels=False)
    dataset = StreamDataset(source, SampleOrder(tuple(range(4)), 0, shuffle=False), Augment(8), seed=0)
    image, _, _, broken = dataset[1]
    assert len(broken) == 1 and "img_1.png" in broken[0]
    assert image[0, 0, 0].item() == 100  # the next image took its place
    assert dataset[0][3] == []


def test_flip_and_crop_are_seeded_by_position(tmp_path):
    array = np.arange(20 * 20 * 3, dtype=np.uint8).reshape(20, 20, 3)
    np.savez(tmp_path / "d.npz", array[None].repeat(4, 0))
    source = open_source(tmp_path / "d.npz", image_size=16, need_labels=False)
    dataset = StreamDataset(source, SampleOrder(tuple(range(4)), 0), Augment(16, True, True), seed=1)
    assert torch.equal(dataset[3][0], dataset[3][0])
    assert len({dataset[p][0].numpy().tobytes() for p in range(4)}) > 1


def test_validation_split_is_seeded_and_disjoint():
    train, val = split_indices(20, 0.25, seed=0)
    assert len(val) == 5 and not set(train) & set(val) and sorted(train + val) == list(range(20))
    assert split_indices(20, 0.25, seed=0) == (train, val)
    with pytest.raises(UsageError, match="leaves no training images"):
        split_indices(1, 0.5, seed=0)


# --------------------------------------------------------------------------------------------
# EMA, checkpoints, run dir, metrics


def test_ema_update_and_state_dict_keys():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, (0.9, 0.5))
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    state = ema.state_dict(0.9, model)
    assert list(state) == list(model.state_dict())
    assert torch.allclose(state["weight"], 0.9 * before + 0.1 * model.weight)
    assert torch.allclose(ema.state_dict(0.5, model)["weight"], before + 0.5)


def _write(run_dir, step, keep):
    weights = {"w": torch.full((2,), float(step))}
    return write_checkpoint(
        run_dir, step, model=weights, emas={0.9999: weights, 0.999: weights},
        optimizer={"state": {}, "param_groups": []}, state={"step": step}, keep=keep,
    )


def test_checkpoints_use_the_original_names_and_keep_the_last_n(tmp_path):
    for step in (10, 20, 30):
        _write(tmp_path, step, keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([
        "checkpoint.json", "model000020.pt", "model000030.pt", "opt000020.pt", "opt000030.pt",
        "state000020.pt", "state000030.pt", "ema_0.9999_000020.pt", "ema_0.9999_000030.pt",
        "ema_0.999_000020.pt", "ema_0.999_000030.pt",
    ])
    assert [r.step for r in read_records(tmp_path)] == [20, 30]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # a plain torch.load of the model file gives a state_dict, as the original expects
    assert set(torch.load(tmp_path / "model000030.pt", weights_only=True)) == {"w"}


def test_run_dir_contract(tmp_path):
    flags = ModelFlags(image_size=32, num_channels=32, channel_mult="1,2")
    with pytest.raises(UsageError, match="does not exist"):
        latest_weights(tmp_path / "nope")
    with pytest.raises(UsageError, match="no config.json"):
        read_run_config(tmp_path)
    write_run_config(tmp_path, run_config("diffusion", flags, {"steps": 1}))
    doc = read_run_config(tmp_path)
    assert doc["kind"] == "diffusion" and doc["model_flags"]["num_channels"] == 32 and "adm_version" in doc
    with pytest.raises(UsageError, match="no checkpoints yet") as info:
        latest_weights(tmp_path)
    assert "\n" not in str(info.value)
    _write(tmp_path, 10, keep=0)
    _write(tmp_path, 20, keep=0)
    got, path = latest_weights(tmp_path)
    assert got == flags and path.name == "ema_0.9999_000020.pt"  # slowest rate, newest step
    assert latest_weights(tmp_path, "model")[1].name == "model000020.pt"
    assert latest_weights(tmp_path, rate=0.999)[1].name == "ema_0.999_000020.pt"
    (tmp_path / "checkpoint.json").unlink()  # the original's files without a commit record
    assert latest_weights(tmp_path)[1].name == "ema_0.9999_000020.pt"


def test_classifier_run_dir_gives_classifier_flags(tmp_path):
    flags = ClassifierFlags(image_size=16, classifier_width=32, classifier_channel_mult="1,2")
    write_run_config(tmp_path, run_config("classifier", flags, {}))
    weights = {"w": torch.zeros(1)}
    write_checkpoint(tmp_path, 5, model=weights, emas={}, optimizer={}, state={}, keep=0)
    got, path = latest_weights(tmp_path)
    assert got == flags and path.name == "model000005.pt"
    assert json.loads((tmp_path / "config.json").read_text())["diffusion_flags"]["diffusion_steps"] == 1000


def test_metrics_truncate_on_resume_and_plot(tmp_path):
    log = MetricsLog(tmp_path)
    for step in range(1, 6):
        log.append({"step": step, "loss": 1.0 / step})
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 6, "lo')  # torn by a kill
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]
    log.truncate_after(3)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    path = plot_curve([1, 2, 3], [1.0, 0.5, 0.2], tmp_path / "loss.png")
    with Image.open(path) as image:
        assert image.size == (800, 480) and image.format == "PNG"


# --------------------------------------------------------------------------------------------
# presets


def test_training_presets_record_published_values():
    classifier = get_training_preset("imagenet128", "classifier")
    assert classifier.train == dict(iterations=300_000, anneal_lr=True, batch_size=256, lr=3e-4, save_every=10_000, weight_decay=0.05)
    assert default_registry().network_flags(classifier).image_size == 128
    base = get_training_preset("imagenet64", "diffusion")
    assert base.train["batch_size"] == 2048 and default_registry().network_flags(base).num_channels == 192
    registry = default_registry()
    for preset in registry.training_presets("diffusion").values():
        TrainConfig(data="x", **preset.train)
        registry.network_flags(preset)
    for preset in registry.training_presets("classifier").values():
        ClassifierTrainConfig(data="x", **preset.train)
        registry.network_flags(preset)
    assert registry.network_flags(get_training_preset("tiny", "diffusion")).image_size == 16
    with pytest.raises(UsageError, match="unknown training preset 'tiniy'.*did you mean tiny"):
        get_training_preset("tiniy", "diffusion")
    with pytest.raises(UsageError, match="unknown classifier training preset"):
        get_training_preset("lsun-cat", "classifier")


def test_the_losses_draw_no_noise_of_their_own():
    """Training noise comes from the trainer's generators (exact resume); a call without it is an error,
    not a silent draw from the global RNG."""
    from adm.diffusion.adapters import EpsilonVP
    from adm.diffusion.continuous import NoiseSchedule
    from adm.diffusion.losses import calc_bpd_loop, training_losses
    from adm.diffusion.process import LossType, ModelVarType

    process = NoiseSchedule.create("cosine", 8).chain(list(range(8)))
    param = EpsilonVP(ModelVarType.FIXED_SMALL)
    x0, t = torch.zeros(1, 3, 2, 2), torch.tensor([1])
    with pytest.raises(TypeError, match="'noise'"):
        training_losses(process, param, LossType.MSE, lambda x, t: x, x0, t)
    with pytest.raises(TypeError, match="'noise_fn'"):
        calc_bpd_loop(process, param, lambda x, t: x, x0)
