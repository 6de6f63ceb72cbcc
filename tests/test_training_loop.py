"""Training loops on tiny models: the loss goes down, micro-batching is exact, fp16 overflow skips."""

import numpy as np
import pytest
import torch
from PIL import Image

from adm.core.distributed import Dist
from adm.hub.checkpoints import load_state_dict
from adm.presets import default_registry, get_training_preset
from adm.spec.flags import parse_flags
from adm.training import (
    ClassifierTrainConfig,
    TrainConfig,
    fit_classifier,
    fit_diffusion,
    latest_weights,
)
from adm.training.data import collate, to_model_input
from adm.training.diffusion import DiffusionTask
from adm.training.metrics import read_metrics
from adm.training.trainer import DeviceBatch, Trainer, train_step

COLORS = [(220, 40, 40), (40, 220, 40), (40, 40, 220)]


def colored_squares(root, n=48, size=16, seed=0, square=8):
    """class{c}_{i}.png: a colored square (class = color) at a random place on a noisy gray field."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % len(COLORS)
        image = rng.integers(60, 120, (size, size, 3)).astype(np.uint8)
        y, x = rng.integers(0, size - square + 1, 2)
        image[y : y + square, x : x + square] = COLORS[c]
        Image.fromarray(image).save(root / f"class{c}_{i}.png")
    return root


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    return colored_squares(tmp_path_factory.mktemp("squares"))


@pytest.fixture(scope="module")
def pretrained(squares, tmp_path_factory):
    """A tiny model after 10 steps: every layer has left its zero initialisation."""
    run = tmp_path_factory.mktemp("pretrained")
    flags, train = tiny(batch_size=8, iterations=10, save_every=10)
    fit_diffusion(TrainConfig(data=str(squares), **train), flags, run)
    return run / "model000010.pt"


def tiny(kind="tiny", **changes):
    preset = get_training_preset(kind, "diffusion")
    return default_registry().network_flags(preset), {**preset.train, **changes}


def mse_curve(run_dir):
    return [r["mse"] for r in read_metrics(run_dir) if "mse" in r]


@pytest.mark.slow
def test_base_model_loss_goes_down(squares, tmp_path):
    flags, train = tiny(iterations=80, batch_size=8, log_every=10, save_every=80)
    result = fit_diffusion(TrainConfig(data=str(squares), **train), flags, tmp_path)
    curve = mse_curve(tmp_path)
    assert result.step == 80 and len(curve) == 8
    assert curve[0] > 0.5 and curve[-1] < 0.35 * curve[0], curve  # eps-prediction starts at mse ~ 1
    assert np.isfinite([r["vb"] for r in read_metrics(tmp_path)]).all()
    got_flags, weights = latest_weights(tmp_path)
    assert got_flags == flags and weights.name == "ema_0.99_000080.pt"


@pytest.mark.slow
def test_upsampler_loss_goes_down(squares, tmp_path):
    flags, train = tiny("tiny-sr", iterations=60, batch_size=8, log_every=10, save_every=60)
    fit_diffusion(TrainConfig(data=str(squares), **train), flags, tmp_path)
    curve = mse_curve(tmp_path)
    assert curve[-1] < 0.35 * curve[0], curve
    assert "low_res" not in load_state_dict(tmp_path / "model000060.pt")  # a plain SuperResUNet state_dict
    assert load_state_dict(tmp_path / "model000060.pt")["input_blocks.0.0.weight"].shape[1] == 6


def test_class_conditional_training_uses_labels(squares, tmp_path):
    flags, train = tiny("tiny-cond", iterations=2, batch_size=4, save_every=2, log_every=1)
    fit_diffusion(TrainConfig(data=str(squares), **train), flags, tmp_path)
    assert "label_emb.weight" in load_state_dict(tmp_path / "model000002.pt")


@pytest.mark.slow
def test_noisy_classifier_learns_colors_far_above_chance(tmp_path):
    data = colored_squares(tmp_path / "data", n=120)
    preset = get_training_preset("tiny", "classifier")
    config = ClassifierTrainConfig(
        data=str(data), **{**preset.train, "iterations": 80, "batch_size": 16, "val_fraction": 0.25,
                           "eval_every": 40, "log_every": 10, "save_every": 80, "random_crop": False},
    )
    result = fit_classifier(config, default_registry().network_flags(preset), tmp_path, diffusion=preset.noise_flags())
    records = read_metrics(tmp_path)
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    # chance is 1/3; at most ~0.83 is reachable, as the noisiest quarter of t is near chance
    assert result.metrics["val_acc@1"] > 0.6
    assert result.metrics["val_acc@5"] == 1.0 and "val_loss_q3" in result.metrics
    assert latest_weights(tmp_path)[1].name == "model000080.pt"


def test_clean_classifier_with_separate_validation_data(squares, tmp_path):
    val = colored_squares(tmp_path / "val", n=12, seed=1)
    preset = get_training_preset("tiny", "classifier")
    config = ClassifierTrainConfig(
        data=str(squares), **{**preset.train, "iterations": 30, "batch_size": 16, "val_data": str(val), "noised": False,
                              "eval_every": 30, "save_every": 30, "random_crop": False},
    )
    result = fit_classifier(config, default_registry().network_flags(preset), tmp_path / "run", diffusion=preset.noise_flags())
    assert result.metrics["val_acc@1"] > 0.9


def _grads(squares, microbatch, init):
    flags, train = tiny(batch_size=8, microbatch=microbatch)
    config = TrainConfig(data=str(squares), **train)
    task = DiffusionTask(flags, config, init=str(init))
    trainer = Trainer(task.model, config, Dist())
    batch = collate([task.dataset[p] for p in range(8)])
    device_batch = DeviceBatch(to_model_input(batch.images, trainer.device), batch.labels, batch.positions)
    train_step(trainer, task, device_batch, config.micro_size(1))
    return {name: p.grad.clone() for name, p in task.model.named_parameters()}


def test_microbatching_gives_the_full_batch_gradient(squares, pretrained):
    full, micro = _grads(squares, 0, pretrained), _grads(squares, 2, pretrained)
    scale = max(g.abs().max().item() for g in full.values())
    assert scale > 1e-3
    for name in full:
        assert torch.allclose(full[name], micro[name], rtol=0, atol=1e-6 * scale), name


def degenerate_parameters(grads, scale):
    """Parameters whose gradient is mathematically zero (biases right before a per-channel
    GroupNorm): Adam turns their rounding noise into +-lr steps, without effect on the output."""
    return {name for name, g in grads.items() if g.abs().max() < 1e-6 * scale}


@pytest.mark.slow
def test_microbatching_gives_the_same_weights(squares, pretrained, tmp_path):
    flags, train = tiny(batch_size=8, iterations=3, save_every=3, init=str(pretrained))
    results = {}
    for micro in (0, 2):
        run = tmp_path / f"mb{micro}"
        fit_diffusion(TrainConfig(data=str(squares), **{**train, "microbatch": micro}), flags, run)
        results[micro] = load_state_dict(run / "model000003.pt")
    grads = _grads(squares, 0, pretrained)
    skip = degenerate_parameters(grads, max(g.abs().max().item() for g in grads.values()))
    assert len(skip) < 10
    for name, value in results[0].items():
        if name not in skip:
            assert torch.allclose(value, results[2][name], atol=2e-5, rtol=0), name  # moved ~3e-3
    assert [r["loss"] for r in read_metrics(tmp_path / "mb0")] == pytest.approx(
        [r["loss"] for r in read_metrics(tmp_path / "mb2")], rel=1e-5
    )


def test_fp16_overflow_skips_the_step_and_the_ema_update(squares):
    flags, train = tiny(batch_size=4, precision="fp16", ema_rates=(0.5,))
    config = TrainConfig(data=str(squares), **train)
    model = DiffusionTask(flags, config).model
    trainer = Trainer(model, config, Dist())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ema_before = {k: v.clone() for k, v in trainer.ema.state_dict(0.5, model).items()}
    scale = trainer.scaler.get_scale()
    norm, took = trainer.step([lambda: sum(p.sum() for p in trainer.params) * float("inf")])
    assert not took and not torch.isfinite(norm)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(ema_before[k], v) for k, v in trainer.ema.state_dict(0.5, model).items())
    assert trainer.scaler.get_scale() < scale
    norm, took = trainer.step([lambda: sum((p.float() ** 2).sum() for p in trainer.params) * 1e-6])
    assert took and torch.isfinite(norm)
    key = "input_blocks.0.0.weight"
    assert not torch.equal(ema_before[key], trainer.ema.state_dict(0.5, model)[key])


def test_bf16_autocast_gradient_clipping_and_annealing(squares, tmp_path):
    flags, train = tiny(batch_size=4, iterations=4, precision="bf16", grad_clip=0.01, anneal_lr=True, log_every=1, save_every=4)
    fit_diffusion(TrainConfig(data=str(squares), **train), flags, tmp_path)
    records = read_metrics(tmp_path)
    assert [r["lr"] for r in records] == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3])
    assert all(np.isfinite(r["loss"]) for r in records)
    assert load_state_dict(tmp_path / "model000004.pt")["out.2.weight"].dtype == torch.float32


def test_finished_run_is_not_trained_again_and_extends_with_more_steps(squares, tmp_path):
    flags, train = tiny(batch_size=4, iterations=2, save_every=1, keep=1)
    config = TrainConfig(data=str(squares), **train)
    assert fit_diffusion(config, flags, tmp_path).step == 2
    again = fit_diffusion(config, flags, tmp_path)
    assert again.step == again.start_step == 2
    longer = fit_diffusion(config.model_copy(update={"iterations": 3}), flags, tmp_path)
    assert (longer.start_step, longer.step) == (2, 3)
    assert sorted(p.name for p in tmp_path.glob("model*.pt")) == ["model000003.pt"]


def test_fine_tuning_starts_from_init_weights(squares, tmp_path):
    flags, train = tiny(batch_size=4, iterations=1, save_every=1, lr=1e-12, ema_rates=())
    config = TrainConfig(data=str(squares), **train)
    fit_diffusion(config, flags, tmp_path / "a")
    start = load_state_dict(tmp_path / "a" / "model000001.pt")
    start = {k: v + 0.01 for k, v in start.items()}
    torch.save(start, tmp_path / "init.pt")
    fit_diffusion(config.model_copy(update={"init": str(tmp_path / "init.pt")}), flags, tmp_path / "b")
    tuned = load_state_dict(tmp_path / "b" / "model000001.pt")
    assert all(torch.allclose(tuned[k], start[k], atol=1e-6) for k in start)


def test_classifier_flags_reject_more_classes_than_outputs(squares, tmp_path):
    from adm.core.errors import UsageError
    from adm.spec.flags import ClassifierFlags

    preset = get_training_preset("tiny", "classifier")
    flags = parse_flags(ClassifierFlags, {**default_registry().network_flags(preset).flag_dict(), "classifier_num_classes": 2})
    config = ClassifierTrainConfig(data=str(squares), **{**preset.train, "iterations": 1})
    with pytest.raises(UsageError, match="3 classes but the classifier has 2 outputs"):
        fit_classifier(config, flags, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_loader_workers_do_not_change_the_result(squares, tmp_path):
    flags, train = tiny(batch_size=4, iterations=2, save_every=2, random_crop=True)
    for workers in (0, 2):
        fit_diffusion(TrainConfig(data=str(squares), **{**train, "workers": workers}), flags, tmp_path / str(workers))
    a, b = (load_state_dict(tmp_path / w / "model000002.pt") for w in ("0", "2"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_class_conditional_training_from_an_npz(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", rng.integers(0, 255, (6, 20, 20, 3)).astype(np.uint8), np.array([0, 1, 2, 0, 1, 2]))
    flags, train = tiny("tiny-cond", batch_size=2, iterations=1, save_every=1)
    result = fit_diffusion(TrainConfig(data=str(tmp_path / "d.npz"), **train), flags, tmp_path / "run")
    assert result.step == 1 and np.isfinite(result.metrics["loss"])
