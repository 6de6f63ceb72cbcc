"""Is a file the checkpoint an artifact must be? Checked against the networks of the presets that load it."""

from __future__ import annotations

import os

from adm.core.errors import CheckpointError
from adm.hub.artifacts import _artifact, _registry
from adm.presets.registry import Registry
from adm.presets.types import Artifact


def _networks(art: Artifact, registry: Registry) -> list[tuple[str, str, object]]:
    """(preset name, "model" or "classifier", flags) of every preset that loads ``art``, one per
    distinct network."""
    found: dict[str, tuple[str, str, object]] = {}
    for preset in registry.presets.values():
        if preset.checkpoint == art.name:
            role, flags = "model", preset.model_flags
        elif preset.classifier_checkpoint == art.name and preset.classifier_flags is not None:
            role, flags = "classifier", preset.classifier_flags
        else:
            continue
        found.setdefault(f"{type(flags).__name__}{flags.model_dump_json()}", (preset.name, role, flags))
    return list(found.values())


def contents_problem(
    artifact: Artifact | str,
    file: str | os.PathLike[str],
    *,
    shown: str | None = None,
    registry: Registry | None = None,
) -> str | None:
    """Why ``file`` cannot be ``artifact``'s checkpoint, or None when it can (or adm knows nothing
    to check it against).

    A hash only says the file is the one first seen (OpenAI published none); for a checkpoint a
    preset loads, adm knows every key and shape, so a wrong file (an HTML error page, an image, a
    different model) is caught when it arrives instead of at the first ``adm sample``. The file
    is read as ``load_state_dict`` reads it (weights only: pickled code is refused, never run),
    with the tensors mapped rather than read. ``shown`` is what the message calls the file.
    """
    reg = _registry(registry)
    art = _artifact(artifact, reg)
    networks = _networks(art, reg)
    if not networks:
        return None
    from adm.hub.checkpoints import describe_mismatch, network_signature, read_signature

    shown = shown or str(file)
    fmt = "safetensors" if art.filename.endswith(".safetensors") else "pt"
    try:
        got = read_signature(file, fmt=fmt, shown=shown)
    except CheckpointError as err:
        return str(err)
    for preset, role, flags in networks:
        expected = network_signature(flags)
        if got != expected:
            return f"{shown} does not fit the {role} of preset {preset} ({describe_mismatch(expected, got)})"
    return None
