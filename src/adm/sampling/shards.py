"""Crash-safe sample storage: finished batches as atomic shard files, assembled at the end.

A run writing ``OUT.npz`` keeps its shards in ``OUT.npz.parts/``: a ``run.json`` holding the key
of the command that made them (seed, model, scale, ...) and one ``shard-START-STOP.npz`` per
finished batch. Re-running the same command finds the shards and only samples what is missing;
a different command is refused rather than mixed in. Shards are written with temp file + rename,
so a shard either exists whole or not at all.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from adm.core.errors import UsageError
from adm.core.fileio import atomic_path, make_folder, write_json_atomic

SHARD = re.compile(r"^shard-(\d{9})-(\d{9})\.npz$")


def _shown(value: Any) -> str:
    # a weights fingerprint reads best as its file name and hash prefix
    if isinstance(value, dict) and "file" in value:
        digest = value.get("sha256") or value.get("sha256-sampled") or ""
        return f"{value['file']} ({digest[:12]})"
    if isinstance(value, list) and len(value) > 6:  # e.g. a class list per input
        return f"[{', '.join(map(repr, value[:4]))}, ... ({len(value)} values)]"
    return repr(value)


def _content(value: Any) -> Any:
    # a weights fingerprint names its file for messages; only its size and hash identify the weights
    if isinstance(value, dict):
        return {k: _content(v) for k, v in value.items() if not (k == "file" and ("sha256" in value or "sha256-sampled" in value))}
    return value


def same_command(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two run keys describe the same images (weights compared by content, not file name)."""
    return _content(old) == _content(new)


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The first few settings in which two commands differ, e.g. ``seed 0 → 1``."""
    changed = [k for k in sorted(set(old) & set(new)) if _content(old[k]) != _content(new[k])]
    # other weights first (the likeliest surprise), then what a user types; what follows from those
    # (the grid of noise levels, the evaluation count) last, and only when nothing else differs
    changed.sort(key=lambda k: (not k.endswith("_weights"), k in DERIVED))
    if any(k not in DERIVED for k in changed):
        changed = [k for k in changed if k not in DERIVED]
    other = [k for k in sorted(set(old) ^ set(new))]  # settings one of the two commands lacks
    return ", ".join(f"{k} {_shown(old.get(k))} → {_shown(new.get(k))}" for k in (changed + other)[:3])


DERIVED = {"grid", "evaluations"}  # key entries that follow from the sampler, steps and spacing


class ShardStore:
    """The shard folder of one output file."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.folder = self.out.with_name(self.out.name + ".parts")

    @property
    def manifest(self) -> Path:
        return self.folder / "run.json"

    def check(self, key: dict[str, Any]) -> bool:
        """Whether shards of ``key``'s command are here (False: none at all); a different command's
        are refused."""
        if not self.manifest.is_file():
            return False
        old = json.loads(self.manifest.read_text())["key"]
        if not same_command(old, key):
            raise UsageError(
                f"{self.folder} holds samples of a different command ({describe_difference(old, key)})",
                f"delete {self.folder} or pass --overwrite to start over, or choose another --out",
            )
        return True

    def open(self, key: dict[str, Any]) -> None:
        """Create the folder for ``key``, or check that existing shards were made by the same command."""
        if self.check(key):
            return
        make_folder(self.folder)
        write_json_atomic(self.manifest, {"key": key}, sort_keys=True)

    def done(self) -> list[tuple[int, int]]:
        """Finished ``[start, stop)`` ranges, sorted."""
        if not self.folder.is_dir():
            return []
        ranges = []
        for path in self.folder.iterdir():
            match = SHARD.match(path.name)
            if match:
                ranges.append((int(match[1]), int(match[2])))
        return sorted(ranges)

    def missing(self, num_samples: int) -> list[int]:
        """Sample indices below ``num_samples`` not covered by any finished shard."""
        covered = np.zeros(num_samples, dtype=bool)
        for start, stop in self.done():
            covered[start : min(stop, num_samples)] = True
        return np.flatnonzero(~covered).tolist()

    def write(self, start: int, images: np.ndarray, labels: np.ndarray | None,
              extra: dict[str, np.ndarray] | None = None) -> Path:
        """One finished batch; ``extra`` arrays (one row per image) travel with it."""
        path = self.folder / f"shard-{start:09d}-{start + len(images):09d}.npz"
        extra = {f"extra_{k}": v for k, v in (extra or {}).items()}
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, images=images, labels=labels if labels is not None else np.zeros(0, np.int64), **extra)
        return path

    def assemble(self, num_samples: int) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
        """Images, labels and extra arrays ``0..num_samples`` in index order, from the shards."""
        images, labels, extra, expected = [], [], {}, 0
        for start, stop in self.done():
            if stop <= expected:
                continue  # wholly covered by an earlier shard (e.g. from a run with other batch sizes)
            if start > expected:
                raise UsageError(f"{self.folder} is missing samples {expected}..{start - 1}", "re-run the command to finish them")
            with np.load(self.folder / f"shard-{start:09d}-{stop:09d}.npz", allow_pickle=False) as data:
                skip = expected - start
                images.append(data["images"][skip:])
                labels.append(data["labels"][skip:])
                for name in data.files:
                    if name.startswith("extra_"):
                        extra.setdefault(name.removeprefix("extra_"), []).append(data[name][skip:])
            expected = stop
            if expected >= num_samples:
                break
        if expected < num_samples:
            raise UsageError(f"{self.folder} has {expected} of {num_samples} samples", "re-run the command to finish them")
        all_images = np.concatenate(images)[:num_samples]
        all_labels = np.concatenate(labels)[:num_samples] if labels and labels[0].size else None
        return all_images, all_labels, {k: np.concatenate(v)[:num_samples] for k, v in extra.items()}

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
