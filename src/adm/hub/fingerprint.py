"""What identifies a file (a checkpoint, an input image): a content fingerprint, cheap even for multi-gigabyte files.

A resumed sampling run must not mix images from two checkpoints (a run dir trained further, a
checkpoint overwritten in place), and must not care where the file lives. Small files are hashed
whole; large ones by their size and 16 evenly spaced 1 MiB windows (first and last included),
which any retraining or re-download of other weights changes, at the cost of reading 16 MiB.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

WHOLE_FILE_LIMIT = 64 << 20
WINDOW = 1 << 20
WINDOWS = 16


def file_fingerprint(path: str | Path) -> dict[str, object]:
    """``{"file", "size", "sha256"}`` of any file (``sha256`` over windows for large ones): checkpoints, images."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= WHOLE_FILE_LIMIT:
            for chunk in iter(lambda: f.read(WINDOW), b""):
                digest.update(chunk)
            how = "sha256"
        else:
            digest.update(str(size).encode())
            for k in range(WINDOWS):
                f.seek((size - WINDOW) * k // (WINDOWS - 1))
                digest.update(f.read(WINDOW))
            how = "sha256-sampled"
    return {"file": path.name, "size": size, how: digest.hexdigest()}
