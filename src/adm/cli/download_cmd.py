"""`adm download`: fetch artifacts into the cache, list the cache, verify it, import files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.filesize import decimal
from rich.table import Table

from adm.api.catalog import default_registry
from adm.api.downloads import (
    CacheEntry,
    TransferPolicy,
    cache_entries,
    cache_root,
    download_artifact,
    import_file,
    resolve_artifacts,
    verify_artifact,
)
from adm.cli.common import console, guarded, warn
from adm.cli.progress import RichProgress
from adm.core.errors import ChecksumError, MissingFileError, UsageError

STATE_TEXT = {
    "ok": "[green]yes[/]",
    "missing": "no",
    "unrecorded": "[yellow]unverified[/]",
    "changed": "[yellow]changed (run --verify)[/]",
    "mismatch": "[red]mismatch[/]",
}


@guarded
def download(
    names: list[str] | None = typer.Argument(
        None,
        metavar="NAME",
        help="Artifact or preset names (a preset fetches everything it needs).",
        show_default=False,
    ),
    list_: bool = typer.Option(
        False, "--list", help="List the downloadable artifacts and whether they are cached."
    ),
    force: bool = typer.Option(
        False, "--force", help="Download again even when cached (a partial download is discarded)."
    ),
    cache_dir: Path | None = typer.Option(
        None,
        "--dir",
        help="Cache root for this call (default: $ADM_HOME, else the user cache folder).",
        show_default=False,
    ),
    from_file: Path | None = typer.Option(
        None,
        "--from-file",
        help="Import a file fetched by hand: verified (size, sha256, and a preset's checkpoint against "
        "the preset's network), then copied into the cache.",
        show_default=False,
    ),
    verify: bool = typer.Option(
        False,
        "--verify",
        help="Rehash cached files (all, or the NAMEs) against their sha256; a preset's checkpoint "
        "must also fit the preset's network.",
    ),
) -> None:
    """Download checkpoints, reference batches and weights into the cache (resumable, verified).

    Files come from each artifact's URL, or from the mirror $ADM_BASE_URL when set; $ADM_DOWNLOAD_RETRIES, $ADM_DOWNLOAD_BACKOFF and $ADM_DOWNLOAD_TIMEOUT tune retries and timeouts.
    """
    registry = default_registry()
    for problem in registry.plugin_errors:
        warn(problem)
    names = names or []
    modes = [
        flag
        for flag, on in (("--list", list_), ("--verify", verify), ("--from-file", from_file))
        if on
    ]
    if len(modes) > 1:
        raise UsageError(f"{' and '.join(modes)} cannot be combined")
    if force and (list_ or verify):
        raise UsageError("--force only applies to downloads")

    artifacts = resolve_artifacts(names, registry) if names else None
    if list_:
        _list(cache_entries(artifacts, cache_dir=cache_dir, registry=registry), cache_dir, _families(registry))
        return
    if verify:
        _verify(artifacts, cache_dir, registry, explicit=bool(names))
        return
    if not artifacts:
        raise UsageError(
            "name what to download",
            "`adm download --list` lists the artifacts, `adm presets` the presets",
        )
    if from_file is not None:
        if len(artifacts) != 1:
            raise UsageError(
                f"--from-file imports one artifact, but {' '.join(names)} means {len(artifacts)}",
                "name the artifact: " + " or ".join(a.name for a in artifacts),
            )
        with RichProgress() as progress:
            done = import_file(artifacts[0], from_file, registry=registry, cache_dir=cache_dir, on_progress=progress)
        console.print(
            f"{done.artifact.name}: imported {decimal(done.size)}, sha256 {done.sha256} -> {done.path}",
            highlight=False,
            soft_wrap=True,
        )
        return

    policy = TransferPolicy.from_env()
    for art in artifacts:
        with RichProgress() as progress:
            got = download_artifact(art, registry=registry, cache_dir=cache_dir, force=force, policy=policy,
                                    on_progress=progress)
        what = {"cached": "already cached", "bundled": "ships with adm"}.get(got.action, f"downloaded {decimal(got.size)}")
        console.print(f"{art.name}: {what} -> {got.path}", highlight=False, soft_wrap=True)


KIND_TITLES = {"checkpoint": "checkpoints", "reference": "reference batches", "weights": "weights"}
UNKNOWN_SIZE = "unknown"  # no size published, nothing cached yet


def _families(registry) -> dict[str, str]:
    """Artifact name → the family of the presets that load it (as `adm presets` groups them)."""
    found: dict[str, str] = {}
    for preset in registry.presets.values():
        for name in preset.artifacts:
            found.setdefault(name, preset.family)
    return found


def _list(entries: list[CacheEntry], cache_dir: Path | None, families: dict[str, str]) -> None:
    """One table per kind of artifact (checkpoints: per family), each row one line at 80 columns:
    the folder is said once (a file is ROOT/NAME/FILE), so a row shows the file's name, not its path."""
    root = cache_root(cache_dir)
    console.print(f"adm artifacts in the cache {root} (a file there is NAME/FILE)", highlight=False, soft_wrap=True)
    kinds: dict[tuple[str, str], list[CacheEntry]] = {}
    for entry in entries:
        art = entry.artifact
        kinds.setdefault((art.kind, families.get(art.name, "") if art.kind == "checkpoint" else ""), []).append(entry)
    for (kind, family), group in kinds.items():
        title = KIND_TITLES.get(kind, f"{kind} artifacts")
        table = Table(title=f"{title}: {family}" if family else title)
        for column in ("name", "size", "cached", "file"):
            table.add_column(column, no_wrap=column != "cached")
        shipped = []
        for entry in group:
            if not entry.path.is_relative_to(root):  # a file adm ships: its place is the package
                shipped.append(entry.artifact.name)
            table.add_row(entry.artifact.name, _size(entry), _cached(entry), entry.path.name)
        if shipped:
            table.caption = f"{', '.join(shipped)}: part of adm itself, no download"
        console.print(table)
    if any(entry.size is None for entry in entries):
        console.print(f"size {UNKNOWN_SIZE}: not published; known once the file is downloaded", highlight=False,
                      soft_wrap=True)


def _size(entry: CacheEntry) -> str:
    return decimal(entry.size) if entry.size is not None else UNKNOWN_SIZE


def _cached(entry: CacheEntry) -> str:
    if entry.state == "missing" and entry.partial:
        return f"partial ({decimal(entry.partial)})"
    return STATE_TEXT[entry.state]


def _verify(artifacts, cache_dir: Path | None, registry, *, explicit: bool) -> None:
    if artifacts is None:
        artifacts = [
            e.artifact
            for e in cache_entries(cache_dir=cache_dir, registry=registry)
            if e.state != "missing"
        ]
        if not artifacts:
            console.print(f"nothing cached in {cache_root(cache_dir)}", highlight=False, soft_wrap=True)
            return
    failed, missing = [], []
    for art in artifacts:
        with RichProgress() as progress:
            result = verify_artifact(art, registry=registry, cache_dir=cache_dir, on_progress=progress)
        if result.status == "ok":
            trust = "published" if result.trust == "published" else "recorded at first download"
            console.print(
                f"[green]ok[/] {art.name}: sha256 {result.sha256} ({trust})",
                highlight=False,
                soft_wrap=True,
            )
        elif result.status == "mismatch":
            failed.append(art.name)
            got = f"got {result.sha256[:12]}…, " if result.sha256 else ""
            exp = f"expected {result.expected[:12]}…" if result.expected else "size changed"
            console.print(
                f"[red]mismatch[/] {art.name}: {got}{exp}; removed from the cache", highlight=False, soft_wrap=True
            )
        elif result.status == "invalid":
            failed.append(art.name)
            console.print(
                f"[red]invalid[/] {art.name}: {result.problem}; removed from the cache",
                highlight=False,
                soft_wrap=True,
            )
        elif result.status == "unverified":
            console.print(
                f"[yellow]unverified[/] {art.name}: {result.path} has no record and no published hash "
                f"(accept it with `adm download {art.name} --from-file {result.path}`)",
                highlight=False,
                soft_wrap=True,
            )
        else:
            missing.append(art.name)
            console.print(f"[dim]missing[/] {art.name}: not in the cache", highlight=False, soft_wrap=True)
    if failed:
        raise ChecksumError(
            f"{len(failed)} cached file(s) failed verification and were removed: {', '.join(failed)}",
            f"run `adm download {' '.join(failed)}`",
        )
    if missing and explicit:
        raise MissingFileError(
            f"not in the cache: {', '.join(missing)}", f"run `adm download {' '.join(missing)}`"
        )
