"""`adm evaluate --metric digits`: what --ref means, labels it cannot score, too few samples (issue 20).

Runs the shipped judge (a bundled artifact, nothing downloaded) on real digits.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from adm.cli.main import app
from adm.data.digits import load_digits
from adm.evaluation.digits_judge import FEATURES, Judge, evaluate_digits, judge
from adm.evaluation.stats import frechet_distance, mean_and_cov
from adm.hub.download import ensure_artifact

runner = CliRunner(env={"COLUMNS": "300"})


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    heldout = load_digits().split("heldout")
    x, y = heldout.images, heldout.labels
    files = {
        "heldout": (x, y),
        "first200": (x[:200], y[:200]),
        "last150": (x[-150:], y[-150:]),
        "twelve": (x[:12], y[:12]),
    }
    paths = {}
    for name, (images, labels) in files.items():
        paths[name] = root / f"{name}.npz"
        np.savez(paths[name], images, labels)
    return {"root": root, "paths": paths, "images": x, "labels": y, "judge": ensure_artifact("digits-judge")}


def _fd(referee: Judge, a: np.ndarray, b: np.ndarray) -> float:
    (mu1, s1), (mu2, s2) = (mean_and_cov(judge(referee.net, x)[1]) for x in (a, b))
    return frechet_distance(mu1, s1, mu2, s2)


def _evaluate(*args):
    return runner.invoke(app, ["evaluate", *map(str, args)])


def _warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


def test_ref_is_the_set_digits_fd_is_measured_against(digits, tmp_path):
    paths, referee = digits["paths"], Judge.load(digits["judge"])
    out = tmp_path / "m.json"
    result = _evaluate(paths["first200"], "--ref", paths["last150"], "--json", out)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    want = _fd(referee, digits["images"][:200], digits["images"][-150:])
    assert record["digits_fd"] == pytest.approx(want, rel=1e-9)
    assert record["ref"] == str(paths["last150"]) and str(paths["last150"]) in result.stdout
    # without --ref: the real digits, and the JSON says so
    result = _evaluate(paths["first200"], "--json", out)
    assert result.exit_code == 0, result.output
    default = json.loads(out.read_text())
    assert default["digits_fd"] == pytest.approx(referee.score(digits["images"][:200], None).digits_fd, rel=1e-9)
    assert default["digits_fd"] != pytest.approx(record["digits_fd"], rel=1e-3)
    assert default["ref"] == "the real digits (built in)" and "real digits" in result.stdout
    # the same set as its own reference is at distance 0
    assert evaluate_digits(paths["first200"], digits["judge"], ref=paths["first200"])["digits_fd"] == pytest.approx(0, abs=1e-6)


def test_a_reference_the_judge_cannot_read_is_one_line(digits, tmp_path):
    heldout = digits["paths"]["heldout"]
    np.savez(tmp_path / "stats.npz", mu=np.zeros(2048), sigma=np.eye(2048), mu_s=np.zeros(2023), sigma_s=np.eye(2023))
    np.savez(tmp_path / "big.npz", np.zeros((4, 32, 32, 3), np.uint8))
    np.savez(tmp_path / "one.npz", digits["images"][:1])
    for ref, needle in (
        (tmp_path / "stats.npz", "stats.npz holds Inception statistics but no images"),
        (tmp_path / "big.npz", "the digits judge reads 16x16 images; reference"),
        (tmp_path / "one.npz", "holds 1 image(s); a Fréchet distance needs at least 2"),
        (tmp_path / "missing.npz", "reference"),
    ):
        result = _evaluate(heldout, "--ref", ref)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr


@pytest.mark.parametrize("bad", [99, -1, 10])
def test_labels_the_judge_has_no_class_for_are_refused(digits, tmp_path, bad):
    labels = digits["labels"].copy()
    labels[7] = bad
    path = tmp_path / "bad.npz"
    np.savez(path, digits["images"], labels)
    result = _evaluate(path)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {path}: label {bad} (image 7) is out of range for the digits judge's 10 classes (0..9)"]
    # fewer labels than images cannot be scored either
    np.savez(path, digits["images"], digits["labels"][:5])
    result = _evaluate(path)
    assert result.exit_code == 2 and "arr_1 holds 5 labels for 359 images" in result.stderr


def test_a_distance_from_too_few_vectors_warns_on_one_line(digits):
    paths = digits["paths"]
    result = _evaluate(paths["twelve"])
    assert result.exit_code == 0, result.output
    assert _warnings(result) == [
        f"warning: digits-FD from 12 samples: no more than the {FEATURES} features, so their covariance is "
        f"singular and the distance mostly reflects how few there are; use more than {FEATURES}"
    ]
    result = _evaluate(paths["heldout"], "--ref", paths["twelve"])
    assert result.exit_code == 0 and len(_warnings(result)) == 1 and "from 12 reference images" in _warnings(result)[0]
    for enough in (_evaluate(paths["last150"]), _evaluate(paths["heldout"], "--ref", paths["last150"])):
        assert enough.exit_code == 0 and _warnings(enough) == []
    # the library reports it (it never prints)
    events = []
    evaluate_digits(paths["twelve"], digits["judge"], on_progress=events.append)
    assert [e.message for e in events] == [_warnings(_evaluate(paths["twelve"]))[0]]
