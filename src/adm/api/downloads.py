"""Files adm manages: checkpoint downloads and the cache, imports of files fetched elsewhere,
checkpoint conversion, and the demo dataset."""

from adm.data.digits import write_digits
from adm.hub.cache import cache_root
from adm.hub.checkpoints import convert as convert_checkpoint
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

__all__ = [
    "CacheEntry",
    "TransferPolicy",
    "cache_entries",
    "cache_root",
    "convert_checkpoint",
    "download_artifact",
    "ensure_artifact",
    "import_file",
    "resolve_artifacts",
    "verify_artifact",
    "write_digits",
]
