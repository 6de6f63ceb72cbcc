"""Files adm writes end with the permissions an ordinary open() gives (issue 11: they were 0600).

Each writer goes through ``adm.core.fileio.atomic_path`` (temp file + rename); the reference is a file
the test creates with plain ``open()`` in the same folder under the same umask.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from adm.core.fileio import atomic_path, write_text_atomic
from adm.hub.cache import record_path
from adm.hub.checkpoints import convert, save_state_dict
from adm.hub.download import cache_path, import_file
from adm.presets import Artifact, Registry
from adm.training.checkpoint import write_checkpoint
from adm.training.rundir import write_run_config

UMASKS = (0o022, 0o002, 0o027)


@pytest.fixture(params=UMASKS, ids=[f"umask{u:03o}" for u in UMASKS])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ordinary(folder: Path) -> int:
    """The mode plain open() gives a new file in ``folder`` (umask, and a default ACL if any)."""
    probe = folder / "probe-by-open"
    with open(probe, "w") as f:
        f.write("x")
    got = mode(probe)
    probe.unlink()
    return got


def _replace_tmp(tmp: Path) -> None:
    """A writer that removes the temporary file and writes a new one under the same name."""
    tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"new")
    os.close(fd)


WRITERS = {
    "write_text": lambda tmp: tmp.write_text("{}"),
    "open-wb": lambda tmp: tmp.open("wb").close(),
    "torch.save(path)": lambda tmp: torch.save({"w": torch.zeros(2)}, tmp),
    "safetensors.save_file": lambda tmp: save_file({"w": torch.zeros(2)}, str(tmp)),
    "PIL.save": lambda tmp: Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp, format="PNG"),
    "np.savez(file)": lambda tmp: np.savez(tmp.open("wb"), arr_0=np.zeros(3)),
    "replaces the temp file": _replace_tmp,
}


@pytest.mark.parametrize("writer", WRITERS)
def test_atomic_path_gives_the_mode_of_an_ordinary_open(tmp_path, umask, writer):
    target = tmp_path / "out.bin"
    with atomic_path(target) as tmp:
        WRITERS[writer](tmp)
    assert mode(target) == 0o666 & ~umask == ordinary(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_rewriting_a_file_keeps_its_mode_as_open_would(tmp_path, umask):
    target = tmp_path / "config.json"
    target.write_text("{}")
    target.chmod(0o640)
    write_text_atomic(target, '{"a": 1}')
    assert mode(target) == 0o640 and json.loads(target.read_text()) == {"a": 1}


def test_every_adm_writer_honours_the_umask(tmp_path, umask):
    expected = 0o666 & ~umask
    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    written = [
        save_state_dict(weights, tmp_path / "w.pt"),
        save_state_dict(weights, tmp_path / "w.safetensors"),
        convert(tmp_path / "w.pt", tmp_path / "converted.safetensors"),
    ]
    run = tmp_path / "run"
    write_run_config(run, {"kind": "diffusion"})
    record = write_checkpoint(
        run, 1, model=weights, emas={0.99: weights}, optimizer={"state": {}, "param_groups": []},
        state={"step": 1}, keep=0,
    )
    written += [run / "config.json", run / "checkpoint.json", *(run / name for name in record.files())]
    write_text_atomic(tmp_path / "metrics.json", "{}\n")
    written.append(tmp_path / "metrics.json")

    art = Artifact(name="t-mode", url="http://127.0.0.1:9/t.pt", filename="t.pt", kind="checkpoint")
    registry = Registry()
    registry.add_artifact(art)
    cached = import_file(art, tmp_path / "w.pt", registry=registry, cache_dir=tmp_path / "cache").path
    written += [cached, record_path(cache_path(art, tmp_path / "cache"))]

    modes = {str(p.relative_to(tmp_path)): oct(mode(p)) for p in written}
    assert set(modes.values()) == {oct(expected)}, modes
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_digits_dataset_npz_and_png_folder(tmp_path, umask):
    from adm.data.digits import write_digits

    npz = write_digits(tmp_path / "d.npz", split="heldout")
    folder = write_digits(tmp_path / "pngs", split="heldout", image_format="png")
    pngs = list(Path(folder).rglob("*.png"))
    assert pngs and {mode(p) for p in [Path(npz), *pngs]} == {0o666 & ~umask}
