"""CPU threads: a policy that degrades gracefully on a busy machine.

On a shared CPU, OpenMP's default of spinning while it waits for the other threads turns every
small operation into a wait for a preempted thread: ``adm sample --preset digits`` took minutes
with 2 threads on a busy 2-core machine and seconds with 1 (docs/performance.md). Two measures:

* ``prepare_environment`` asks OpenMP to sleep instead of spin (``OMP_WAIT_POLICY=PASSIVE``),
  unless the user chose a policy. OpenMP reads this when torch loads, so the ``adm`` command calls
  it before anything imports torch;
* ``set_threads`` applies an explicit thread count: ``--threads N`` or ``$ADM_THREADS``
  (``OMP_NUM_THREADS`` and torch's default otherwise).
"""

from __future__ import annotations

import os

from adm.core.errors import UsageError

THREADS_ENV = "ADM_THREADS"


def prepare_environment() -> None:
    """Call before torch is imported (the CLI entry point does)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_threads(requested: int | None = None) -> int:
    """Use ``requested`` (else ``$ADM_THREADS``) intra-op threads; returns the count in use."""
    import torch

    if requested is None and os.environ.get(THREADS_ENV):
        try:
            requested = int(os.environ[THREADS_ENV])
        except ValueError:
            raise UsageError(f"${THREADS_ENV} must be a number of threads, got {os.environ[THREADS_ENV]!r}") from None
    if requested is not None:
        if requested < 1:
            raise UsageError(f"the number of threads must be at least 1, got {requested}")
        torch.set_num_threads(requested)
    return torch.get_num_threads()
