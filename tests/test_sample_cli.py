"""`adm sample` / `adm upsample` end to end on tiny models whose checkpoints the tests write."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import adm
from adm.api.sources import ModelSource
from adm.cli.main import app
from tiny import CLASSIFIER_FLAGS, MODEL_FLAGS, UPSAMPLER_FLAGS, write_tiny_checkpoints

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))


def guided_args(ckpt, out, *extra):
    return [
        "sample", "--model-flags", MODEL_FLAGS, "--model-path", str(ckpt["model"]),
        "--classifier-flags", CLASSIFIER_FLAGS, "--classifier-path", str(ckpt["classifier"]),
        "--scale", "4", "--steps", "4", "--out", str(out), "--quiet", *extra,
    ]


def invoke(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def load(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def test_npz_format_grid_sidecar_and_balanced_labels(ckpt, tmp_path):
    out = tmp_path / "s.npz"
    invoke(guided_args(ckpt, out, "-n", 12, "-b", 5, "--classes", "balanced"))
    data = load(out)
    assert data["arr_0"].dtype == np.uint8 and data["arr_0"].shape == (12, 16, 16, 3)
    assert data["arr_1"].dtype == np.int64
    assert data["arr_1"].tolist() == [i % 10 for i in range(12)]
    assert out.with_suffix(".png").stat().st_size > 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["grid_labels"] == data["arr_1"].tolist() and meta["key"]["scale"] == 4.0
    assert not Path(str(out) + ".parts").exists(), "shards are removed once the npz is assembled"
    assert len(set(map(bytes, data["arr_0"]))) == 12, "every sample differs"


def test_random_labels_are_uniform_draws_and_listed_classes_cycle(ckpt, tmp_path):
    invoke(guided_args(ckpt, tmp_path / "r.npz", "-n", 40, "-b", 40, "--steps", "2"))
    labels = load(tmp_path / "r.npz")["arr_1"]
    assert labels.min() >= 0 and labels.max() < 10 and len(set(labels.tolist())) > 5
    ids = tmp_path / "ids.txt"
    ids.write_text("3\n7\n")
    invoke(guided_args(ckpt, tmp_path / "l.npz", "-n", 5, "--steps", "2", "--classes", ids))
    assert load(tmp_path / "l.npz")["arr_1"].tolist() == [3, 7, 3, 7, 3]


def test_same_seed_same_images_whatever_the_batch_size(ckpt, tmp_path):
    runs = {}
    for b in (1, 3, 8):
        out = tmp_path / f"b{b}.npz"
        invoke(guided_args(ckpt, out, "-n", 8, "-b", b, "--seed", 7))
        runs[b] = load(out)
    for b in (3, 8):
        assert np.array_equal(runs[b]["arr_0"], runs[1]["arr_0"])
        assert np.array_equal(runs[b]["arr_1"], runs[1]["arr_1"])
    other = tmp_path / "seed8.npz"
    invoke(guided_args(ckpt, other, "-n", 8, "-b", 8, "--seed", 8))
    assert not np.array_equal(load(other)["arr_0"], runs[1]["arr_0"])


def test_ddim_and_unguided_runs(ckpt, tmp_path):
    invoke(guided_args(ckpt, tmp_path / "d.npz", "-n", 3, "--sampler", "ddim", "--steps", "ddim4"))
    invoke(["sample", "--model-flags", MODEL_FLAGS, "--model-path", ckpt["model"], "--scale", "0",
            "--steps", "3", "-n", 2, "--out", tmp_path / "u.npz", "-q"])
    assert load(tmp_path / "u.npz")["arr_0"].shape == (2, 16, 16, 3)


def test_guidance_changes_the_samples(ckpt, tmp_path):
    invoke(guided_args(ckpt, tmp_path / "g.npz", "-n", 4, "--classes", "balanced"))
    invoke(guided_args(ckpt, tmp_path / "g0.npz", "-n", 4, "--classes", "balanced", "--scale", "0"))
    assert not np.array_equal(load(tmp_path / "g.npz")["arr_0"], load(tmp_path / "g0.npz")["arr_0"])


def test_unconditional_model_guided_by_a_classifier_writes_target_labels(ckpt, tmp_path):
    from adm.hub.checkpoints import save_state_dict
    from adm.spec.factory import build_model
    from adm.spec.flags import parse_model_flags
    from tiny import randomize

    flags = MODEL_FLAGS.replace("--class_cond True", "--class_cond False")
    path = tmp_path / "uncond.pt"
    save_state_dict(randomize(build_model(parse_model_flags(flags)), 5).state_dict(), path)
    invoke(["sample", "--model-flags", flags, "--model-path", path, "--classifier-flags", CLASSIFIER_FLAGS,
            "--classifier-path", ckpt["classifier"], "--scale", "10", "--steps", "3", "-n", 3,
            "--classes", "4", "--out", tmp_path / "ug.npz", "-q"])
    assert load(tmp_path / "ug.npz")["arr_1"].tolist() == [4, 4, 4]


def test_python_api_in_memory(ckpt):
    source = ModelSource(model_flags=MODEL_FLAGS, model_path=ckpt["model"], classifier_flags=CLASSIFIER_FLAGS,
                         classifier_path=ckpt["classifier"])
    samples = adm.sample(source=source, scale=2.0, steps="3", num_samples=3, classes="balanced", seed=1)
    assert samples.images.shape == (3, 16, 16, 3) and samples.labels.tolist() == [0, 1, 2]


def test_rerun_of_a_finished_command_does_nothing_and_a_changed_one_is_refused(ckpt, tmp_path):
    out = tmp_path / "s.npz"
    invoke(guided_args(ckpt, out, "-n", 3))
    before = out.stat().st_mtime_ns
    invoke(guided_args(ckpt, out, "-n", 3))
    assert out.stat().st_mtime_ns == before
    parts = Path(str(out) + ".parts")
    parts.mkdir()
    (parts / "run.json").write_text(json.dumps({"key": {"seed": 123}}))
    result = runner.invoke(app, [str(a) for a in guided_args(ckpt, tmp_path / "s.npz", "-n", 4)])
    assert result.exit_code == 2
    assert "holds samples of a different command" in result.output and "seed 123 → 0" in result.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-b", "0"], "--batch-size must be at least 1"),
        (["-n", "0"], "--num-samples must be at least 1"),
        (["--classes", "3,12"], "class id 12 is out of range"),
        (["--sampler", "euler"], "unknown sampler 'euler'"),
        (["--steps", "ddim300"], "ddim"),
        (["--out", "x.txt"], "must name an .npz"),
    ],
)
def test_bad_options_are_one_line_errors(ckpt, tmp_path, extra, message):
    result = runner.invoke(app, [str(a) for a in guided_args(ckpt, tmp_path / "e.npz", *extra)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "e.npz").exists()


def test_missing_preset_checkpoint_names_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ADM_HOME", str(tmp_path / "cache"))
    result = runner.invoke(app, ["sample", "--preset", "imagenet64", "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 2
    assert "adm download 64-cond" in result.output and "Traceback" not in result.output


def test_wrong_checkpoint_for_the_flags_is_explained(ckpt, tmp_path):
    result = runner.invoke(app, ["sample", "--model-flags", MODEL_FLAGS, "--model-path", str(ckpt["upsampler"]),
                                 "--scale", "0", "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 2 and "does not fit the chosen architecture" in result.output


def base_npz(tmp_path, n=5, size=8, labels=True):
    rng = np.random.default_rng(0)
    arrays = {"arr_0": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)}
    if labels:
        arrays["arr_1"] = np.arange(n, dtype=np.int64) % 10
    path = tmp_path / f"base{size}.npz"
    np.savez(path, **arrays)
    return path


def upsample_args(ckpt, base, out, *extra):
    return ["upsample", "--model-flags", UPSAMPLER_FLAGS, "--model-path", ckpt["upsampler"],
            "--base-samples", base, "--steps", "3", "--out", out, "-q", *extra]


def test_upsample_keeps_labels_and_is_batch_independent(ckpt, tmp_path):
    base = base_npz(tmp_path)
    invoke(upsample_args(ckpt, base, tmp_path / "u1.npz", "-b", 1))
    invoke(upsample_args(ckpt, base, tmp_path / "u5.npz", "-b", 5))
    one, five = load(tmp_path / "u1.npz"), load(tmp_path / "u5.npz")
    assert one["arr_0"].shape == (5, 16, 16, 3)
    assert one["arr_1"].tolist() == [0, 1, 2, 3, 4]
    assert np.array_equal(one["arr_0"], five["arr_0"])


def test_upsample_from_a_folder_of_pngs_of_an_unconditional_base(ckpt, tmp_path):
    from PIL import Image

    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    result = runner.invoke(app, [str(a) for a in upsample_args(ckpt, folder, tmp_path / "f.npz")])
    assert result.exit_code == 2 and "carry no labels" in result.output  # the tiny upsampler is class-conditional


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: base_npz(p, size=12), "expects 8x8"),
        (lambda p: base_npz(p, labels=False), "carry no labels"),
        (lambda p: (np.savez(p / "k.npz", images=np.zeros((2, 8, 8, 3), np.uint8)), p / "k.npz")[1], "has no array 'arr_0'"),
        (lambda p: (np.savez(p / "f.npz", arr_0=np.zeros((2, 8, 8, 3), np.float32)), p / "f.npz")[1], "expected uint8"),
        (lambda p: (np.savez(p / "c.npz", arr_0=np.zeros((2, 3, 8, 8), np.uint8)), p / "c.npz")[1], "looks like NCHW"),
        (lambda p: ((p / "bad.npz").write_bytes(b"junk"), p / "bad.npz")[1], "not a readable npz"),
    ],
)
def test_bad_base_samples_are_one_line_errors(ckpt, tmp_path, make, message):
    result = runner.invoke(app, [str(a) for a in upsample_args(ckpt, make(tmp_path), tmp_path / "o.npz")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def subprocess_env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_without_recomputing(ckpt, tmp_path):
    out = tmp_path / "k.npz"
    args = [sys.executable, "-m", "adm.cli", *map(str, guided_args(ckpt, out, "-n", 24, "-b", 2, "--steps", "20"))]
    proc = subprocess.Popen(args, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = Path(str(out) + ".parts")
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("shard-*.npz"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in parts.glob("shard-*.npz")}
    assert 3 <= len(finished) < 12, "killed mid-way"
    assert not out.exists()
    loud = [a for a in args if a != "--quiet"]
    resumed = subprocess.run(loud, env=subprocess_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    reused = 2 * len(finished)
    assert f"{reused} reused, {24 - reused} sampled" in resumed.stdout
    straight = tmp_path / "straight.npz"
    invoke(guided_args(ckpt, straight, "-n", 24, "-b", 5, "--steps", "20"))
    assert np.array_equal(load(out)["arr_0"], load(straight)["arr_0"])
    assert np.array_equal(load(out)["arr_1"], load(straight)["arr_1"])


@pytest.mark.slow
def test_torchrun_two_processes_give_the_single_process_result(ckpt, tmp_path):
    single, double = tmp_path / "one.npz", tmp_path / "two.npz"
    invoke(guided_args(ckpt, single, "-n", 7, "-b", 2))
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "adm.cli",
           *map(str, guided_args(ckpt, double, "-n", 7, "-b", 2, "--device", "cpu"))]
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.array_equal(load(single)["arr_0"], load(double)["arr_0"])
    assert np.array_equal(load(single)["arr_1"], load(double)["arr_1"])


@pytest.fixture()
def tiny_presets(ckpt, tmp_path, monkeypatch):
    from tiny import tiny_registry

    cache = tmp_path / "cache"
    monkeypatch.setenv("ADM_HOME", str(cache))
    registry = tiny_registry(cache, ckpt)
    monkeypatch.setattr("adm.api.generation.default_registry", lambda: registry)
    return registry


def test_preset_from_the_cache_and_the_cascade_in_one_command(tiny_presets, tmp_path):
    out = tmp_path / "c.npz"
    invoke(["sample", "--preset", "tiny", "-n", 3, "--classes", "balanced", "--upsample", "tiny-up", "--out", out])
    base, up = load(out), load(tmp_path / "c-up.npz")
    assert base["arr_0"].shape == (3, 16, 16, 3) and up["arr_0"].shape == (3, 32, 32, 3)
    assert up["arr_1"].tolist() == base["arr_1"].tolist() == [0, 1, 2]
    assert (tmp_path / "c-up.png").is_file()


def test_preset_defaults_and_wrong_kind_of_preset(tiny_presets, tmp_path):
    out = tmp_path / "d.npz"
    invoke(["sample", "--preset", "tiny", "-n", 2, "--out", out])
    assert json.loads(out.with_suffix(".json").read_text())["key"]["scale"] == 2.0  # the preset's scale
    result = runner.invoke(app, ["sample", "--preset", "tiny-up", "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 2 and "is an upsampler" in result.output
    result = runner.invoke(app, ["upsample", "--preset", "tiny", "--base-samples", str(out)])
    assert result.exit_code == 2 and "is not an upsampler" in result.output


def test_download_flag_fetches_missing_checkpoints_from_a_mirror(ckpt, tmp_path, monkeypatch):
    from http_server import FileServer
    from tiny import tiny_registry

    cache = tmp_path / "cache"
    monkeypatch.setenv("ADM_HOME", str(cache))
    registry = tiny_registry(cache, ckpt, import_files=False)
    monkeypatch.setattr("adm.api.generation.default_registry", lambda: registry)
    args = ["sample", "--preset", "tiny", "-n", 2, "--out", tmp_path / "m.npz", "-q"]
    missing = runner.invoke(app, [str(a) for a in args])
    assert missing.exit_code == 2 and "adm download tiny-cond" in missing.output
    with FileServer() as server:
        for path in registry.files.values():
            server.add(f"/{path.name}", path.read_bytes())
        monkeypatch.setenv("ADM_BASE_URL", server.url(""))
        invoke([*args, "--download"])
        # the Python API reports the download through the same progress protocol as the sampling
        monkeypatch.setenv("ADM_HOME", str(tmp_path / "another-cache"))
        events = []
        adm.sample("tiny", num_samples=1, download=True, on_progress=events.append, registry=registry)
    assert load(tmp_path / "m.npz")["arr_0"].shape == (2, 16, 16, 3)
    fetched = {e.task for e in events if e.unit == "B" and e.total and e.completed == e.total}
    assert {"tiny-cond", "tiny-classifier"} <= fetched
    assert any(e.task == "sampling" for e in events)


@pytest.mark.slow
def test_a_trained_run_directory_samples_with_nothing_else(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, arr_0=rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), arr_1=np.arange(8) % 2)
    run = tmp_path / "run"
    invoke(["train", "--preset", "tiny", "--data", data, "--run-dir", run, "--iterations", 2, "--batch-size", 4,
            "--save-every", 2, "--device", "cpu"])
    out = tmp_path / "r.npz"
    invoke(["sample", "--run-dir", run, "-n", 2, "--steps", 3, "--out", out, "-q"])
    assert load(out)["arr_0"].shape == (2, 16, 16, 3)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["key"]["model_weights"]["file"].startswith("ema_")  # the newest checkpoint's EMA
    assert Path(sidecar["weights_files"]["model"]).parent == run
    result = runner.invoke(app, ["sample", "--run-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "n.npz")])
    assert result.exit_code == 2 and "Traceback" not in result.output
