"""`adm.distributed` under a real two-process gloo group (CPU, localhost)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_SRC = Path(__file__).resolve().parents[1] / "src"

# One rank: join, use the group, import what `adm evaluate` imports once the group exists
# (torch-fidelity -> torchvision -> torch._dynamo), leave, then list the threads still running.
RANK_SCRIPT = textwrap.dedent(
    """
    import os
    from adm.distributed import init_distributed, shutdown

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="lists threads through /proc")
def test_shutdown_stops_every_gloo_thread(tmp_path):
    """A group that outlives shutdown() keeps gloo's threads alive into interpreter exit, where a
    rank can abort ("terminate called without an active exception") after finishing its work."""
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_SRC), os.environ.get("PYTHONPATH")) if p
            ),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", RANK_SCRIPT],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    for out in outputs:
        threads = [line for line in out.splitlines() if line.startswith("threads:")]
        assert threads, out
        assert "gloo" not in threads[-1], out
