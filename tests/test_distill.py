"""`adm distill` (consistency distillation): the loss and target on a closed-form Gaussian teacher,
the VP student's boundary condition, a few steps end to end through the CLI and the API (a guided
teacher, an EDM teacher), exact resume, the student sampled with `cm`, torchrun."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import adm
from adm.api.distill import resolve_distill, solver_choice, teacher_step
from adm.cli.main import app
from adm.core.distributed import Dist
from adm.core.errors import UsageError
from adm.diffusion.adapters import ConsistencyBoundary, ConsistencyOver, EpsilonVP
from adm.diffusion.continuous import NoiseSchedule
from adm.hub.checkpoints import load_state_dict, save_state_dict
from adm.sampling.batches import Networks
from adm.sampling.settings import SamplerSettings
from adm.spec.factory import build_model, default_sampler, noise_schedule, parameterization
from adm.spec.flags import parse_model_flags
from adm.training.data import open_source
from adm.training.distill import (
    DistillConfig,
    DistillTask,
    distill_levels,
    level_groups,
    level_index,
    pseudo_huber,
    student_flags,
)
from adm.training.metrics import read_metrics
from adm.training.rundir import read_run
from adm.training.trainer import DeviceBatch, Trainer
from tiny import CLASSIFIER_FLAGS, MODEL_FLAGS, randomize, tiny_registry, write_tiny_checkpoints

runner = CliRunner()
BIN = Path(sys.executable).parent
EDM_FLAGS = ("--training_mode edm --image_size 16 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2 "
             "--attention_resolutions 8 --num_head_channels 16 --resblock_updown True --class_cond True --num_classes 10")
FAST = {"iterations": 2, "batch_size": 4, "save_every": 2, "log_every": 1, "workers": 0}


def invoke(*args, code: int = 0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny guided checkpoints (model, classifier) and 40 labelled 16x16 images."""
    root = tmp_path_factory.mktemp("distill")
    paths = write_tiny_checkpoints(root / "ckpt")
    rng = np.random.default_rng(0)
    paths["data"] = root / "data.npz"
    np.savez(paths["data"], rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8), np.arange(40) % 10)
    paths["edm"] = root / "edm.safetensors"
    save_state_dict(randomize(build_model(parse_model_flags(EDM_FLAGS)), 5).state_dict(), paths["edm"])
    return paths


def guided_args(files, run_dir, *extra):
    """`adm distill` of the tiny model guided by the tiny classifier at scale 2."""
    return ["distill", "--teacher-path", files["model"], "--teacher-flags", MODEL_FLAGS, "--classifier-path",
            files["classifier"], "--classifier-flags", CLASSIFIER_FLAGS, "--scale", 2, "--data", files["data"],
            "--run-dir", run_dir, *[x for k, v in FAST.items() for x in (f"--{k.replace('_', '-')}", v)], *extra]


def guided(files, run_dir, **changes):
    """The same distillation through the API."""
    return adm.distill(teacher_path=files["model"], teacher_flags=MODEL_FLAGS, classifier_path=files["classifier"],
                       classifier_flags=CLASSIFIER_FLAGS, scale=2.0, data=str(files["data"]), run_dir=run_dir,
                       **{**FAST, **changes})


def same_files(a: Path, b: Path, names) -> None:
    for name in names:
        left, right = load_state_dict(a / name), load_state_dict(b / name)
        assert left.keys() == right.keys()
        assert all(torch.equal(left[k], right[k]) for k in left), name


# ------------------------------------------------------------------ a closed-form Gaussian teacher

MU, S = 0.2, 0.3  # every pixel of the data is N(MU, S²): the probability-flow ODE is known in closed form
GAUSSIAN_FLAGS = ("--image_size 16 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2 --attention_resolutions 8 "
                  "--num_head_channels 16 --diffusion_steps 100")


def exact_denoiser(x: torch.Tensor, sigma) -> torch.Tensor:
    """E[x_0 | x_0 + σ·z = x] for x_0 ~ N(MU, S²)."""
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def ode_map(x: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    """The probability-flow ODE from σ to σ': (x − MU)/√(S² + σ²) is constant along it."""
    return MU + math.sqrt(S**2 + sigma_next**2) / math.sqrt(S**2 + sigma**2) * (x - MU)


class GaussianNetwork(torch.nn.Module):
    """An ε-prediction VP network whose reading through ``adapter`` is ``target(x, σ)`` exactly (on
    the schedule's network time): the exact denoiser makes the exact teacher, the ODE's map to σ_min
    the exact consistency model."""

    def __init__(self, schedule, adapter, target):
        super().__init__()
        self.schedule, self.adapter, self.target = schedule, adapter, target
        self.unused = torch.nn.Parameter(torch.zeros(()))  # something for an optimizer and an EMA to hold

    def forward(self, x_in, time, y=None):
        sigma = self.schedule.sigma_at(time.double()).view(-1, 1, 1, 1)
        c_skip, c_out, c_in = (c.view(-1, 1, 1, 1) for c in self.adapter.scalings(sigma.flatten()))
        x = x_in.double() / c_in
        out = torch.where(c_out.abs() > 1e-12, (self.target(x, sigma) - c_skip * x) / c_out.where(c_out != 0, 1), 0)
        return (out + 0 * self.unused).float()


def gaussian_teacher(solver: str):
    flags = parse_model_flags(GAUSSIAN_FLAGS)
    schedule, adapter = noise_schedule(flags), parameterization(flags)[0]
    net = GaussianNetwork(schedule, adapter, exact_denoiser)
    nets = Networks(net, schedule, adapter, torch.device("cpu"), (3, 16, 16), 10, False)
    plan = SamplerSettings.make(sampler=solver_choice(solver)[0], clip_denoised=False).plan(schedule)
    return flags, teacher_step(nets, plan, solver)


def slope(sigma: float) -> float:
    """dx/dσ = slope(σ)·(x − MU) along the Gaussian's probability-flow ODE."""
    return sigma / (S**2 + sigma**2)


SOLVER_FACTORS = {  # what each solver makes of x − MU over one step σ → σ' of that linear ODE
    "euler": lambda s, t: 1 + (t - s) * slope(s),
    "heun": lambda s, t: 1 + (t - s) / 2 * (slope(s) + slope(t) * (1 + (t - s) * slope(s))),
}


@pytest.mark.parametrize("solver", ["heun", "euler"])
def test_the_teacher_step_is_the_ode_map_to_the_solver_s_accuracy(solver):
    """One step of the solver with the (exact) teacher is the solver's formula on the ODE, and lands
    within the solver's truncation error of the exact ODE map."""
    _, step = gaussian_teacher(solver)
    x = MU + math.sqrt(S**2 + 2.0**2) * torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for sigma, sigma_next in ((2.0, 1.5), (0.5, 0.45), (0.05, 0.04)):
        got = step(x, sigma, sigma_next, None).double()
        exact = ode_map(x.double(), sigma, sigma_next)
        factor = SOLVER_FACTORS[solver](sigma, sigma_next)
        torch.testing.assert_close(got, MU + factor * (x.double() - MU), rtol=0, atol=1e-5)
        truncation = abs(factor - math.sqrt(S**2 + sigma_next**2) / math.sqrt(S**2 + sigma**2))
        assert float((got - exact).abs().max()) <= truncation * float((x - MU).abs().max()) + 1e-5


def exact_step(x, sigma, sigma_next, labels):
    return ode_map(x, sigma, sigma_next)


def gaussian_task(tmp_path, student, solver: str | None = "heun"):
    """The distillation task with the Gaussian teacher (a solver's step, or the exact ODE map for
    None) and ``student`` as the student's reading."""
    teacher_flags, step = gaussian_teacher(solver or "heun")
    step = step if solver else exact_step
    np.savez(tmp_path / "one.npz", np.zeros((1, 16, 16, 3), np.uint8))
    config = DistillConfig(data=str(tmp_path / "one.npz"), batch_size=8, scales=10, sigma_max=5.0)
    flags = student_flags(teacher_flags, config)
    source = open_source(config.data, image_size=16, need_labels=False)
    task = DistillTask(flags, config, step, source)
    task.model = GaussianNetwork(noise_schedule(flags), task.adapter, student)
    return task, Trainer(task.model, config, Dist()), flags


def losses_by_step(task, trainer, steps=6):
    out = []
    for s in range(steps):
        x0 = MU + S * torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(s))
        batch = DeviceBatch(x0, torch.full((8,), -1), list(range(8 * s, 8 * s + 8)))
        sums = task.micro(trainer, batch).sums
        out.append((float(sums["loss"][0]) / 8, float(sums["mse"][0]) / 8))
    return out


def test_the_ode_map_is_the_fixed_point_of_the_consistency_loss(tmp_path):
    """A student equal to the ODE's map to σ_min has no loss at any level with the exact ODE step
    as the teacher, and only the solver's truncation with Heun's; the teacher's denoiser (what the
    student starts as) has a large one."""
    sigma_min = noise_schedule(gaussian_task(tmp_path, exact_denoiser)[2]).sigma_min

    def consistency(x, sigma):
        return MU + math.sqrt(S**2 + sigma_min**2) / torch.sqrt(S**2 + sigma**2) * (x - MU)

    exact = losses_by_step(*gaussian_task(tmp_path, consistency, solver=None)[:2])
    heun = losses_by_step(*gaussian_task(tmp_path, consistency)[:2])
    denoiser = losses_by_step(*gaussian_task(tmp_path, exact_denoiser)[:2])
    assert max(mse for _, mse in exact) < 1e-12 and max(loss for loss, _ in exact) < 1e-6
    for (loss, _), (worse, _) in zip(heun, denoiser, strict=True):
        assert loss < 0.1 * worse
    assert min(loss for loss, _ in denoiser) > 0.1


def test_levels_are_the_cm_sampler_s_grid_and_drawn_per_step():
    flags = student_flags(parse_model_flags(GAUSSIAN_FLAGS), DistillConfig(data="x", sigma_max=5.0))
    levels = distill_levels(flags, 18)
    schedule = noise_schedule(flags)
    assert float(levels[0]) == pytest.approx(5.0, rel=1e-12) and len(levels) == 18
    assert float(levels[-1]) == pytest.approx(schedule.sigma_min, rel=1e-12)
    from adm.diffusion.grids import consistency_grid

    # the cm sampler's grid of karras_steps = N levels is the distillation's, index for index
    torch.testing.assert_close(consistency_grid(schedule, "0,9", 18)[:2], levels[[0, 9]], rtol=0, atol=0)
    drawn = [level_index(3, step, 18) for step in range(400)]
    assert set(drawn) == set(range(17)) and drawn == [level_index(3, step, 18) for step in range(400)]
    # a step's batch is split by place into near-equal groups, each with its own level
    assert level_groups(range(32), 32, 4) == [g for g in range(4) for _ in range(8)]
    assert level_groups(range(10), 10, 4) == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert level_groups(range(3), 3, 8) == [0, 1, 2]  # at most one group per sample
    assert level_groups([8, 9], 32, 4) == [1, 1]  # a micro-batch's places give the full batch's groups
    per_step = {level_index(3, 7, 18, group) for group in range(4)}
    assert len(per_step) > 1


def test_pseudo_huber_is_song_and_dhariwal_s():
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    c = 0.00054 * math.sqrt(48)
    torch.testing.assert_close(pseudo_huber(48)(a, b), torch.full((2,), math.sqrt(48 * 0.25 + c * c) - c))
    assert float(pseudo_huber(48)(a, a).max()) == 0.0


# ------------------------------------------------------------------ the VP student's parameterisation


def test_a_vp_student_is_the_identity_at_sigma_min_and_the_teacher_s_x0_high_up():
    teacher = parse_model_flags(MODEL_FLAGS)
    flags = student_flags(teacher, DistillConfig(data="x"))
    assert flags.family == "guided-diffusion" and flags.training_mode == "consistency_distillation"
    assert not flags.is_karras and flags.is_consistency and default_sampler(flags) == "cm"
    schedule, adapter = noise_schedule(flags), parameterization(flags)[0]
    assert isinstance(adapter, ConsistencyOver) and isinstance(adapter.inner, EpsilonVP)
    assert schedule.sigma_min == flags.sigma_min == NoiseSchedule.create("linear", 100).sigma_min
    net = randomize(build_model(teacher), 1).eval()
    inner, _ = parameterization(teacher)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 2])
    with torch.no_grad():
        low = torch.full((2,), flags.sigma_min, dtype=torch.float64)
        f_low = adapter.denoise(net, schedule.network_time(low).float(), x, low, y=y)[0]
        assert torch.equal(f_low, x)  # f(x, σ_min) = x exactly
        high = torch.full((2,), 80.0, dtype=torch.float64)
        time = schedule.network_time(high).float()
        f_high, x0 = adapter.denoise(net, time, x * 80, high, y=y)[0], inner.denoise(net, time, x * 80, high, y=y)[0]
        b = float(adapter.boundary(torch.tensor(80.0)))
        assert b < 1e-4
        torch.testing.assert_close(f_high, x0, rtol=0, atol=2 * b * float((x * 80 - x0).abs().max()))


def test_student_flags_check_the_teacher_and_the_range():
    teacher = parse_model_flags(MODEL_FLAGS)
    with pytest.raises(UsageError, match="outside the teacher's noise levels"):
        student_flags(teacher, DistillConfig(data="x", sigma_max=1e4))
    with pytest.raises(UsageError, match="already a consistency model"):
        student_flags(student_flags(teacher, DistillConfig(data="x")), DistillConfig(data="x"))
    with pytest.raises(UsageError, match="upsampler"):
        student_flags(parse_model_flags("--large_size 32 --small_size 16 --num_channels 32 --channel_mult 1,2"),
                      DistillConfig(data="x"))
    edm = student_flags(parse_model_flags(EDM_FLAGS), DistillConfig(data="x", sigma_max=40))
    assert edm.family == "consistency-models" and edm.sigma_max == 40 and edm.sigma_min == 0.002
    assert isinstance(parameterization(edm)[0], ConsistencyBoundary)
    assert student_flags(teacher, DistillConfig(data="x", dropout=0.2)).dropout == 0.2
    # a VP family says consistency_distillation only; the recorded flags parse back to the same student
    student = student_flags(teacher, DistillConfig(data="x", sigma_max=10))
    assert parse_model_flags(student.flag_dict()) == student
    with pytest.raises(UsageError, match="does not fit"):
        parse_model_flags(f"{MODEL_FLAGS} --family guided-diffusion --training_mode consistency_training")
    for bad in ("heun --sampler-opt", "dpm++2m-sde", "ddim", "cm"):
        with pytest.raises(UsageError):
            solver_choice(bad)
    assert solver_choice("euler") == ("dpm++2m", {"order": 1})


def test_the_target_ema_is_one_of_the_trainer_s_emas():
    assert DistillConfig(data="x").ema_rates == (0.999, 0.95)
    assert DistillConfig(data="x", ema_rates=(0.95, 0.9)).ema_rates == (0.95, 0.9)
    assert DistillConfig(data="x", target_ema=0.9, ema_rates=()).ema_rates == (0.9,)


def test_ddpm_and_ddim_refuse_a_vp_student_when_the_plan_is_made():
    flags = student_flags(parse_model_flags(MODEL_FLAGS), DistillConfig(data="x", sigma_max=10))
    schedule = noise_schedule(flags)
    for sampler in ("ddpm", "ddim"):
        with pytest.raises(UsageError, match="discrete Gaussian chain"):
            SamplerSettings(sampler=sampler).plan(schedule)
    plan = SamplerSettings(sampler="cm", steps="1").plan(schedule)
    assert plan.sigmas.tolist() == pytest.approx([10.0, 0.0], rel=1e-12)  # from where it was distilled from


# ------------------------------------------------------------------ end to end


def test_a_guided_teacher_distils_through_the_cli_and_the_api_alike(files, tmp_path):
    invoke(*guided_args(files, tmp_path / "cli"))
    result = guided(files, tmp_path / "api")
    assert result.step == 2 and math.isfinite(result.metrics["loss"])
    same_files(tmp_path / "cli", tmp_path / "api", ["model000002.pt", "ema_0.95_000002.pt", "ema_0.999_000002.pt"])
    doc = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert doc["kind"] == "distillation" and doc["model_flags"]["training_mode"] == "consistency_distillation"
    teacher = doc["teacher"]
    assert teacher["guidance"] == [{"method": "classifier", "scale": 2.0, "interval": [0.0, 1.0]}]
    assert teacher["model_weights"]["sha256"] and teacher["classifier_weights"]["sha256"]
    assert doc["train"]["teacher_solver"] == "heun" and doc["train"]["ema_rates"] == [0.999, 0.95]
    # the student moved away from its teacher, keys and shapes unchanged
    start, now = load_state_dict(files["model"]), load_state_dict(tmp_path / "cli" / "model000002.pt")
    assert start.keys() == now.keys() and any(not torch.equal(start[k], now[k]) for k in start)


def test_dry_run_prints_the_run_and_writes_nothing(files, tmp_path):
    result = invoke(*guided_args(files, tmp_path / "run", "--sigma-max", 10, "--dry-run"))
    doc = json.loads(result.output)
    assert doc["model_flags"]["sigma_max"] == 10.0 and doc["teacher"]["source"]["model_path"] == str(files["model"])
    assert not (tmp_path / "run").exists()


def test_the_student_samples_with_cm_in_one_and_two_steps(files, tmp_path):
    guided(files, tmp_path / "run", sigma_max=10.0)
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    flags = " ".join(f"--{k} {v}" for k, v in doc["model_flags"].items() if v != "")
    for steps, evaluations in (("1", 1), ("2", 2), ("0,9", 2)):
        out = tmp_path / f"s{steps}.npz"
        invoke("sample", "--model-flags", flags, "--model-path", tmp_path / "run" / "ema_0.999_000002.pt",
               "--steps", steps, "--sampler-opt", "karras_steps=18", "-n", 3, "--out", out, "-q")
        sidecar = json.loads(out.with_suffix(".json").read_text())
        assert sidecar["key"]["sampler"] == "cm" and sidecar["evaluations"] == evaluations  # cm: the default
        assert sidecar["key"]["grid"][0] == pytest.approx(10.0, rel=1e-12)


def test_a_resumed_distillation_is_bitwise_the_straight_one(files, tmp_path):
    """Straight to 4 steps, and 2 then 2 more: the second call takes the teacher, its guidance and
    the options from the run dir (only --iterations given), and the weights, both EMAs (the target
    among them) and the optimizer state come out identical."""
    guided(files, tmp_path / "straight", iterations=4, save_every=2)
    guided(files, tmp_path / "resumed", iterations=2)
    invoke("distill", "--run-dir", tmp_path / "resumed", "--iterations", 4)
    same_files(tmp_path / "straight", tmp_path / "resumed",
               ["model000004.pt", "ema_0.95_000004.pt", "ema_0.999_000004.pt"])
    one = torch.load(tmp_path / "straight" / "opt000004.pt", weights_only=True)["state"]
    two = torch.load(tmp_path / "resumed" / "opt000004.pt", weights_only=True)["state"]
    assert all(torch.equal(one[k][n], two[k][n]) for k in one for n in ("exp_avg", "exp_avg_sq"))
    assert [r["loss"] for r in read_metrics(tmp_path / "straight")] == [r["loss"] for r in read_metrics(tmp_path / "resumed")]


def test_a_run_continues_only_with_its_own_teacher(files, tmp_path):
    guided(files, tmp_path / "run")
    line = error_line(invoke(*guided_args(files, tmp_path / "run", "--scale", 3, "--iterations", 4), code=2))
    assert "distilled from another teacher (guidance differs)" in line
    line = error_line(invoke(*guided_args(files, tmp_path / "run", "--sigma-max", 10, "--iterations", 4), code=2))
    assert "--sigma_max" in line  # another student: its flags differ
    with pytest.raises(UsageError, match="started and continued with its teacher by adm distill"):
        adm.training.train_task("distillation", run_dir=tmp_path / "run", iterations=4)


def test_the_student_run_dir_samples_as_any_generator(files, tmp_path):
    guided(files, tmp_path / "run", sigma_max=10.0)
    for steps, evaluations in (("1", 1), ("2", 2)):
        out = tmp_path / f"r{steps}.npz"
        invoke("sample", "--run-dir", tmp_path / "run", "--steps", steps, "-n", 3, "--out", out, "-q")
        sidecar = json.loads(out.with_suffix(".json").read_text())
        assert sidecar["key"]["sampler"] == "cm" and sidecar["evaluations"] == evaluations
        assert sidecar["key"]["grid"][0] == pytest.approx(10.0, rel=1e-12)
    # a checkpoint of the run dir given alone takes the run's recorded flags; the API agrees with the CLI
    path = tmp_path / "run" / "ema_0.999_000002.pt"
    api = adm.sample(source=adm.ModelSource(model_path=path), steps="1", num_samples=3)
    assert np.array_equal(api.images, np.load(tmp_path / "r1.npz")["arr_0"])


def test_the_student_run_dir_samples_on_the_grid_it_was_distilled_on(files, tmp_path):
    """--steps 2 of a student run dir spreads over its own --scales levels (the distillation task's
    sampler defaults), unless the user names another grid."""
    guided(files, tmp_path / "run", sigma_max=10.0, scales=12)
    flags = read_run(tmp_path / "run").flags
    trained = distill_levels(flags, 12)
    for extra, level in (((), float(trained[round(11 / 2)])), (("--sampler-opt", "karras_steps=40"), None)):
        out = tmp_path / f"g{len(extra)}.npz"
        invoke("sample", "--run-dir", tmp_path / "run", "--steps", 2, "-n", 2, "--out", out, "-q", *extra)
        grid = json.loads(out.with_suffix(".json").read_text())["key"]["grid"]
        if level is not None:
            assert grid[1] == pytest.approx(level, rel=1e-9)
        else:
            assert grid[1] != pytest.approx(float(trained[round(11 / 2)]), rel=1e-3)


def test_a_distillation_is_watched_as_adm_train_and_keeps_its_weights(files, tmp_path):
    """--sample-every draws the student's grid (cm, on its grid) without changing what it learns."""
    invoke(*guided_args(files, tmp_path / "watched", "--sigma-max", 10, "--sample-every", 2, "--sample-count", 4))
    guided(files, tmp_path / "plain", sigma_max=10.0)
    assert (tmp_path / "watched" / "samples" / "000002.png").is_file()
    assert (tmp_path / "watched" / "samples" / "latest.png").is_file()
    same_files(tmp_path / "watched", tmp_path / "plain", ["model000002.pt", "ema_0.95_000002.pt"])


def test_an_edm_teacher_distils_into_consistency_models_format(files, tmp_path):
    result = adm.distill(teacher_path=files["edm"], teacher_flags=EDM_FLAGS, data=str(files["data"]),
                         run_dir=tmp_path, teacher_solver="euler", **FAST)
    assert result.step == 2
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["model_flags"]["family"] == "consistency-models"
    assert doc["model_flags"]["training_mode"] == "consistency_distillation" and doc["model_flags"]["sigma_max"] == 80


def test_bad_requests_are_one_line_errors(files, tmp_path):
    assert "no teacher given" in error_line(invoke("distill", "--data", files["data"], "--run-dir", tmp_path / "r", code=2))
    assert "not a deterministic ODE solver" in error_line(
        invoke(*guided_args(files, tmp_path / "r", "--teacher-solver", "dpm++2m-sde"), code=2))
    assert "did you mean digits" in error_line(
        invoke("distill", "--teacher", "digitz", "--data", files["data"], "--run-dir", tmp_path / "r", code=2))
    with pytest.raises(UsageError, match="sampling option"):
        guided(files, tmp_path / "r", sampler="heun")
    with pytest.raises(UsageError, match="unknown option"):
        guided(files, tmp_path / "r", itertions=3)
    gray = tmp_path / "gray.npz"
    np.savez(gray, np.zeros((4, 16, 16, 1), np.uint8), np.arange(4))
    assert "--data has 1-channel images but the teacher makes 3-channel ones" in error_line(
        invoke(*guided_args(files, tmp_path / "r", "--data", gray), code=2))
    assert not (tmp_path / "r").exists()


def test_a_preset_teacher_is_guided_as_adm_sample_guides_it(files, tmp_path, monkeypatch):
    monkeypatch.setenv("ADM_HOME", str(tmp_path / "cache"))
    registry = tiny_registry(tmp_path / "cache", files)
    run = resolve_distill("tiny", run_dir=tmp_path / "run", data=str(files["data"]), registry=registry, **FAST)
    assert run.document["teacher"]["guidance"][0]["scale"] == 2.0  # the preset's classifier scale
    assert run.document["teacher"]["model"] == "tiny"
    unguided = resolve_distill("tiny", run_dir=tmp_path / "run", data=str(files["data"]), registry=registry,
                               scale=0.0, **FAST)
    assert unguided.document["teacher"]["guidance"] == []


@pytest.mark.slow
def test_two_processes_give_the_single_process_update(files, tmp_path):
    single = tmp_path / "one"
    invoke(*guided_args(files, single, "--device", "cpu"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "adm.cli",
           *map(str, guided_args(files, tmp_path / "two", "--device", "cpu"))]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    losses = [[r["loss"] for r in read_metrics(run)] for run in (single, tmp_path / "two")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)  # the same levels, noise and teacher steps
    one, two = load_state_dict(single / "model000002.pt"), load_state_dict(tmp_path / "two" / "model000002.pt")
    moved = load_state_dict(files["model"])
    # Adam turns rounding noise into ±lr steps where the gradient is ~0 (biases before a GroupNorm):
    # those may differ by a few lr; every other parameter agrees far below one step
    close = [k for k in one if torch.allclose(one[k], two[k], rtol=0, atol=2e-5)]
    assert len(close) > 0.9 * len(one) and all(torch.allclose(one[k], two[k], rtol=0, atol=5e-4) for k in one)
    assert max(float((one[k] - moved[k]).abs().max()) for k in one) > 1e-4
