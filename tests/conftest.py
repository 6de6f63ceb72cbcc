"""Suite-wide settings.

One intra-op thread per process: the tests run tiny models, and on a small machine several
processes (pytest, torchrun workers, download subprocesses) share the cores. With OpenMP's
spinning threads, oversubscription makes a 6 ms forward take over a second.
"""

import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty cache and no network: everything must come from the wheel (the shipped demos)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADM_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("ADM_BASE_URL", "http://127.0.0.1:9/")  # a download would fail
    return tmp_path
