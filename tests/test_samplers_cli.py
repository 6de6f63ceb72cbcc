"""Every sampler guided end to end through the CLI and the Python API, and a plugin sampler.

The plugin is a real installed distribution (a ``.dist-info`` with an ``adm.samplers`` entry point on
``PYTHONPATH``) used from a fresh process, exactly as a third-party package would be.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

import adm
import adm.sampling.batches as batches_module
from adm.cli.main import app
from adm.sampling import BUILTIN
from tests_support import install_plugin, run_adm_with

runner = CliRunner()
STEPS = {"ddpm": "6", "ddim": "ddim6"}


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def images(path):
    with np.load(path, allow_pickle=False) as data:
        return data["arr_0"], data["arr_1"]


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_sampler_guided_through_cli_and_api_reproducibly(name, tmp_path, monkeypatch):
    steps = STEPS.get(name, "6")
    loud = ["sample", "--preset", "digits", "--sampler", name, "--steps", steps, "-n", 4, "--seed", 3]
    common = [*loud, "-q"]
    cli(*common, "-b", 2, "--out", tmp_path / "a.npz")
    first, labels = images(tmp_path / "a.npz")
    meta = json.loads((tmp_path / "a.json").read_text())
    assert meta["key"]["sampler"] == name and meta["key"]["scale"] == 1.0  # guided: the preset's scale

    api = adm.sample("digits", sampler=name, steps=steps, num_samples=4, batch_size=2, seed=3)
    assert np.array_equal(api.images, first) and np.array_equal(api.labels, labels)

    # interrupted after one batch, then resumed: the same file
    real, calls = batches_module.sample_batch, []

    def dying(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(batches_module, "sample_batch", dying)
    result = runner.invoke(app, [str(a) for a in [*common, "-b", 2, "--out", tmp_path / "r.npz"]])
    assert result.exit_code == 130 and "run the same command to continue" in result.output
    monkeypatch.undo()
    resumed = cli(*loud, "-b", 2, "--out", tmp_path / "r.npz")
    assert "2 reused, 2 sampled" in resumed.output
    assert np.array_equal(images(tmp_path / "r.npz")[0], first)


def test_sampler_options_change_the_key_and_the_images(tmp_path):
    base = ["sample", "--preset", "digits", "--sampler", "dpm++2m-sde", "--steps", "6", "-n", 2, "-q"]
    cli(*base, "--out", tmp_path / "a.npz")
    cli(*base, "--sampler-opt", "eta=0.5", "--out", tmp_path / "b.npz")
    key = json.loads((tmp_path / "b.json").read_text())["key"]
    assert key["options"]["eta"] == 0.5 and key["options"]["order"] == 2
    assert not np.array_equal(images(tmp_path / "a.npz")[0], images(tmp_path / "b.npz")[0])


def test_final_order_chooses_a_reference_rule_and_is_part_of_the_key(tmp_path):
    base = ["sample", "--preset", "digits", "--sampler", "unipc", "--steps", "6", "-n", 2, "-q"]
    for rule in ("dpm-solver", "k-diffusion"):
        cli(*base, "--sampler-opt", f"final_order={rule}", "--out", tmp_path / f"{rule}.npz")
        assert json.loads((tmp_path / f"{rule}.json").read_text())["key"]["options"]["final_order"] == rule
    # 5 solver steps: DPM-Solver's rule makes the last one first order, k-diffusion's does not
    assert not np.array_equal(images(tmp_path / "dpm-solver.npz")[0], images(tmp_path / "k-diffusion.npz")[0])
    bad = runner.invoke(app, [str(a) for a in [*base, "--sampler-opt", "final_order=diffusers", "--out", tmp_path / "x.npz"]])
    assert bad.exit_code == 2 and "bad value for sampler option final_order" in bad.output
    assert "'dpm-solver', 'unipc' or 'k-diffusion'" in bad.output


def test_samplers_lists_each_option_with_its_description():
    listing = cli("samplers").output
    assert "final_order (dpm++2m, dpm++2m-sde, unipc):" in listing
    assert all(rule in listing for rule in ("dpm-solver", "k-diffusion", "docs/sampling.md"))


PLUGIN = '''
"""A third-party sampler: Euler steps on the probability-flow ODE, with an option."""
import torch
from pydantic import Field
from adm.sampling.registry import SamplerOptions, SamplerSpec


class EulerOptions(SamplerOptions):
    shrink: float = Field(1.0, gt=0, le=1, description="scale every step by this")


def sample_euler(denoiser, x, sigmas, *, noise, callback=None, shrink=1.0):
    x = denoiser.from_state(x, sigmas[0])
    with torch.no_grad():
        for i in range(len(sigmas) - 1):
            s, s_next = float(sigmas[i]), float(sigmas[i + 1])
            denoised = denoiser(x, s)
            x = x + shrink * (s_next - s) * (x - denoised) / s
    return denoiser.to_state(x, sigmas[-1])


EULER = SamplerSpec("euler", sample_euler, EulerOptions, description="Euler (a plugin)", spacing="karras")
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    return install_plugin(tmp_path_factory.mktemp("plugin"), "adm_euler_plugin", textwrap.dedent(PLUGIN),
                          {"adm.samplers": {"euler": "adm_euler_plugin:EULER"}})


run_adm = run_adm_with


@pytest.mark.slow
def test_a_plugin_sampler_with_options_works_like_a_builtin(plugin_path, tmp_path):
    listing = run_adm(plugin_path, "samplers", cwd=tmp_path)
    assert listing.returncode == 0 and "euler" in listing.stdout and "shrink=1.0" in listing.stdout
    out = tmp_path / "e.npz"
    done = run_adm(plugin_path, "sample", "--preset", "digits", "--sampler", "euler", "--steps", "8",
                   "--sampler-opt", "shrink=0.9", "-n", 3, "--out", out, "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    key = json.loads(out.with_suffix(".json").read_text())["key"]
    assert key["sampler"] == "euler" and key["options"] == {"shrink": 0.9} and key["spacing"] == "karras"
    assert images(out)[0].shape == (3, 16, 16, 3)
    bad = run_adm(plugin_path, "sample", "--preset", "digits", "--sampler", "euler", "--sampler-opt", "shrink=3",
                  "--out", tmp_path / "x.npz", cwd=tmp_path)
    assert bad.returncode == 2 and "bad value for sampler option shrink" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
