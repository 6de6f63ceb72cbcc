"""Files adm manages: checkpoint downloads and the cache, imports of files fetched elsewhere,
checkpoint conversion, and the demo dataset.

Listing and fetching files needs no torch; converting a checkpoint does, so ``convert_checkpoint``
is imported on first use and ``adm download --list`` starts at once.
"""

from adm.data.digits import write_digits
from adm.hub.cache import cache_root
from adm.hub.download import (
    CacheEntry,
    cache_entries,
    download_artifact,
    ensure_artifact,
    import_file,
    resolve_artifacts,
    verify_artifact,
)
from adm.hub.transfer import TransferPolicy

_CONVERSION = ("convert_checkpoint",)  # adm.hub.checkpoints (torch), on first use

__all__ = [
    "CacheEntry",
    "TransferPolicy",
    "cache_entries",
    "cache_root",
    "download_artifact",
    "ensure_artifact",
    "import_file",
    "resolve_artifacts",
    "verify_artifact",
    "write_digits",
    *_CONVERSION,
]


def __getattr__(name: str):
    if name in _CONVERSION:
        from adm.hub.checkpoints import convert as convert_checkpoint

        globals()[name] = convert_checkpoint
        return convert_checkpoint
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
