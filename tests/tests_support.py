"""Assertions and launchers shared by several test modules."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

REPO_SRC = Path(__file__).resolve().parents[1] / "src"


def assert_manifest(module: torch.nn.Module, manifest: dict) -> None:
    """state_dict keys in order, shapes, dtypes, tensor and parameter counts equal a golden manifest."""
    state = module.state_dict()
    got = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()]
    assert [k for k, *_ in got] == [k for k, *_ in manifest["state_dict"]], "keys or their order differ"
    assert got == manifest["state_dict"]
    assert len(state) == manifest["num_tensors"]
    assert sum(p.numel() for p in module.parameters()) == manifest["num_params"]


def run_two_gloo_ranks(args: list[str], timeout: float = 240, **extra_env: str) -> list[str]:
    """``python ARGS`` as ranks 0 and 1 of a localhost torchrun-style world (gloo on the CPU).

    Returns each rank's combined stdout/stderr after asserting that both exited with 0.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
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
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_SRC), os.environ.get("PYTHONPATH")) if p),
            **extra_env,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    return outputs
