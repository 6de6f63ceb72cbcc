"""`adm.core.distributed` under a real two-process gloo group (CPU, localhost)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests_support import run_two_gloo_ranks

# One rank: join, use the group, import what `adm evaluate` imports once the group exists
# (torch-fidelity -> torchvision -> torch._dynamo), leave, then list the threads still running.
RANK_SCRIPT = textwrap.dedent(
    """
    import os
    from adm.core.distributed import init_distributed, shutdown

    d = init_distributed("cpu")
    assert d.world_size == 2, d
    assert d.all_gather_objects(d.rank) == [0, 1]
    assert d.broadcast_object("from rank 0" if d.is_main else None) == "from rank 0"
    import torchvision  # noqa: F401
    d.barrier()
    shutdown(d)
    names = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
    print("threads:", ",".join(names))
    """
)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="lists threads through /proc")
def test_shutdown_stops_every_gloo_thread():
    """A group that outlives shutdown() keeps gloo's threads alive into interpreter exit, where a
    rank can abort ("terminate called without an active exception") after finishing its work."""
    outputs = run_two_gloo_ranks(["-c", RANK_SCRIPT], timeout=120)
    for out in outputs:
        threads = [line for line in out.splitlines() if line.startswith("threads:")]
        assert threads, out
        assert "gloo" not in threads[-1], out
