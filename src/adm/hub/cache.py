"""The on-disk cache of downloaded artifacts: where files live and what is recorded about them.

Layout, below the cache root (``--dir`` > ``$ADM_HOME`` > the platform's user cache dir for "adm")::

    <root>/<artifact name>/<filename>               the verified file (only ever renamed into place)
    <root>/<artifact name>/<filename>.record.json   its size, sha256 and stat stamp
    <root>/<artifact name>/<filename>.part          a download in progress (resumable)
    <root>/<artifact name>/<filename>.part.json     the server's validator (ETag) for that .part
    <root>/<artifact name>/<filename>.lock          held by the process that writes this entry

The record is written (atomically) before the file is renamed into place, so a file in place with a
matching record was verified: against the published sha256 where there is one, otherwise the hash
computed when it arrived is the reference from then on (trust on first use). The record also keeps
the file's size and modification time; as long as they are unchanged a later use skips rehashing.

Nothing here talks to the network; ``adm.hub.download`` builds on this module.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from adm.core.fileio import write_text_atomic
from adm.presets.types import Artifact

ENV_HOME = "ADM_HOME"
RECORD_SUFFIX = ".record.json"
PART_SUFFIX = ".part"
LOCK_SUFFIX = ".lock"
HASH_CHUNK = 1 << 20

ProgressCallback = Callable[[int, "int | None"], None]
"""``on_progress(done_bytes, total_bytes_or_None)``."""

CacheState = Literal["ok", "missing", "unrecorded", "changed", "mismatch"]
"""What a quick look (no hashing) says about a cache entry.

``ok``: file and record agree (size, mtime, expected hash); ``missing``: no file; ``unrecorded``: a
file nobody verified (copied in by hand, or a crash between record and rename); ``changed``: the
file's stat differs from the record, it must be rehashed; ``mismatch``: it cannot be right (wrong
size, or the registry now publishes a different sha256 than the one recorded).
"""


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache_dir`` if given, else ``$ADM_HOME``, else the user cache dir."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser()
    import platformdirs

    return platformdirs.user_cache_path("adm", appauthor=False)


def entry_path(artifact: Artifact, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where ``artifact`` lives in the cache once downloaded and verified."""
    return cache_root(cache_dir) / artifact.name / artifact.filename


def part_path(path: Path) -> Path:
    return path.with_name(path.name + PART_SUFFIX)


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)


def record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


@dataclass(frozen=True)
class Record:
    """What the cache knows about one verified file."""

    name: str
    sha256: str
    size: int
    mtime_ns: int
    trust: Literal["published", "first-use"]
    source: str
    recorded_at: str

    @classmethod
    def for_file(cls, artifact: Artifact, file: Path, sha256: str, source: str) -> Record:
        st = file.stat()
        return cls(
            name=artifact.name,
            sha256=sha256,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            trust="published" if artifact.sha256 else "first-use",
            source=source,
            recorded_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )


def read_record(path: Path) -> Record | None:
    """The record of the cached file ``path``, or None (absent or unreadable counts as absent)."""
    try:
        data = json.loads(record_path(path).read_text(encoding="utf-8"))
        return Record(**{k: data[k] for k in Record.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(path: Path, record: Record) -> None:
    write_text_atomic(record_path(path), json.dumps(asdict(record), indent=2) + "\n")


def remove_entry(path: Path) -> None:
    """Delete a cached file and its record (not a .part: that is progress, not a verified file)."""
    for p in (path, record_path(path)):
        p.unlink(missing_ok=True)




def hash_into(
    hasher, file: Path, on_progress: ProgressCallback | None = None, total: int | None = None
) -> int:
    """Feed ``file`` into ``hasher``; returns the number of bytes read."""
    done = 0
    with open(file, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            hasher.update(chunk)
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, total)
    return done


def sha256_file(file: Path, on_progress: ProgressCallback | None = None) -> str:
    hasher = hashlib.sha256()
    hash_into(hasher, file, on_progress, total=file.stat().st_size)
    return hasher.hexdigest()


def inspect_entry(artifact: Artifact, path: Path) -> tuple[CacheState, Record | None]:
    """A quick look at a cache entry: stat calls and the record, no hashing."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):  # a part of the cache root is a file: nothing cached
        return "missing", None
    record = read_record(path)
    if record is None:
        if artifact.size is not None and st.st_size != artifact.size:
            return "mismatch", None
        return "unrecorded", None
    if artifact.sha256 and not hash_matches(record.sha256, artifact.sha256):
        return "mismatch", record
    if artifact.size is not None and st.st_size != artifact.size:
        return "mismatch", record
    if st.st_size != record.size:
        return "mismatch", record
    if st.st_mtime_ns != record.mtime_ns:
        return "changed", record
    return "ok", record


def expected_sha256(artifact: Artifact, record: Record | None) -> str | None:
    """The hash a cached file must have: the published one, else the one recorded on first use."""
    if artifact.sha256:
        return artifact.sha256.lower()
    return record.sha256.lower() if record else None


def hash_matches(digest: str, expected: str) -> bool:
    """``digest`` (full sha256 hex) equals ``expected``, which may also be a prefix of at least
    8 hex digits, as torch.hub file names carry (``...-6726825d.pth``)."""
    digest, expected = digest.lower(), expected.lower()
    if len(expected) < 8:
        raise ValueError(f"a sha256 prefix needs at least 8 hex digits, got {expected!r}")
    return digest.startswith(expected) if len(expected) < 64 else digest == expected
