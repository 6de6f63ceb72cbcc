"""OS write failures are one line with exit code 1, and the documented table is the code's table
(issue 11: `adm convert` on a full disk was a SafetensorError traceback; OS errors exited 1 with
no stated meaning)."""

from __future__ import annotations

import errno
import io
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from typer.testing import CliRunner

import adm.hub.checkpoints as checkpoints
from adm.cli.main import app
from adm.core import errors
from adm.hub.checkpoints import save_state_dict

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
WEIGHTS = {"w": torch.arange(12.0).reshape(3, 4)}


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return lines[0]


def test_docs_table_is_the_code_table():
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", DOCS.read_text(), flags=re.M)
    documented = {int(code): text for code, text in rows}
    assert set(documented) == set(errors.EXIT_CODES)
    for code, meaning in errors.EXIT_CODES.items():
        assert documented[code].split(":")[0].strip() == meaning.split(":")[0].strip(), code
    assert "128 + N" in DOCS.read_text()


def test_error_classes_use_the_table():
    assert errors.UsageError.exit_code == errors.CheckpointError.exit_code == errors.MissingFileError.exit_code == 2
    assert errors.StorageError.exit_code == errors.DownloadStorageError.exit_code == 1
    assert errors.DownloadError.exit_code == 3 and errors.ChecksumError.exit_code == 4
    assert issubclass(errors.DownloadStorageError, errors.DownloadError)  # callers catching downloads still do
    assert {c.exit_code for c in (errors.UsageError, errors.StorageError, errors.DownloadError, errors.ChecksumError)} <= set(errors.EXIT_CODES)


@pytest.fixture
def src(tmp_path) -> Path:
    return save_state_dict(WEIGHTS, tmp_path / "in.pt")


def test_convert_to_safetensors_on_a_full_disk(src, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")  # what a real full disk leaves: part of the file
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoints, "save_file", full)
    result = CliRunner().invoke(app, ["convert", str(src), str(out / "x.safetensors")])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line == f"error: {out / 'x.safetensors'}: No space left on device (free some space, or write to another disk)"
    assert list(out.iterdir()) == []


class _FullDisk(io.RawIOBase):
    """A file whose disk fills up after ``room`` bytes."""

    def __init__(self, room: int):
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return len(data)


def test_convert_to_pt_on_a_full_disk_is_not_torchs_runtime_error(tmp_path, monkeypatch):
    """torch.save reports a full disk as 'RuntimeError: [enforce fail at inline_container.cc]'."""
    src = save_state_dict(WEIGHTS, tmp_path / "in.safetensors")
    out = tmp_path / "out"
    real_open = open

    def opening(file, mode="r", *args, **kwargs):
        return _FullDisk(100) if "w" in mode else real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "open", opening, raising=False)
    result = CliRunner().invoke(app, ["convert", str(src), str(out / "x.pt")])
    assert result.exit_code == 1
    assert "x.pt: No space left on device" in one_error_line(result)
    assert list(out.iterdir()) == []


def test_an_unwritable_name_is_one_line_exit_1(src, tmp_path):
    """A real OS refusal (no mocks): a file name longer than the file system allows."""
    long = tmp_path / ("n" * 300 + ".safetensors")
    result = CliRunner().invoke(app, ["convert", str(src), str(long)])
    assert result.exit_code == 1
    assert "File name too long" in one_error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pt"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_folder_is_one_line_exit_1(src, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = CliRunner().invoke(app, ["data", "digits", str(folder / "d.npz")])
    finally:
        folder.chmod(0o755)
    assert result.exit_code == 1
    assert "Permission denied (choose a location you can write to" in one_error_line(result)


def test_training_checkpoint_on_a_full_disk(tmp_path, monkeypatch):
    """The trainer's optimizer/state files go through the same writer (adm.hub.checkpoints.save_torch)."""
    from adm.training.checkpoint import write_checkpoint

    real_open = open
    monkeypatch.setattr(checkpoints, "open", lambda f, mode="r", *a, **k: _FullDisk(10) if "w" in mode else real_open(f, mode, *a, **k), raising=False)
    with pytest.raises(OSError) as info:
        write_checkpoint(tmp_path, 1, model=WEIGHTS, emas={}, optimizer={}, state={"step": 1}, keep=0)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "model000001.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 64 KiB file system (tmpfs), where the machine lets the tests mount one (root)."""
    import shutil
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_convert_onto_a_really_full_disk(tmp_path, tiny_disk, suffix):
    big = save_state_dict({"w": torch.zeros(100_000)}, tmp_path / ("big.pt" if suffix == ".safetensors" else "big.safetensors"))
    result = CliRunner().invoke(app, ["convert", str(big), str(tiny_disk / f"x{suffix}")])
    assert result.exit_code == 1
    assert f"x{suffix}: No space left on device" in one_error_line(result)
    assert list(tiny_disk.iterdir()) == []


def _fill(disk: Path) -> None:
    with open(disk / "filler", "wb", buffering=0) as f, pytest.raises(OSError):  # until the disk is full
        while True:
            f.write(b"\0" * 4096)


@pytest.mark.parametrize("command, named", [
    (["data", "digits", "{disk}/d.npz"], "{disk}/d.npz"),
    (["sample", "--preset", "digits", "-n", "2", "--out", "{disk}/s.npz"], "{disk}/s.npz.parts/run.json"),
])
def test_sample_and_data_on_a_really_full_disk_name_the_file(tiny_disk, command, named):
    """Their writers' write() fails with no file name; atomic_path names the file, for every writer
    (issue 20, item 18: `adm convert` and `adm train` named it, `adm sample` and `adm data` did not)."""
    _fill(tiny_disk)
    result = CliRunner().invoke(app, [part.format(disk=tiny_disk) for part in command])
    assert result.exit_code == 1
    assert one_error_line(result) == f"error: {named.format(disk=tiny_disk)}: No space left on device (free some space, or write to another disk)"
    assert [p.name for p in tiny_disk.iterdir()] == ["filler"]


def test_a_write_failing_without_a_file_name_is_named_by_atomic_path(tmp_path):
    from adm.core.fileio import atomic_path

    with pytest.raises(OSError) as info, atomic_path(tmp_path / "x.bin"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what a file object's write() raises
    assert info.value.filename == str(tmp_path / "x.bin") and info.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as info, atomic_path(tmp_path / "x.bin"):
        raise OSError("a message, not a system call's failure")
    assert info.value.filename is None
    assert list(tmp_path.iterdir()) == []
