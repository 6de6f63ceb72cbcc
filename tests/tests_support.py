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


def install_plugin(root: Path, module: str, source: str, entry_points: dict[str, dict[str, str]]) -> Path:
    """A third-party distribution as pip would leave it: ``module.py`` and a ``.dist-info`` whose
    ``entry_points.txt`` holds ``{group: {name: "module:attribute"}}``. Put ``root`` on PYTHONPATH."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(source)
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    lines = []
    for group, names in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in names.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


def run_adm_with(path: Path, *args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m adm.cli ARGS`` in a fresh process with ``path`` on PYTHONPATH (plugins installed there)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "adm.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)
