"""One `adm sample --preset digits` does each piece of work once (issue 12).

Counted in-process: preset look-ups, schedule and process builds, entry-point scans for
samplers, checkpoint reads and fingerprints, packaged-file hashes, and the files written.
"""

from __future__ import annotations

import collections
import functools
import inspect

import numpy as np
import pytest
from typer.testing import CliRunner

import adm
from adm.cli.main import app


@pytest.fixture()
def count(monkeypatch):
    """Every function below wrapped so its calls are tallied by what it does."""
    from adm.api import models, sources
    from adm.diffusion import continuous
    from adm.diffusion.continuous import NoiseSchedule
    from adm.diffusion.process import GaussianProcess
    from adm.hub import artifacts
    from adm.presets.registry import Registry
    from adm.sampling import registry

    calls: collections.Counter = collections.Counter()

    def wrap(owner, attribute: str, name: str) -> None:
        original = inspect.getattr_static(owner, attribute)
        func = original.__func__ if isinstance(original, classmethod) else original

        @functools.wraps(func)
        def counted(*args, **kwargs):
            calls[name] += 1
            return func(*args, **kwargs)

        monkeypatch.setattr(owner, attribute, classmethod(counted) if isinstance(original, classmethod) else counted)

    # as a fresh process: the sampler scan and the packaged-file checks are cached per process
    monkeypatch.setattr(registry, "available_samplers", functools.cache(registry.available_samplers.__wrapped__))
    artifacts._matches.cache_clear()
    wrap(Registry, "preset", "preset look-ups")
    wrap(NoiseSchedule, "create", "schedules built")
    wrap(GaussianProcess, "create", "processes built from flags")
    wrap(continuous, "respace", "chains respaced")
    wrap(registry, "entry_points", "entry-point scans")
    wrap(models, "load_state_dict", "checkpoints read")
    wrap(sources, "file_fingerprint", "weights fingerprinted")
    wrap(artifacts, "sha256_file", "packaged files hashed")
    wrap(np, "savez", "npz files written")
    yield calls
    artifacts._matches.cache_clear()


@pytest.mark.parametrize("sampler, chains", [("dpm++2m-sde", 0), ("ddpm", 1)])
def test_adm_sample_does_each_piece_of_work_once(count, tmp_path, sampler, chains):
    args = ["sample", "--preset", "digits", "--sampler", sampler, "--steps", "4", "-n", "4", "-b", "2",
            "--out", str(tmp_path / "s.npz"), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert count == collections.Counter({
        "preset look-ups": 1,
        "schedules built": 1,
        "processes built from flags": 0,  # the samplers walk the schedule (LoadedModel.process is lazy)
        "chains respaced": chains,  # ddpm walks the original's respaced chain: built once per run
        "entry-point scans": 1,
        "checkpoints read": 2,  # the model and the classifier
        "weights fingerprinted": 2,  # for the run's key
        "packaged files hashed": 2,  # the shipped checkpoints, checked against their sha256 once
        "npz files written": 3,  # two shards (the resumable part) and the result
    })


def test_in_memory_sampling_writes_nothing(count):
    samples = adm.sample("digits", num_samples=3, steps=4, batch_size=2, device="cpu")
    assert samples.images.shape == (3, 16, 16, 3) and samples.path is None
    assert count["npz files written"] == 0
    assert count["preset look-ups"] == 1 and count["checkpoints read"] == 2
    np.testing.assert_array_equal(samples.labels, [0, 1, 2])


def test_sampling_a_run_dir_guided_by_a_classifier_run_reads_each_run_file_once(count, tmp_path, monkeypatch):
    """`adm sample --run-dir R --classifier-run-dir C`: each run's config.json and checkpoint.json
    is read once (they were read twice: the kind check, then the weights and the EMA warning)."""
    import pathlib

    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, arr_0=rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), arr_1=np.arange(8) % 2)
    fast = ["--iterations", "1", "--batch-size", "4", "--save-every", "1", "--device", "cpu", "--data", str(data)]
    for command, preset, run in (("train", "tiny-cond", "tc"), ("train-classifier", "tiny", "cls")):
        trained = CliRunner().invoke(app, [command, "--preset", preset, "--run-dir", str(tmp_path / run), *fast])
        assert trained.exit_code == 0, trained.output

    reads: collections.Counter = collections.Counter()
    read_text = pathlib.Path.read_text

    def counted(self, *args, **kwargs):
        if self.name in ("config.json", "checkpoint.json"):
            reads[f"{self.parent.name}/{self.name}"] += 1
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", counted)
    count.clear()
    result = CliRunner().invoke(app, ["sample", "--run-dir", str(tmp_path / "tc"), "--classifier-run-dir",
                                      str(tmp_path / "cls"), "--steps", "3", "-n", "2", "--out", str(tmp_path / "s.npz"), "-q"])
    assert result.exit_code == 0, result.output
    assert reads == collections.Counter({"tc/config.json": 1, "tc/checkpoint.json": 1,
                                         "cls/config.json": 1, "cls/checkpoint.json": 1})
    assert count["checkpoints read"] == 2 and count["weights fingerprinted"] == 2
