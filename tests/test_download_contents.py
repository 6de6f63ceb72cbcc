"""A checkpoint a preset loads is checked against the preset's network before the cache records it
(issue 11: a PNG imported as 64x64_diffusion.pt, and `--verify` called it ok).

Files are made by the tests; downloads come from the local HTTP server (127.0.0.1 only).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import adm.cli.download_cmd as download_cmd
from adm.cli.main import app
from adm.core.errors import ChecksumError
from adm.hub.cache import Record, part_path, record_path, write_record
from adm.hub.checkpoints import save_state_dict
from adm.hub.download import (
    cache_path,
    contents_problem,
    download_artifact,
    import_file,
    is_cached,
    verify_artifact,
)
from adm.hub.transfer import TransferPolicy
from adm.presets import Artifact, Preset, Registry
from adm.presets.training import TINY_CLASSIFIER, TINY_MODEL
from adm.spec.factory import build_classifier, build_model
from adm.spec.flags import ClassifierFlags, parse_flags, parse_model_flags
from http_server import FileServer

FAST = TransferPolicy(connect_timeout=2, read_timeout=5, retries=1, backoff=0.001, chunk_size=16 * 1024)
PWNED = Path(__file__).parent / "pwned-by-a-checkpoint"  # created only if unpickling ran code


class Evil:
    """Unpickling this writes a file: proof that code ran."""

    def __reduce__(self):
        return (Path.write_text, (PWNED, "ran"))


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


MODEL = parse_model_flags(TINY_MODEL)
CLASSIFIER = parse_flags(ClassifierFlags, TINY_CLASSIFIER)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    made = {
        "model.pt": torch_bytes(build_model(MODEL).state_dict()),
        "classifier.pt": torch_bytes(build_classifier(CLASSIFIER).state_dict()),
        "other.pt": torch_bytes(build_model(MODEL.replace(num_channels=64)).state_dict()),
        "image.png": png_bytes(),
        "evil.pt": torch_bytes({"w": torch.zeros(2), "x": Evil()}),
        "html.pt": b"<html><body>Sign in to continue</body></html>",
    }
    for name, data in made.items():
        (root / name).write_bytes(data)
    save_state_dict(build_model(MODEL).state_dict(), root / "model.safetensors")
    return {name: root / name for name in [*made, "model.safetensors"]}


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


def registry_with(model: Artifact, classifier: Artifact | None = None) -> Registry:
    registry = Registry()
    registry.add_artifact(model)
    if classifier is not None:
        registry.add_artifact(classifier)
    registry.add_preset(
        Preset(
            name="t-tiny", model_flags=MODEL, checkpoint=model.name,
            classifier_flags=CLASSIFIER if classifier else None,
            classifier_checkpoint=classifier.name if classifier else None,
        )
    )
    return registry


def artifact(name: str, filename: str = "t.pt", url: str = "http://127.0.0.1:9/none") -> Artifact:
    return Artifact(name=name, url=url, filename=filename, kind="checkpoint")


def cache_files(cache: Path) -> list[str]:
    """What is in the cache besides lock files (a lock file stays by design: deleting one races)."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


# ----------------------------------------------------------------------------------------- import


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("image.png", "image.png is not a readable PyTorch checkpoint"),
        ("html.pt", "html.pt is not a readable PyTorch checkpoint"),
        ("evil.pt", "contains pickled Python objects"),
        ("other.pt", "does not fit the model of preset t-tiny"),
        ("classifier.pt", "does not fit the model of preset t-tiny"),
    ],
)
def test_import_refuses_what_is_not_the_checkpoint(files, tmp_path, name, message):
    art = artifact("t-model")
    registry = registry_with(art)
    with pytest.raises(ChecksumError, match=message) as info:
        import_file(art, files[name], registry=registry, cache_dir=tmp_path / "cache")
    assert "nothing was imported" in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 4
    assert cache_files(tmp_path / "cache") == []
    assert not PWNED.exists()


def test_import_accepts_the_checkpoint_and_the_classifier(files, tmp_path):
    model, classifier = artifact("t-model"), artifact("t-classifier", "c.pt")
    registry = registry_with(model, classifier)
    cache = tmp_path / "cache"
    import_file(model, files["model.pt"], registry=registry, cache_dir=cache)
    import_file(classifier, files["classifier.pt"], registry=registry, cache_dir=cache)
    assert is_cached(model, cache_dir=cache, registry=registry) and is_cached(classifier, cache_dir=cache, registry=registry)
    with pytest.raises(ChecksumError, match="does not fit the classifier of preset t-tiny"):
        import_file(classifier, files["model.pt"], registry=registry, cache_dir=tmp_path / "other")


def test_safetensors_artifact_is_read_as_safetensors(files, tmp_path):
    art = artifact("t-st", "t.safetensors")
    registry = registry_with(art)
    import_file(art, files["model.safetensors"], registry=registry, cache_dir=tmp_path / "cache")
    assert "model.pt is not a readable safetensors file" in contents_problem(art, files["model.pt"], registry=registry)


def test_artifacts_no_preset_loads_are_not_second_guessed(files, tmp_path):
    art = artifact("t-blob")
    registry = Registry()
    registry.add_artifact(art)
    assert contents_problem(art, files["image.png"], registry=registry) is None
    import_file(art, files["image.png"], registry=registry, cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------------------- download


def test_download_of_a_wrong_file_is_deleted_part_included(files, server, tmp_path):
    url = server.add("/files/t.pt", files["image.png"].read_bytes())
    art = artifact("t-model", url=url)
    registry = registry_with(art)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match=r"the file served at http://.* is not a readable PyTorch checkpoint.*it was deleted"):
        download_artifact(art, registry=registry, cache_dir=cache, policy=FAST)
    assert cache_files(cache) == [] and not part_path(cache_path(art, cache)).exists()
    server.add("/files/t.pt", files["model.pt"].read_bytes())
    got = download_artifact(art, registry=registry, cache_dir=cache, policy=FAST)
    assert got.action == "downloaded" and got.path.read_bytes() == files["model.pt"].read_bytes()


def test_pickled_code_from_a_server_is_refused_and_never_run(files, server, tmp_path):
    art = artifact("t-model", url=server.add("/files/evil.pt", files["evil.pt"].read_bytes()))
    with pytest.raises(ChecksumError, match="pickled Python objects"):
        download_artifact(art, registry=registry_with(art), cache_dir=tmp_path / "cache", policy=FAST)
    assert not PWNED.exists() and cache_files(tmp_path / "cache") == []


# ----------------------------------------------------------------------------------------- verify


def plant(cache: Path, art: Artifact, data: bytes) -> Path:
    """A cache entry as an adm without the contents check recorded it (trusted on first use)."""
    path = cache_path(art, cache)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    write_record(path, Record.for_file(art, path, hashlib.sha256(data).hexdigest(), "file:///somewhere"))
    return path


def test_verify_finds_a_recorded_file_that_is_not_the_checkpoint(files, tmp_path):
    art = artifact("t-model")
    registry = registry_with(art)
    cache = tmp_path / "cache"
    path = plant(cache, art, files["image.png"].read_bytes())
    assert is_cached(art, cache_dir=cache, registry=registry)  # the hash alone says ok
    result = verify_artifact(art, registry=registry, cache_dir=cache)
    assert result.status == "invalid" and "is not a readable PyTorch checkpoint" in result.problem
    assert not path.exists() and not record_path(path).exists()
    plant(tmp_path / "good", art, files["model.pt"].read_bytes())
    assert verify_artifact(art, registry=registry, cache_dir=tmp_path / "good").status == "ok"


# -------------------------------------------------------------------------------------------- CLI


def invoke(monkeypatch, registry: Registry, *args: str):
    monkeypatch.setattr(download_cmd, "default_registry", lambda: registry)
    return CliRunner(env={"COLUMNS": "300"}).invoke(app, list(args))


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return lines[0]


def test_cli_from_file_refuses_an_image(files, tmp_path, monkeypatch):
    art = artifact("t-model")
    cache = tmp_path / "cache"
    result = invoke(monkeypatch, registry_with(art), "download", "t-model", "--from-file", str(files["image.png"]), "--dir", str(cache))
    assert result.exit_code == 4
    line = one_error_line(result)
    assert line.startswith("error: ") and "image.png is not a readable PyTorch checkpoint" in line and "nothing was imported" in line
    assert cache_files(cache) == []


def test_cli_verify_reports_and_removes_an_invalid_checkpoint(files, tmp_path, monkeypatch):
    art = artifact("t-model")
    cache = tmp_path / "cache"
    plant(cache, art, files["image.png"].read_bytes())
    result = invoke(monkeypatch, registry_with(art), "download", "--verify", "t-model", "--dir", str(cache))
    assert result.exit_code == 4
    assert "invalid t-model" in result.stdout and "is not a readable PyTorch checkpoint" in result.stdout
    assert "failed verification and were removed: t-model" in one_error_line(result)
    assert cache_files(cache) == []


def test_every_released_checkpoint_is_checked(tmp_path, files):
    """The built-in registry: each released model and classifier download has a network to fit."""
    from adm.presets import default_registry
    from adm.presets.builtin import CHECKPOINTS

    registry = default_registry()
    for name in ("64-cond", "64-classifier", "64-256-upsampler", "lsun-bedroom"):
        assert name in CHECKPOINTS
        problem = contents_problem(name, files["classifier.pt"], registry=registry)
        assert problem is not None and "does not fit the" in problem, name
