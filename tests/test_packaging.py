"""The built wheel is complete: it installs into a fresh venv and `adm` runs from it."""

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from golden import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )
    (path,) = out.glob("adm_diffusion-*.whl")
    return path


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "adm/py.typed" in names
    for asset in ("digits_model", "digits_classifier", "digits_judge"):
        assert f"adm/assets/{asset}.safetensors" in names, "the digits demo's weights ship as package data"
    assert "adm/cli/main.py" in names and "adm/presets/builtin.py" in names
    assert not any(n.startswith(("tests/", "adm/tests")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "adm = adm.cli.entry:run" in text
    assert "[adm.presets]" in text and "builtin = adm.presets.builtin:register" in text


def test_wheel_installs_into_a_fresh_venv_and_runs(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    subprocess.run([str(bindir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    # The heavy dependencies (torch & co.) come from this test's environment through a .pth file,
    # so the test checks the wheel itself without reinstalling gigabytes; .ci/run does a full install.
    site = subprocess.run(
        [str(bindir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(bindir / "python"), "-c", "import adm; print(adm.__file__)"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert str(env_dir) in where.stdout, "adm must be imported from the installed wheel"
    help_ = subprocess.run([str(bindir / "adm"), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert help_.returncode == 0, help_.stderr
    for command in ("download", "train", "train-classifier", "sample", "upsample", "evaluate", "presets", "convert"):
        assert command in help_.stdout
    presets = subprocess.run([str(bindir / "adm"), "presets", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert presets.returncode == 0, presets.stderr
    assert "imagenet256" in presets.stdout and "upsample-64-256" in presets.stdout
    # The offline demo works from the installed wheel alone: no cache, no network.
    env["ADM_HOME"] = str(tmp_path / "empty-cache")
    demo = subprocess.run([str(bindir / "adm"), "sample", "--preset", "digits"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr
    scores = subprocess.run([str(bindir / "adm"), "evaluate", "digits_samples.npz", "--json", "m.json"], cwd=tmp_path,
                            env=env, capture_output=True, text=True)
    assert scores.returncode == 0, scores.stderr
    import json

    assert json.loads((tmp_path / "m.json").read_text())["digits_accuracy"] >= 0.9
