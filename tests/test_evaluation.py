"""`adm evaluate` end to end on small images, with an Inception network of RANDOM weights.

The weights are saved in torch-fidelity's format (its own state_dict keys) to a file, so the real
loading path runs: file → torch-fidelity's FeatureExtractorInceptionV3 → the sFID hook. Nothing is
downloaded; torch.hub is booby-trapped while the network is built.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib import format as npy_format
from typer.testing import CliRunner

from adm.cli.main import app
from adm.core.errors import UsageError
from adm.data.images import open_images
from adm.evaluation import (
    METRIC_KEYS,
    compute_statistics,
    evaluate,
    load_inception,
    precision_recall,
)
from adm.evaluation.inception import exact_fp32
from tests_support import run_two_gloo_ranks


def random_inception_weights(path: Path, seed: int = 0) -> Path:
    """A state dict with torch-fidelity's keys and shapes and random (He-scaled) values."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Skeleton(FeatureExtractorInceptionV3):  # builds the layers, ignores the (empty) file
        def load_state_dict(self, *args, **kwargs):
            return None

    empty = path.with_suffix(".empty")
    torch.save({}, empty)
    skeleton = Skeleton("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in skeleton.state_dict().items():
        if key.endswith("conv.weight"):
            value = torch.randn(value.shape, generator=g) * (2.0 / value[0].numel()) ** 0.5
        elif key.startswith("fc."):
            value = torch.randn(value.shape, generator=g) * 0.05
        elif key.endswith("bn.bias"):
            value = torch.randn(value.shape, generator=g) * 0.1
        state[key] = value.clone()
    torch.save(state, path)
    return path


def low_rank_frechet_distance(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """The Fréchet distance between the rows of ``x`` (n << d) and N(mu, sigma), computed exactly
    without a d x d matrix square root: with Σx = AᵀA (A the centred rows over √(n-1)), the non-zero
    eigenvalues of Σx·sigma are those of the n x n matrix A·sigma·Aᵀ. An independent check of the
    evaluator's sqrtm, and 0.03 s instead of a 2048 x 2048 sqrtm (10-20 s here)."""
    a = (x - x.mean(0)) / np.sqrt(len(x) - 1)
    eigenvalues = np.linalg.eigvalsh(a @ sigma @ a.T)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    return float(((x.mean(0) - mu) ** 2).sum() + (a * a).sum() + np.trace(sigma) - 2 * trace_sqrt)


def images(seed: int, n: int, size: int = 32, smooth: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if smooth:  # blurry colour blobs: a different distribution from uniform noise
        low = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float64)
        up = low.repeat(size // 4, 1).repeat(size // 4, 2)
        return np.clip(up + rng.normal(0, 20, up.shape), 0, 255).astype(np.uint8)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Weights, 16 samples, an ADM-format reference (shifted stored stats + 20 images), and the
    expected metrics computed directly from the network's outputs."""
    root = tmp_path_factory.mktemp("evaluate")
    weights = random_inception_weights(root / "weights-inception-random.pth")
    samples = np.concatenate([images(1, 8, smooth=True), images(2, 8)])
    ref_images = images(3, 20)
    np.savez(root / "samples.npz", arr_0=samples)

    def trap(*args, **kwargs):
        raise AssertionError("evaluation must not download anything")

    with pytest.MonkeyPatch.context() as mp:
        import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

        mp.setattr(torch.hub, "load_state_dict_from_url", trap)
        mp.setattr(tf_inception, "load_state_dict_from_url", trap)
        model = load_inception(weights)
        with torch.no_grad():
            s_pool, s_spatial, s_logits = (
                t.double().numpy() for t in model(torch.from_numpy(samples).permute(0, 3, 1, 2))
            )
            r_pool, r_spatial, _ = (
                t.double().numpy() for t in model(torch.from_numpy(ref_images).permute(0, 3, 1, 2))
            )
        # stored "whole-dataset" statistics that differ from those of arr_0 (so using them is visible)
        stored = {
            "mu": r_pool.mean(0) + 0.01,
            "sigma": np.cov(r_pool, rowvar=False) * 1.5,
            "mu_s": r_spatial.mean(0) - 0.01,
            "sigma_s": np.cov(r_spatial, rowvar=False) * 0.5,
        }
        np.savez(root / "ref.npz", arr_0=ref_images, **stored)
        cache = root / "cache"
        events = []
        result = evaluate(
            root / "samples.npz",
            root / "ref.npz",
            inception_weights=weights,
            cache_dir=cache,
            on_progress=events.append,
        )

    p = torch.softmax(torch.from_numpy(s_logits), 1).numpy()
    expected = {
        "inception_score": float(
            np.exp(np.mean(np.sum(p * (np.log(p) - np.log(p.mean(0, keepdims=True))), 1)))
        ),
        "fid": low_rank_frechet_distance(s_pool, stored["mu"], stored["sigma"]),
        "sfid": low_rank_frechet_distance(s_spatial, stored["mu_s"], stored["sigma_s"]),
        **dict(zip(("precision", "recall"), precision_recall(r_pool, s_pool), strict=True)),
        "num_samples": 16,
        "num_ref": 20,
    }
    return {
        "root": root,
        "weights": weights,
        "cache": cache,
        "result": result,
        "expected": expected,
        "events": events,
        "samples": samples,
        "ref_images": ref_images,
        "model": model,
        "pool": (s_pool, r_pool),
    }


@pytest.mark.slow
def test_pipeline_matches_the_network_outputs(setup):
    result, expected = setup["result"], setup["expected"]
    assert list(result) == list(METRIC_KEYS)
    for key in ("inception_score", "fid", "sfid"):
        assert result[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), key
    assert (result["precision"], result["recall"]) == (expected["precision"], expected["recall"])
    assert (result["num_samples"], result["num_ref"]) == (16, 20)
    assert result["fid"] > 0 and result["sfid"] > 0 and result["inception_score"] >= 1
    tasks = {e.task for e in setup["events"]}
    assert {"reference", "samples", "metrics"} <= tasks
    last = [e for e in setup["events"] if e.task == "samples"][-1]
    assert (last.completed, last.total, last.unit) == (16, 16, "img")
    assert len(list((setup["cache"] / "evaluate").glob("ref-*.npz"))) == 1


@pytest.mark.slow
def test_cli_table_json_and_the_reference_cache(setup, monkeypatch):
    root = setup["root"]
    monkeypatch.setenv("ADM_HOME", str(setup["cache"]))  # the cache the library call filled
    out = root / "metrics.json"
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app,
        [
            "evaluate",
            str(root / "samples.npz"),
            "--ref",
            str(root / "ref.npz"),
            "--inception-weights",
            str(setup["weights"]),
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "reference features from the cache" in result.output
    for label in (
        "Inception Score",
        "FID",
        "sFID",
        "Precision",
        "Recall",
        "samples",
        "reference images",
    ):
        assert label in result.output
    assert f"{setup['result']['fid']:.4f}" in result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("warning:")] == [FEW_SAMPLES]
    record = json.loads(out.read_text())
    assert {k: record[k] for k in METRIC_KEYS} == setup["result"]  # same features → same numbers
    assert record["ref"] == str(root / "ref.npz")


FEW_SAMPLES = (
    "warning: FID and sFID from 16 samples: no more than the 2048 features, so their covariance is "
    "singular and the distance mostly reflects how few there are; use more than 2048"
)


@pytest.mark.slow
def test_distances_from_fewer_vectors_than_features_warn(setup):
    # the samples' covariances are singular; the reference's are stored (whole-dataset) statistics
    warnings = [e.message for e in setup["events"] if e.message and e.message.startswith("warning:")]
    assert warnings == [FEW_SAMPLES]
    # a reference of images: its statistics come from its 20 images
    root = setup["root"]
    np.savez(root / "images_ref.npz", arr_0=setup["ref_images"])
    events = []
    evaluate(root / "samples.npz", root / "images_ref.npz", inception_weights=setup["weights"],
             cache_dir=setup["cache"], on_progress=events.append)
    warnings = [e.message for e in events if e.message and e.message.startswith("warning:")]
    assert warnings == [FEW_SAMPLES, FEW_SAMPLES.replace("16 samples", "20 reference images")]


@pytest.mark.slow
def test_make_ref_round_trips(setup, tmp_path):
    from PIL import Image

    folder = tmp_path / "data"
    folder.mkdir()
    pics = images(5, 12)
    for i, pic in enumerate(pics):
        Image.fromarray(pic).save(folder / f"img{i:02d}.png")
    out = tmp_path / "my_ref.npz"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--make-ref",
            str(folder),
            "-o",
            str(out),
            "--max-images",
            "5",
            "--inception-weights",
            str(setup["weights"]),
            "--batch-size",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    with np.load(out, allow_pickle=False) as ref:
        assert sorted(ref.files) == ["arr_0", "mu", "mu_s", "sigma", "sigma_s"]
        np.testing.assert_array_equal(ref["arr_0"], pics[:5])
        stored = {k: ref[k] for k in ("mu", "sigma", "mu_s", "sigma_s")}
    # statistics over ALL 12 images, equal to those computed on the fly (another batch size)
    fly = compute_statistics(open_images(folder), setup["model"], batch_size=12)
    for key in stored:
        np.testing.assert_allclose(stored[key], getattr(fly, key), rtol=1e-5, atol=1e-9)
    with torch.no_grad():
        pool, spatial, _ = (
            t.double().numpy() for t in setup["model"](torch.from_numpy(pics).permute(0, 3, 1, 2))
        )
    np.testing.assert_allclose(stored["mu"], pool.mean(0), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(
        stored["sigma_s"], np.cov(spatial, rowvar=False), rtol=1e-4, atol=1e-9
    )


def test_exact_fp32_disables_tf32_and_restores_the_settings():
    backends = torch.backends
    before = (torch.get_float32_matmul_precision(), backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("high")  # TF32 matmuls through the legacy API
    backends.cudnn.allow_tf32 = True
    try:
        with exact_fp32():
            # legacy and new flags agree (cuBLAS refuses to run otherwise) and say: no TF32
            assert backends.cuda.matmul.allow_tf32 is False
            assert torch.get_float32_matmul_precision() == "highest"
            assert backends.cudnn.conv.fp32_precision == "ieee"
        assert torch.get_float32_matmul_precision() == "high"
        assert backends.cuda.matmul.allow_tf32 is True
        assert backends.cudnn.conv.fp32_precision == "tf32"
    finally:
        torch.set_float32_matmul_precision(before[0])
        backends.cudnn.allow_tf32 = before[1]


# ------------------------------------------------------------------------------ errors


def _npz(path: Path, arr) -> Path:
    np.savez(path, arr_0=arr)
    return path


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output  # progress bars may precede it
    text = " ".join(result.output[result.output.index("error:") :].split())
    for needle in needles:
        assert needle in text, result.output


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("ADM_HOME", str(tmp_path / "home"))  # an empty cache: nothing to find

    def invoke(*args: str):
        return CliRunner(env={"COLUMNS": "400"}).invoke(app, ["evaluate", *map(str, args)])

    return invoke


def test_errors_are_one_line(run, tmp_path):
    good = _npz(tmp_path / "good.npz", images(0, 4))
    _one_line_error(run(_npz(tmp_path / "one.npz", images(0, 1))), "1 image(s)", "at least 2")
    _one_line_error(
        run(_npz(tmp_path / "float.npz", np.zeros((4, 32, 32, 3), np.float32))), "float32", "uint8"
    )
    _one_line_error(run(_npz(tmp_path / "nchw.npz", np.zeros((4, 3, 32, 32), np.uint8))), "NCHW")
    (tmp_path / "bad.npz").write_bytes(os.urandom(1000))
    _one_line_error(run(tmp_path / "bad.npz"), "not a readable npz")
    _one_line_error(run(tmp_path / "missing.npz"), "does not exist")
    big_ref = _npz(tmp_path / "ref64.npz", images(0, 4, size=64))
    _one_line_error(run(good, "--ref", big_ref), "32x32", "64x64")
    _one_line_error(run(good), "no built-in reference batch for 32x32")
    _one_line_error(run(good, "--ref", good), "adm download inception")
    _one_line_error(
        run(_npz(tmp_path / "s64.npz", images(0, 4, size=64))), "adm download ref-imagenet64"
    )
    evil = tmp_path / "evil.pth"
    torch.save({"x": UsageError("not a tensor")}, evil)
    _one_line_error(
        run(good, "--ref", good, "--inception-weights", evil), "not a plain PyTorch state dict"
    )
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pth")
    _one_line_error(
        run(good, "--ref", good, "--inception-weights", tmp_path / "other.pth"), "Inception-v3"
    )
    _one_line_error(run("--make-ref", good), "needs -o")
    _one_line_error(
        run(good, "--make-ref", good, "-o", tmp_path / "x.npz"), "--make-ref takes no SAMPLES"
    )
    _one_line_error(run(), "name the SAMPLES")
    np.savez(tmp_path / "partial.npz", arr_0=images(0, 4), mu=np.zeros(2048))
    _one_line_error(run(good, "--ref", tmp_path / "partial.npz"), "lacks sigma, mu_s, sigma_s")


@pytest.mark.slow
def test_truncated_npz_is_one_line(setup, run, tmp_path):
    path = tmp_path / "short.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("arr_0.npy", "w") as member:
        header = {"descr": "|u1", "fortran_order": False, "shape": (20, 32, 32, 3)}
        npy_format.write_array_header_1_0(member, header)
        member.write(images(0, 16).tobytes())  # 16 of the 20 images the header promises
    result = run(path, "--ref", setup["root"] / "ref.npz", "--inception-weights", setup["weights"])
    _one_line_error(result, "truncated")
    with pytest.raises(UsageError, match="truncated"):
        evaluate(path, setup["root"] / "ref.npz", inception_weights=setup["weights"], cache=False)


# ------------------------------------------------------------------------------ torchrun


@pytest.mark.slow
def test_two_gloo_ranks_give_the_single_process_numbers(setup, tmp_path):
    root = setup["root"]
    out = tmp_path / "dist.json"
    outputs = run_two_gloo_ranks(
        ["-m", "adm.cli", "evaluate", str(root / "samples.npz"), "--ref", str(root / "ref.npz"),
         "--inception-weights", str(setup["weights"]), "--device", "cpu", "--batch-size", "3",
         "--json", str(out)],
        ADM_HOME=str(tmp_path / "home"),
    )
    assert "FID" in outputs[0] and "FID" not in outputs[1]  # only rank 0 reports
    record = json.loads(out.read_text())
    single = setup["result"]
    for key in ("inception_score", "fid", "sfid"):
        assert record[key] == pytest.approx(single[key], rel=1e-4), key
    assert (record["precision"], record["recall"], record["num_samples"], record["num_ref"]) == (
        single["precision"],
        single["recall"],
        16,
        20,
    )
