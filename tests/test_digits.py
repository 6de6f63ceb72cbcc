"""The offline digits demo: dataset, judge, bundled artifacts, the recipe in a shortened form."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from adm.cli.main import app
from adm.core.errors import ChecksumError
from adm.data.digits import load_digits
from adm.evaluation.digits_judge import Judge, evaluate_digits, judge, train_judge
from adm.hub.download import ensure_artifact
from adm.presets import Artifact, Registry

runner = CliRunner()


def test_digits_dataset_shape_labels_and_split():
    digits = load_digits()
    assert digits.images.shape == (1797, 16, 16, 3) and digits.images.dtype == np.uint8
    assert sorted(set(digits.labels.tolist())) == list(range(10))
    train, heldout = digits.split("train"), digits.split("heldout")
    assert len(train.labels) + len(heldout.labels) == 1797 and len(heldout.labels) == 359
    assert (digits.images[..., 0] == digits.images[..., 2]).all()  # grey ink in RGB


def test_adm_data_digits_writes_npz_and_pngs(tmp_path):
    result = runner.invoke(app, ["data", "digits", str(tmp_path / "d.npz"), "--split", "heldout"])
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "d.npz") as data:
        assert data["arr_0"].shape == (359, 16, 16, 3) and data["arr_1"].shape == (359,)
    result = runner.invoke(app, ["data", "digits", str(tmp_path / "png"), "--format", "png", "--split", "heldout"])
    assert result.exit_code == 0
    names = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert len(names) == 359 and names[0].startswith("0_")
    bad = runner.invoke(app, ["data", "digits", str(tmp_path / "x"), "--split", "test"])
    assert bad.exit_code == 2 and "unknown split" in bad.output


def test_an_unwritable_output_is_one_line_and_nothing_is_left(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = runner.invoke(app, ["data", "digits", str(tmp_path / "a-file" / "d.npz")])
    assert result.exit_code == 2
    assert "a-file" in result.output and "not a folder" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.fixture(scope="module")
def quick_judge(tmp_path_factory):
    digits = load_digits()
    referee = Judge.fit_statistics(train_judge(digits.split("train"), epochs=3), digits)
    return referee, referee.save(tmp_path_factory.mktemp("judge") / "judge.safetensors")


def test_judge_reads_real_digits_and_round_trips(quick_judge):
    referee, path = quick_judge
    heldout = load_digits().split("heldout")
    predicted, _ = judge(referee.net, heldout.images)
    assert (predicted == heldout.labels).mean() > 0.8, "even 3 epochs read held-out digits well above chance"
    again = Judge.load(path)
    assert np.allclose(again.real_mu, referee.real_mu)
    real = referee.score(heldout.images, heldout.labels)
    noise = referee.score(np.random.default_rng(0).integers(0, 256, (200, 16, 16, 3), dtype=np.uint8), None)
    assert noise.digits_fd > 10 * real.digits_fd and noise.accuracy is None


def test_evaluate_metric_digits(quick_judge, tmp_path):
    _, path = quick_judge
    heldout = load_digits().split("heldout")
    np.savez(tmp_path / "s.npz", arr_0=heldout.images, arr_1=heldout.labels)
    direct = evaluate_digits(tmp_path / "s.npz", path)
    result = runner.invoke(app, ["evaluate", str(tmp_path / "s.npz"), "--judge", str(path), "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert "digits-FD" in result.output
    assert json.loads((tmp_path / "m.json").read_text())["digits_fd"] == pytest.approx(direct["digits_fd"])
    wrong = runner.invoke(app, ["evaluate", str(tmp_path / "s.npz"), "--metric", "bogus"])
    assert wrong.exit_code == 2 and "unknown metric" in wrong.output


def test_bundled_artifacts_resolve_inside_the_package_and_are_verified():
    import hashlib
    from pathlib import Path

    import adm

    typed = Path(adm.__file__).with_name("py.typed")
    digest = hashlib.sha256(typed.read_bytes()).hexdigest()
    good = Artifact(name="typed", url="package:adm/py.typed", filename="py.typed", sha256=digest)
    bad = Artifact(name="bad", url="package:adm/py.typed", filename="py.typed", sha256="0" * 64)
    registry = Registry()
    registry.add_artifact(good)
    registry.add_artifact(bad)
    assert ensure_artifact("typed", registry=registry) == typed
    with pytest.raises(ChecksumError):
        ensure_artifact("bad", registry=registry)


@pytest.mark.slow
def test_the_recipe_runs_end_to_end_in_a_shortened_form(tmp_path):
    result = runner.invoke(app, ["recipe", "digits", str(tmp_path), "--quick"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "recipe.json").read_text())
    assert [row["scale"] for row in report["guidance"]] == [0.0, 2.0]
    assert report["numbers"]["diffusion_steps_trained"] == 20
    for name in ("digits_model.safetensors", "digits_classifier.safetensors", "digits_judge.safetensors"):
        assert (tmp_path / "assets" / name).stat().st_size > 0
    assert (tmp_path / "runs" / "digits" / "config.json").is_file()


def judge_scores(npz):
    referee = Judge.load(ensure_artifact("digits-judge"))
    with np.load(npz) as data:
        return referee.score(data["arr_0"], data["arr_1"])


def test_adm_sample_preset_digits_with_no_other_argument(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADM_HOME", str(tmp_path / "empty-cache"))  # nothing cached, nothing downloaded
    result = runner.invoke(app, ["sample", "--preset", "digits"])
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "digits_samples.npz") as data:
        assert data["arr_0"].shape == (50, 16, 16, 3)
        assert data["arr_1"].tolist() == [i % 10 for i in range(50)]
    assert (tmp_path / "digits_samples.png").is_file()
    assert judge_scores(tmp_path / "digits_samples.npz").accuracy >= 0.9


def test_guidance_raises_judge_accuracy_over_scale_zero(tmp_path):
    # A coarse 4-step chain leaves the conditional model room for mistakes (docs/digits.md).
    accuracy = {}
    for scale in ("0", "4"):
        out = tmp_path / f"s{scale}.npz"
        result = runner.invoke(app, ["sample", "--preset", "digits", "--sampler", "ddpm", "--scale", scale, "--steps", "4", "-n", "200",
                                     "--seed", "0", "--out", str(out), "-q"])
        assert result.exit_code == 0, result.output
        accuracy[scale] = judge_scores(out).accuracy
    assert accuracy["4"] >= accuracy["0"] + 0.02, accuracy


def test_download_of_a_bundled_preset_needs_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("ADM_HOME", str(tmp_path))
    result = runner.invoke(app, ["download", "digits"])
    assert result.exit_code == 0, result.output
    assert "ships with adm" in result.output
