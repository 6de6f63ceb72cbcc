"""Fetching registry artifacts into the cache, importing hand-fetched files, verifying the cache.

The public entry points all take the artifact (or its name) and keyword options; none keeps state
between calls. The registry is ``adm.presets.default_registry()`` unless a ``registry=`` is passed,
which is how tests and embedding applications use their own artifacts::

    from adm.hub.download import ensure_artifact
    path = ensure_artifact("256-cond")                 # MissingFileError if not downloaded yet
    path = ensure_artifact("256-cond", download=True)  # fetch (resumable, verified) if needed

Every writer of a cache entry holds that entry's file lock, so concurrent processes asking for the
same file download it once: the others wait for the lock, then find the file in place.
Layout and records: ``adm.hub.cache``; the HTTP side: ``adm.hub.transfer``.
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from adm.core.errors import (
    ChecksumError,
    DownloadStorageError,
    MissingFileError,
)
from adm.core.fileio import atomic_path
from adm.core.progress import ProgressFn, report
from adm.hub.artifacts import (
    ENV_BASE_URL,
    KIND_WORDS,
    CacheEntry,
    _artifact,
    _registry,
    bundled_path,
    cache_entries,
    cache_path,
    is_cached,
    resolve_artifacts,
    resolve_url,
)
from adm.hub.cache import (
    HASH_CHUNK,
    ProgressCallback,
    Record,
    cache_root,
    entry_path,
    hash_matches,
    inspect_entry,
    part_path,
    read_record,
    remove_entry,
    sha256_file,
    write_record,
)
from adm.hub.contents import contents_problem
from adm.hub.entry import check_locked, install, locked, settled
from adm.hub.transfer import TransferPolicy, fetch_to_part
from adm.presets.registry import Registry
from adm.presets.types import Artifact

__all__ = [
    "ENV_BASE_URL",
    "CacheEntry",
    "Fetched",
    "TransferPolicy",
    "Verified",
    "cache_entries",
    "cache_path",
    "cache_root",
    "download_artifact",
    "ensure_artifact",
    "import_file",
    "is_cached",
    "resolve_artifacts",
    "resolve_url",
    "verify_artifact",
]


@dataclass(frozen=True)
class Fetched:
    """The outcome of ``download_artifact`` / ``import_file``: a verified file in the cache."""

    artifact: Artifact
    path: Path
    sha256: str
    size: int
    action: Literal["cached", "downloaded", "imported", "bundled"]
    source: str
    resumed_from: int = 0


@dataclass(frozen=True)
class Verified:
    """The outcome of ``verify_artifact``.

    ``ok``: the hash matches the published / recorded one (and a preset's checkpoint fits the
    preset's network); ``missing``: not in the cache; ``mismatch``: it did not match and was
    removed; ``invalid``: the hash matches, but the file is not the checkpoint a preset needs
    (``problem`` says why; removed); ``unverified``: a file with no published hash and no record
    (placed by hand), nothing to check it against.
    """

    artifact: Artifact
    path: Path
    status: Literal["ok", "missing", "mismatch", "invalid", "unverified"]
    sha256: str | None = None
    expected: str | None = None
    trust: str | None = None
    problem: str | None = None


@dataclass
class _Reporter:
    """One artifact's byte counts and notes as records of the library's one progress protocol
    (``adm.core.progress``): the transfer internals report ``(done, total)`` and short messages."""

    name: str
    on_progress: ProgressFn | None
    total: int | None = None
    done: int = 0

    def bytes(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total
        report(self.on_progress, self.name, done, total, unit="B")

    def status(self, message: str) -> None:
        report(self.on_progress, self.name, self.done, self.total, unit="B", message=message)


# ------------------------------------------------------------------------------------- actions


def download_artifact(
    artifact: Artifact | str,
    *,
    registry: Registry | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    base_url: str | None = None,
    policy: TransferPolicy | None = None,
    on_progress: ProgressFn | None = None,
    session=None,
) -> Fetched:
    """Make sure a verified copy of ``artifact`` is in the cache, downloading it if needed.

    ``force`` downloads again from scratch (a partial download is discarded). ``base_url``
    (default ``$ADM_BASE_URL``) fetches from a mirror instead of the canonical URL. Progress goes to
    ``on_progress`` as ``Progress`` records (task = the artifact's name, unit ``"B"``); short notes
    (resuming, retrying, waiting for another process) are records with a ``message``.

    A checkpoint that a preset loads is also checked against the preset's network before it is
    recorded (``contents_problem``); a file that does not fit is deleted, ``.part`` included,
    since resuming it could only give the same bytes.
    """
    reg = _registry(registry)
    art = _artifact(artifact, reg)
    bundled = bundled_path(art)
    if bundled is not None:
        return Fetched(art, bundled, sha256_file(bundled), bundled.stat().st_size, "bundled", art.url)
    path = entry_path(art, cache_dir)
    reporter = _Reporter(art.name, on_progress, art.size)
    status = reporter.status
    if not force:
        state, record = inspect_entry(art, path)
        if state == "ok" and record is not None:
            return Fetched(art, path, record.sha256, record.size, "cached", record.source)
    if art.import_only and resolve_url(art, base_url) == art.url:  # no mirror serves it either
        raise MissingFileError(f"{art.name} cannot be downloaded: {art.url} is a page, not the file",
                               f"fetch {art.filename} there and run `adm download {art.name} --from-file FILE`")
    with locked(art, path, status):
        if not force:
            state, record, _ = check_locked(art, path, reporter.bytes)
            if (
                state == "ok" and record is not None
            ):  # possibly fetched by the process we waited for
                return Fetched(art, path, record.sha256, record.size, "cached", record.source)
            if state == "mismatch":
                status(
                    f"{art.name}: the cached copy failed verification and was removed; downloading again"
                )
        url = resolve_url(art, base_url)
        got = fetch_to_part(
            url,
            part_path(path),
            name=art.name,
            expected_size=art.size,
            expected_sha256=art.sha256,
            policy=policy or TransferPolicy.from_env(),
            on_progress=reporter.bytes,
            on_status=status,
            session=session,
            restart=force,
        )
        problem = contents_problem(art, part_path(path), shown=f"the file served at {url}", registry=reg)
        if problem is not None:
            part_path(path).unlink(missing_ok=True)
            raise ChecksumError(
                f"{problem}; it was deleted",
                "the server sent another file: check the URL, or the ADM_BASE_URL mirror",
            )
        install(art, path, part_path(path), got.sha256, url)
    return Fetched(art, path, got.sha256, got.size, "downloaded", url, got.resumed_from)


def import_file(
    artifact: Artifact | str,
    source: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    on_progress: ProgressFn | None = None,
) -> Fetched:
    """Copy a hand-fetched file into the cache after checking its size and sha256 where known,
    and, for a checkpoint a preset loads, that it fits the preset's network.

    The copy goes to a temporary file next to the cache entry (``adm.core.fileio.atomic_path``) and is
    renamed into place only when it checks out; a file that does not is never in the cache. With
    no published hash, the copy's hash is recorded (trust on first use) like a download's.
    """
    reg = _registry(registry)
    art = _artifact(artifact, reg)
    src = Path(source).expanduser()
    if not src.is_file():
        raise MissingFileError(
            f"{src} is not a file", f"pass the path of the downloaded {art.filename}"
        )
    path = entry_path(art, cache_dir)
    total = src.stat().st_size
    which = f"is it {art.filename} from {art.url}?"
    if art.size is not None and total != art.size:
        raise ChecksumError(f"{src} has {total} bytes, {art.name} has {art.size}; nothing was imported", which)
    reporter = _Reporter(art.name, on_progress, total)
    with locked(art, path, reporter.status):
        try:
            with atomic_path(path) as tmp:
                digest, done = _copy_hashing(src, tmp, total, reporter.bytes)
                if art.size is not None and done != art.size:
                    raise ChecksumError(f"{src} has {done} bytes, {art.name} has {art.size}; nothing was imported")
                if art.sha256 and not hash_matches(digest, art.sha256):
                    raise ChecksumError(
                        f"{src} does not match the published sha256 of {art.name} (got {digest[:12]}…, "
                        f"expected {art.sha256.lower()[:12]}…); nothing was imported",
                        which,
                    )
                problem = contents_problem(art, tmp, shown=str(src), registry=reg)
                if problem is not None:
                    raise ChecksumError(f"{problem}; nothing was imported", which)
                # the record first, then the rename: a file in place always has its record
                write_record(path, Record.for_file(art, tmp, digest, src.resolve().as_uri()))
        except OSError as err:
            if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise DownloadStorageError(
                    f"disk full while copying {src} into {path.parent}",
                    "free some space, or pass --dir / set ADM_HOME to a larger disk",
                ) from None
            raise DownloadStorageError(f"cannot import {src}: {err.strerror or err}") from None
        # an abandoned download of the same file is moot now
        part_path(path).unlink(missing_ok=True)
    return Fetched(art, path, digest, done, "imported", src.resolve().as_uri())


def _copy_hashing(
    src: Path, dst: Path, total: int, on_progress: ProgressCallback | None
) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` and hash what was copied; returns (sha256, bytes)."""
    hasher = hashlib.sha256()
    done = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(HASH_CHUNK):
            fout.write(chunk)
            hasher.update(chunk)
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, total)
    return hasher.hexdigest(), done


def verify_artifact(
    artifact: Artifact | str,
    *,
    registry: Registry | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    on_progress: ProgressFn | None = None,
) -> Verified:
    """Rehash a cached file and compare with its published or recorded sha256, and check a preset's
    checkpoint against the preset's network; remove the file when either fails.

    The contents check catches files recorded before adm checked them on arrival (an image
    imported as a checkpoint was once trusted on first use like anything else).
    """
    reg = _registry(registry)
    art = _artifact(artifact, reg)
    bundled = bundled_path(art)
    if bundled is not None:
        return Verified(art, bundled, "ok", sha256_file(bundled), art.sha256, "bundled")
    path = entry_path(art, cache_dir)
    if not path.exists():
        return Verified(art, path, "missing")
    reporter = _Reporter(art.name, on_progress, art.size)
    with locked(art, path, reporter.status):
        before = read_record(path)
        status, record, digest = check_locked(art, path, reporter.bytes, rehash=True)
        problem = contents_problem(art, path, registry=reg) if status == "ok" else None
        if problem is not None:
            remove_entry(path)
    expected = art.sha256.lower() if art.sha256 else (before.sha256 if before else None)
    trust = record.trust if record else (before.trust if before else None)
    if problem is not None:
        return Verified(art, path, "invalid", digest, expected, trust, problem)
    return Verified(art, path, status, digest, expected, trust)


def ensure_artifact(
    name: Artifact | str,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    on_progress: ProgressFn | None = None,
    registry: Registry | None = None,
    base_url: str | None = None,
    policy: TransferPolicy | None = None,
) -> Path:
    """The cached, verified path of an artifact; downloads it when ``download`` is true.

    A file whose size or modification time changed since it was recorded is rehashed (and removed
    if it no longer matches). Without ``download``, a missing file raises ``MissingFileError``
    naming the command that fetches it.
    """
    reg = _registry(registry)
    art = _artifact(name, reg)
    bundled = bundled_path(art)
    if bundled is not None:
        return bundled
    path = entry_path(art, cache_dir)
    reporter = _Reporter(art.name, on_progress, art.size)
    state, _ = settled(art, path, reporter.bytes, reporter.status)
    if state == "ok":
        return path
    if download:
        return download_artifact(
            art,
            registry=reg,
            cache_dir=cache_dir,
            base_url=base_url,
            policy=policy,
            on_progress=on_progress,
        ).path
    what = f"{KIND_WORDS.get(art.kind, 'artifact')} {art.name}"
    fix = f"run `adm download {art.name}`, or pass --download"
    if state == "mismatch":
        raise ChecksumError(f"the cached {what} failed verification and was removed ({path})", fix)
    if state == "unverified":
        raise MissingFileError(
            f"the {what} at {path} was not placed there by adm and has no published hash to check",
            f"run `adm download {art.name} --from-file {path}` to accept it, or `adm download {art.name}`",
        )
    raise MissingFileError(f"{what} is not in the cache ({path})", fix)
