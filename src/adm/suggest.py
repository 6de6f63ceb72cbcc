"""The one did-you-mean helper: a hint for a name that is not known."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, known: Iterable[str], listing: str) -> str:
    """``did you mean a or b?`` for close matches of ``name``, else where the names are listed."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(close) + "?"
    return f"`{listing}` lists them"
