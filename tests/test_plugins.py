"""A preset and a metric added from outside the package, as docs/architecture.md describes.

Each plugin is a real installed distribution (a ``.dist-info`` with entry points) on PYTHONPATH,
used by a fresh ``adm`` process: exactly what a third-party package would do. (The sampler plugin
is in tests/test_samplers_cli.py.)
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from tests_support import install_plugin, run_adm_with

PRESET_PLUGIN = '''
"""A third party's preset: the shipped digits networks under another name, sampled with UniPC."""
from adm.presets import Artifact, Preset, SamplingDefaults
from adm.presets.training import DIGITS_CLASSIFIER, DIGITS_MODEL


def register(registry):
    registry.add_artifact(Artifact(name="my-digits-model", url="package:adm.assets/digits_model.safetensors",
                                   filename="digits_model.safetensors", kind="checkpoint"))
    registry.add_preset(Preset(
        name="my-digits", description="digits, by a plugin", model_flags=DIGITS_MODEL,
        classifier_flags=DIGITS_CLASSIFIER, checkpoint="my-digits-model", classifier_checkpoint="digits-classifier",
        classifier_scale=2.0, sampling=SamplingDefaults(sampler="unipc", steps="5", batch_size=8, num_samples=4,
                                                        classes="balanced"),
    ))
'''

METRIC_PLUGIN = '''
"""A third party's metric: mean brightness of the samples."""
import numpy as np
from adm.evaluation.metrics import MetricSpec


def brightness(samples, request):
    values = [float(batch.mean()) for batch in samples.batches(256)]
    return {"brightness": float(np.mean(values)), "num_samples": samples.count}


BRIGHTNESS = MetricSpec("brightness", brightness, rows=(("mean brightness", "brightness", "{:.2f}"),
                                                         ("samples", "num_samples", "{:d}")),
                        description="mean pixel value")
'''


@pytest.fixture(scope="module")
def plugins(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    install_plugin(root, "my_adm_presets", textwrap.dedent(PRESET_PLUGIN), {"adm.presets": {"mine": "my_adm_presets:register"}})
    install_plugin(root, "my_adm_metrics", textwrap.dedent(METRIC_PLUGIN), {"adm.metrics": {"brightness": "my_adm_metrics:BRIGHTNESS"}})
    return root


@pytest.mark.slow
def test_a_plugin_preset_is_listed_and_samples_with_its_defaults(plugins, tmp_path):
    listed = run_adm_with(plugins, "presets", "my-digits", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["sampling"]["sampler"] == "unipc"
    done = run_adm_with(plugins, "sample", "--preset", "my-digits", "--out", tmp_path / "m.npz", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    key = json.loads((tmp_path / "m.json").read_text())["key"]
    assert key["model"] == "my-digits" and key["sampler"] == "unipc" and key["scale"] == 2.0
    assert np.load(tmp_path / "m.npz")["arr_1"].tolist() == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_plugin_metric_is_chosen_by_name(plugins, tmp_path):
    samples = tmp_path / "s.npz"
    np.savez(samples, arr_0=np.full((3, 8, 8, 3), 100, dtype=np.uint8))
    done = run_adm_with(plugins, "evaluate", samples, "--metric", "brightness", "--json", tmp_path / "m.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "mean brightness" in done.stdout and "100.00" in done.stdout
    assert json.loads((tmp_path / "m.json").read_text())["brightness"] == 100.0
    unknown = run_adm_with(plugins, "evaluate", samples, "--metric", "brightnes", cwd=tmp_path)
    assert unknown.returncode == 2 and "did you mean brightness" in unknown.stderr
