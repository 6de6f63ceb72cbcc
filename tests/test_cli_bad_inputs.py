"""Every subcommand through a table of bad inputs (issue 11).

Each row is one command line and what it must do: exit with the documented code (docs/cli.md),
print exactly one line on stderr (the error), no traceback, and leave nothing in the output
location ``{out}``: no file at all, except the download cache's per-entry ``.lock`` files, which
stay by design (removing a lock file others may be waiting on breaks the lock).

Adding a case is one line: ``Row("COMMAND ARGS", code, "part of the message")``. Placeholders:
``{out}`` a fresh, empty folder per row; ``{png}`` an image; ``{pt}`` a valid state_dict of a tiny
classifier (no released preset's network); ``{evil}`` a .pt with pickled code; ``{data}`` 16x16
training images in 3 classes (npz); ``{unlabelled}`` the same without labels; ``{samples16}`` /
``{samples32}`` sample npz files; ``{file}`` a plain file (not a folder); ``{missing}`` a path
that does not exist; ``{long}`` a file name longer than file systems allow; ``{text}`` five bytes
of text named ``.pt``; ``{badlabels}`` digits-sized images labelled 0, 99, -1; ``{taken}`` a
folder holding a user's ``notes.png`` and ``memo.json``. ``fault=`` names an environment failure
from ``FAULTS`` to simulate while the row runs.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import SafetensorError
from typer.testing import CliRunner

import adm.core.fileio as fileio
import adm.hub.checkpoints as checkpoints
from adm.cli.main import app
from adm.hub.checkpoints import save_state_dict
from adm.presets.training import TINY_CLASSIFIER
from adm.spec.factory import build_classifier
from adm.spec.flags import ClassifierFlags, parse_flags
from http_server import FileServer


@dataclass(frozen=True)
class Row:
    args: str
    code: int
    message: str
    fault: str | None = None

    def __str__(self) -> str:
        return self.args + (f" [{self.fault}]" if self.fault else "")


ROWS = [
    # presets
    Row("presets nope", 2, "unknown preset 'nope'"),
    Row("presets tiny-cnd --json", 2, "did you mean tiny-cond"),
    # download
    Row("download --dir {out}", 2, "name what to download"),
    Row("download nope-xyz --dir {out}", 2, "unknown artifact or preset 'nope-xyz'"),
    Row("download --list --verify --dir {out}", 2, "--list and --verify cannot be combined"),
    Row("download 64-cond --force --verify --dir {out}", 2, "--force only applies to downloads"),
    Row("download imagenet64 --from-file {png} --dir {out}", 2, "--from-file imports one artifact"),
    Row("download 64-cond --from-file {missing} --dir {out}", 2, "missing.pt is not a file"),
    Row("download 64-cond --from-file {png} --dir {out}", 4, "image.png is not a readable PyTorch checkpoint"),
    Row("download 64-cond --from-file {evil} --dir {out}", 4, "contains pickled Python objects"),
    Row("download 64-cond --from-file {pt} --dir {out}", 4, "does not fit the model of preset imagenet64"),
    Row("download 64-classifier --from-file {pt} --dir {out}", 4, "does not fit the classifier of preset imagenet64"),
    Row("download 64-cond --verify --dir {out}", 2, "not in the cache: 64-cond"),
    Row("download 64-cond --dir {out}", 3, "was not found (HTTP 404"),
    Row("download 64-cond --dir {file}/cache", 2, "a part of it is a file, not a folder"),
    Row("download 64-cond --dir {out}/{long}", 1, "File name too long"),
    # convert
    Row("convert {missing} {out}/x.safetensors", 2, "missing.pt does not exist"),
    Row("convert {png} {out}/x.safetensors", 2, "image.png is not a readable PyTorch checkpoint"),
    Row("convert {evil} {out}/x.safetensors", 2, "contains pickled Python objects"),
    Row("convert {pt} {out}/x.bin", 2, "cannot tell the output format"),
    Row("convert {pt} {pt}", 2, "input and output are the same file"),
    Row("convert {pt} {file}/x.pt", 2, "is a file, not a folder"),
    Row("convert {pt} {out}/{long}.pt", 1, "File name too long"),
    Row("convert {pt} {out}/x.safetensors", 1, "x.safetensors: No space left on device", fault="safetensors disk full"),
    Row("convert {pt} {out}/x.pt", 1, "x.pt: No space left on device", fault="disk full"),
    Row("convert {text} {out}/x.safetensors", 2, "text.pt is not a readable PyTorch checkpoint"),
    Row("convert {empty} {out}/x.safetensors", 2, "empty.pt is empty (0 bytes)"),
    # evaluate
    Row("evaluate", 2, "name the SAMPLES to evaluate"),
    Row("evaluate {missing}", 2, "missing.pt does not exist"),
    Row("evaluate {png}", 2, "image.png holds 1 image(s); at least 2 are needed"),
    Row("evaluate --make-ref {samples16}", 2, "--make-ref needs -o"),
    Row("evaluate {samples16} -o {out}/r.npz", 2, "-o only applies to --make-ref"),
    Row("evaluate {samples16} --metric fid", 2, "unknown metric 'fid'"),
    Row("evaluate {samples32} --json {out}/m.json", 2, "no built-in reference batch for 32x32"),
    Row("evaluate {samples32} --ref {png} --json {out}/m.json", 2, "image.png is not a readable npz file"),
    Row("evaluate {samples16} --json {out}/m.json", 1, "m.json: No space left on device", fault="disk full"),
    Row("evaluate {badlabels}", 2, "badlabels.npz: label 99 (image 1) is out of range for the digits judge's 10 classes (0..9)"),
    # train
    Row("train --run-dir {out}/run --data {data}", 2, "no network given"),
    Row("train --run-dir {out}/run --preset tiny", 2, "no training data given"),
    Row("train --run-dir {out}/run --preset tinyy --data {data}", 2, "unknown training preset 'tinyy'"),
    Row("train --run-dir {out}/run --preset tiny --data {missing}", 2, "missing.pt does not exist"),
    Row("train --run-dir {out}/run --preset tiny --data {data} --precision fp8", 2, "bad value for --precision"),
    Row("train --run-dir {out}/run --preset tiny --data {data} --iterations 0", 2, "bad value for --iterations"),
    Row("train --run-dir {out}/run --preset tiny --data {data} --iterations 3 --steps 4", 2, "--iterations 3 and --steps 4 disagree"),
    Row("train --run-dir {out}/run --preset tiny --data {data} --resume", 2, "nothing to resume"),
    Row("train --run-dir {out}/run --preset tiny --data {data} --init {png}", 2, "image.png is not a readable PyTorch checkpoint"),
    Row("train --run-dir {out}/run --preset tiny --data {data} --init {evil}", 2, "contains pickled Python objects"),
    Row("train --run-dir {out}/run --preset tiny --data {data} --init {pt}", 2, "does not fit the chosen architecture"),
    Row("train --run-dir {out}/run --preset tiny-cond --model-flags '--num_classes 2' --data {data}", 2, "--data has 3 classes but the model has 2"),
    Row("train --run-dir {out}/run --model-flags '--image_size 16 --use_ddim True' --data {data}", 2, "use adm's --sampler ddim instead"),
    Row("train --run-dir {out}/{long} --preset tiny --data {data}", 1, "File name too long"),
    Row("train --run-dir {out}/run --preset tiny --data {data} --lr inf", 2, "bad value for --lr: Input should be a finite number"),
    Row("train --run-dir {out}/run --preset tiny --data {data} --model-flags '--dropout nan'", 2, "bad value for --dropout: Input should be a finite number"),
    # train-classifier
    Row("train-classifier --run-dir {out}/run --data {data}", 2, "no classifier given"),
    Row("train-classifier --run-dir {out}/run --preset tiny --data {unlabelled}", 2, "has no labels (arr_1)"),
    Row("train-classifier --run-dir {out}/run --preset tiny --data {data} --val-data {data} --val-fraction 0.1", 2, "give either val_data or val_fraction"),
    Row("train-classifier --run-dir {out}/run --preset tiny --data {data} --val-fraction 1.5", 2, "bad value for --val-fraction"),
    Row("train-classifier --run-dir {out}/run --preset tiny --classifier-flags '--classifier_scale 1' --data {data}", 2, "use adm's --scale instead"),
    Row("train-classifier --run-dir {out}/run --preset tiny --classifier-flags '--classifier_num_classes 2' --data {data}", 2, "3 classes but the classifier has 2 outputs"),
    # data
    Row("data digits {out}/d.npz --split nope", 2, "unknown split 'nope'"),
    Row("data digits {out}/d.npz --format gif", 2, "unknown format 'gif'"),
    Row("data digits {file}/d.npz", 2, "is a file, not a folder"),
    Row("data digits {out}/{long}.npz", 1, "File name too long"),
    Row("data digits {out}/d.npz", 1, "d.npz: No space left on device", fault="disk full"),
    Row("data digits {out}/d.npz", 1, "d.npz: No space left on device", fault="write full"),
    Row("data digits {samples16}", 2, "samples16.npz exists (pass --overwrite"),
    # recipe
    Row("recipe digits {file}", 2, "is a file, not a folder"),
    Row("recipe digits {out}/{long}", 1, "File name too long"),
    Row("recipe digits {out}/work --quick", 1, "No space left on device", fault="disk full"),
    # typer's own parsing, one line too
    Row("sample --preset digits --frobnicate --out {out}/s.npz", 2, "No such option: --frobnicate"),
    Row("sample --preset digits -n many --out {out}/s.npz", 2, "Invalid value for '--num-samples'"),
    Row("train --iterations abc --run-dir {out}/r", 2, "Invalid value for '--iterations'"),
    Row("--threads 0 presets", 2, "the number of threads must be at least 1"),
    # sample (the shipped digits preset needs no download)
    Row("sample --preset digits --seed -1 --out {out}/s.npz", 2, "--seed must be a non-negative integer"),
    Row("sample --preset digits -n 0 --out {out}/s.npz", 2, "--num-samples must be at least 1"),
    Row("sample --preset digits --out {out}/s.png", 2, "--out must name an .npz file"),
    Row("sample --preset digitz --out {out}/s.npz", 2, "did you mean digits"),
    Row("sample --preset digits --sampler dpm++2n --out {out}/s.npz", 2, "did you mean dpm++2m"),
    Row("sample --preset digits --sampler ddpm --eta 0.5 --out {out}/s.npz", 2, "sampler ddpm has no option 'eta'"),
    Row("sample --preset digits --sampler unipc --sampler-opt order=9 --out {out}/s.npz", 2, "bad value for sampler option order"),
    Row("sample --preset digits --sampler ddim --spacing karras --out {out}/s.npz", 2, "walks the model's respaced chain"),
    Row("sample --preset digits --spacing sideways --sampler heun --out {out}/s.npz", 2, "unknown spacing 'sideways'"),
    Row("sample --preset digits --threshold 2 --out {out}/s.npz", 2, "bad value for --threshold"),
    Row("sample --preset digits --guidance-interval 0.9,0.1 --out {out}/s.npz", 2, "guidance interval must satisfy"),
    Row("sample --preset digits --classes 12 --out {out}/s.npz", 2, "class id 12 is out of range"),
    Row("sample --preset digits --classes no-such-ids.txt --out {out}/s.npz", 2, "cannot read 'no-such-ids.txt'"),
    Row("sample --preset digits --scale -1 --out {out}/s.npz", 2, "bad value for --scale"),
    Row("sample --preset digits --upsample upsample-64-256 --out {out}/s.npz", 2, "upsamples 64x64 images, the base model makes 16x16"),
    Row("sample --preset imagenet64 --out {out}/s.npz", 2, "adm download 64-cond 64-classifier"),
    Row("sample --preset upsample-64-256 --out {out}/s.npz", 2, "is an upsampler"),
    Row("sample --run-dir {missing} --out {out}/s.npz", 2, "does not exist"),
    Row("sample --model-flags '--image_size 16 --num_channels 32' --out {out}/s.npz", 2, "model flags need a model checkpoint"),
    Row("sample --model-flags '--large_size 32 --small_size 16 --num_channels 32 --channel_mult 1,2' --model-path {pt} --scale 0 --out {out}/s.npz", 2, "adm upsample"),
    Row("sample --preset digits --out {file}/s.npz", 2, "is a file, not a folder"),
    Row("sample --preset digits -n 2 --out {out}/s.npz", 1, "No space left on device", fault="disk full"),
    Row("sample --preset digits -n 2 --out {out}/s.npz", 1, "s.npz.parts/run.json: No space left on device", fault="write full"),
    # non-finite numbers, wherever they are given
    Row("sample --preset digits --scale inf --out {out}/s.npz", 2, "bad value for --scale: Input should be a finite number, got inf"),
    Row("sample --preset digits --scale nan --out {out}/s.npz", 2, "bad value for --scale: Input should be a finite number, got nan"),
    Row("sample --preset digits --sampler ddim --eta nan --out {out}/s.npz", 2, "bad value for --eta: Input should be a finite number"),
    Row("sample --preset digits --sampler dpm++2m-sde --sampler-opt eta=inf --out {out}/s.npz", 2, "bad value for sampler option eta: Input should be a finite number"),
    Row("sample --preset digits --guidance-interval 0,inf --out {out}/s.npz", 2, "bad value for --guidance-interval: Input should be a finite number"),
    Row("sample --preset digits --threshold nan --out {out}/s.npz", 2, "bad value for --threshold: Input should be a finite number"),
    # labels and checkpoints that are not what they claim
    Row("sample --preset digits --classes -1 --out {out}/s.npz", 2, "class id -1 is out of range"),
    Row("sample --preset digits --model-path {text} --out {out}/s.npz", 2, "text.pt is not a readable PyTorch checkpoint"),
    # files beside --out that adm did not write
    Row("sample --preset digits -n 2 --out {taken}/notes.npz", 2, "notes.png exists and was not written by adm"),
    Row("sample --preset digits -n 2 --grid 0 --out {taken}/memo.npz", 2, "memo.json exists and was not written by adm"),
    # upsample
    Row("upsample --preset digits --base-samples {samples16} --out {out}/u.npz", 2, "digits is not an upsampler"),
    Row("upsample --preset upsample-64-256 --base-samples {missing} --out {out}/u.npz", 2, "does not exist"),
    Row("upsample --preset upsample-64-256 --base-samples {file} --out {out}/u.npz", 2, "not a readable npz"),
    # edit
    Row("edit {badlabels} --preset digits --out {out}/e.npz", 2, "label 99 (image 1) is out of range for a model of 10 classes"),
    Row("edit {badlabels} --preset digits -n 2 --classes 3 --invert --out {out}/e.npz", 2, "label 99 (image 1) is out of range"),
    Row("edit {badlabels} --preset digits --strength nan --out {out}/e.npz", 2, "bad value for --strength: Input should be a finite number"),
    Row("edit {badlabels} --preset digits --classes -1 --out {out}/e.npz", 2, "class id -1 is out of range"),
]


def _fsync_on_a_full_disk(monkeypatch) -> None:
    """Every atomic write fails as on a full disk, when its data is flushed (how NFS reports it)."""

    def fsync(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(fileio, "_fsync", fsync)


def _safetensors_on_a_full_disk(monkeypatch) -> None:
    def save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"part of it")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoints, "save_file", save_file)


class _FullDisk(io.RawIOBase):
    """A file on a full disk: every write fails with the OS's words and no file name, as write() does."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _writes_on_a_full_disk(monkeypatch) -> None:
    """Every write into an atomic temporary file fails at once (the file's data, not its flush)."""
    real = io.open

    def opening(file, mode="r", *args, **kwargs):
        if "w" in mode and isinstance(file, (str, os.PathLike)) and os.fspath(file).endswith(".tmp"):
            return _FullDisk()
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", opening)
    monkeypatch.setattr(io, "open", opening)


FAULTS = {"disk full": _fsync_on_a_full_disk, "safetensors disk full": _safetensors_on_a_full_disk,
          "write full": _writes_on_a_full_disk}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("inputs")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "image.png")
    save_state_dict(build_classifier(parse_flags(ClassifierFlags, TINY_CLASSIFIER)).state_dict(), root / "tiny.pt")
    torch.save({"w": torch.zeros(2), "code": Path("x")}, root / "evil.pt")  # a pickled Python object
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8), np.arange(6) % 3)
    np.savez(root / "unlabelled.npz", np.zeros((6, 16, 16, 3), np.uint8))
    # more samples than the digits judge's 128 features: fewer draw a covariance warning in evaluate
    np.savez(root / "samples16.npz", rng.integers(0, 255, (130, 16, 16, 3), dtype=np.uint8))
    np.savez(root / "samples32.npz", np.zeros((4, 32, 32, 3), np.uint8))
    (root / "file").write_text("not a folder")
    (root / "text.pt").write_text("hello")  # the unpickler reads these bytes as opcodes: KeyError 101
    (root / "empty.pt").write_bytes(b"")  # torch's EOFError says nothing: "()"
    np.savez(root / "badlabels.npz", np.zeros((3, 16, 16, 3), np.uint8), np.array([0, 99, -1]))
    (root / "taken").mkdir()
    (root / "taken" / "notes.png").write_text("notes")
    (root / "taken" / "memo.json").write_text("notes")
    return {
        "png": str(root / "image.png"), "pt": str(root / "tiny.pt"), "evil": str(root / "evil.pt"),
        "data": str(root / "data.npz"), "unlabelled": str(root / "unlabelled.npz"),
        "samples16": str(root / "samples16.npz"), "samples32": str(root / "samples32.npz"),
        "file": str(root / "file"), "missing": str(root / "missing.pt"), "long": "n" * 300,
        "text": str(root / "text.pt"), "empty": str(root / "empty.pt"), "badlabels": str(root / "badlabels.npz"), "taken": str(root / "taken"),
    }


@pytest.fixture(scope="module")
def empty_mirror():
    """Downloads go to a local server that has nothing (404), never to the internet."""
    with FileServer() as server:
        yield server.url("/")


def command_line(row: Row, inputs: dict[str, str], out: Path) -> list[str]:
    return [part.format(out=out, **inputs) for part in shlex.split(row.args)]


def leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_bad_input(row, inputs, empty_mirror, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("ADM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ADM_BASE_URL", empty_mirror)
    monkeypatch.setenv("ADM_DOWNLOAD_RETRIES", "0")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    if row.fault:
        FAULTS[row.fault](monkeypatch)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, command_line(row, inputs, out))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.exit_code == row.code, result.stderr
    assert lines[0].startswith("error: ") and row.message in lines[0], lines[0]
    assert leftovers(out) == []


def test_a_real_process_agrees_with_the_runner(inputs, tmp_path):
    """The table runs in-process; the same rows as real processes give the same code and line."""
    for row in (ROWS[0], next(r for r in ROWS if r.code == 4)):
        args = command_line(row, inputs, tmp_path)
        done = subprocess.run([sys.executable, "-m", "adm.cli", *args], capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "200"}, timeout=300)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == row.code and len(lines) == 1 and row.message in lines[0], done.stderr
