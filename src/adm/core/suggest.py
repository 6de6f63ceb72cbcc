"""The one did-you-mean helper: a hint for a name that is not known."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, known: Iterable[str], listing: str, *, prefix: str = "") -> str:
    """``did you mean a or b?`` for close matches of ``name``, else where the names are listed.

    ``listing`` is a command in backticks (``adm presets``) or, with a space-free ending colon,
    plain text; ``prefix`` goes before each suggestion (``--`` for flags).
    """
    known = list(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.7)  # 0.5 offered --use_kl for --bogus_flag
    if close:
        return "did you mean " + " or ".join(prefix + c for c in close) + "?"
    if listing.endswith(":"):
        return f"{listing} {', '.join(known)}"
    return f"`{listing}` lists them"
