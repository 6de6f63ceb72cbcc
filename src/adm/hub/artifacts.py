"""Artifacts by name: what the registry knows, where each lives, files shipped inside packages.

Pure look-ups: nothing here downloads or writes. ``adm.hub.download`` does the fetching.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from adm.core.errors import ChecksumError, MissingFileError, UsageError
from adm.core.suggest import did_you_mean
from adm.hub.cache import (
    CacheState,
    entry_path,
    hash_matches,
    inspect_entry,
    part_path,
    sha256_file,
)
from adm.presets.registry import Registry, default_registry
from adm.presets.types import Artifact

ENV_BASE_URL = "ADM_BASE_URL"

KIND_WORDS = {
    "checkpoint": "checkpoint",
    "reference": "reference batch",
    "weights": "weights",
    "other": "artifact",
}


@dataclass(frozen=True)
class CacheEntry:
    """One row of ``adm download --list`` (from stat calls, no hashing)."""

    artifact: Artifact
    path: Path
    state: CacheState
    size: int | None
    partial: int


def _registry(registry: Registry | None) -> Registry:
    return registry if registry is not None else default_registry()


def _artifact(artifact: Artifact | str, registry: Registry | None) -> Artifact:
    return artifact if isinstance(artifact, Artifact) else _registry(registry).artifact(artifact)


def cache_path(
    artifact: Artifact | str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    registry: Registry | None = None,
) -> Path:
    """Where an artifact (or artifact name) lives in the cache, whether or not it is there."""
    return entry_path(_artifact(artifact, registry), cache_dir)


def resolve_url(artifact: Artifact, base_url: str | None = None) -> str:
    """The URL to fetch: below ``base_url`` / ``$ADM_BASE_URL`` when set, else the canonical one."""
    base = base_url if base_url is not None else os.environ.get(ENV_BASE_URL, "")
    if base.strip():
        return (
            base.strip().rstrip("/") + "/" + (artifact.mirror_path or artifact.filename).lstrip("/")
        )
    return artifact.url


PACKAGE_SCHEME = "package:"


def bundled_path(art: Artifact) -> Path | None:
    """The file of an artifact shipped inside an installed package (``package:adm.assets/f``),
    checked against its sha256 (once per process and file version); None for ordinary
    (downloaded) artifacts."""
    if not art.url.startswith(PACKAGE_SCHEME):
        return None
    package, _, name = art.url[len(PACKAGE_SCHEME) :].partition("/")
    try:
        path = Path(str(importlib.resources.files(package).joinpath(name)))
    except ModuleNotFoundError:
        path = Path(package, name)
    if not path.is_file():
        raise MissingFileError(f"{art.name} ships with the {package} package, but {path} is missing", "reinstall adm-diffusion")
    if art.sha256 and not _matches(str(path), path.stat().st_size, path.stat().st_mtime_ns, art.sha256):
        raise ChecksumError(f"the bundled {art.name} ({path}) does not match its sha256", "reinstall adm-diffusion")
    return path


@functools.lru_cache(maxsize=64)
def _matches(path: str, size: int, mtime_ns: int, sha256: str) -> bool:
    """Hash a bundled file once per process (size and mtime in the key: a changed file is rehashed)."""
    return hash_matches(sha256_file(Path(path)), sha256)


def resolve_artifacts(names: Iterable[str], registry: Registry | None = None) -> list[Artifact]:
    """Artifact names and preset names (expanded to what the preset needs), deduplicated, in order."""
    reg = _registry(registry)
    artifacts, presets = reg.artifacts, reg.presets
    out: dict[str, Artifact] = {}
    for name in names:
        if name in artifacts:
            out.setdefault(name, artifacts[name])
        elif name in presets:
            for needed in presets[name].artifacts:
                out.setdefault(needed, reg.artifact(needed))
        else:
            hint = did_you_mean(name, [*artifacts, *presets], "adm download --list")
            raise UsageError(f"unknown artifact or preset {name!r}", hint)
    return list(out.values())


def is_cached(
    name: Artifact | str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    registry: Registry | None = None,
) -> bool:
    """Whether a verified copy is in the cache (a quick look: stat and record, no hashing)."""
    art = _artifact(name, registry)
    return inspect_entry(art, entry_path(art, cache_dir))[0] == "ok"


def cache_entries(
    artifacts: Iterable[Artifact] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    registry: Registry | None = None,
) -> list[CacheEntry]:
    """The cache state of each artifact (default: every registered one), without hashing."""
    arts = (
        list(artifacts) if artifacts is not None else list(_registry(registry).artifacts.values())
    )
    entries = []
    for art in arts:
        if art.url.startswith(PACKAGE_SCHEME):
            path = bundled_path(art)
            entries.append(CacheEntry(art, path, "ok", path.stat().st_size, 0))
            continue
        path = entry_path(art, cache_dir)
        state, _ = inspect_entry(art, path)
        try:
            size: int | None = path.stat().st_size
        except OSError:
            size = art.size
        try:
            partial = part_path(path).stat().st_size
        except OSError:
            partial = 0
        entries.append(CacheEntry(art, path, state, size, partial))
    return entries
