"""Suite-wide settings.

One intra-op thread per process: the tests run tiny models, and on a small machine several
processes (pytest, torchrun workers, download subprocesses) share the cores. With OpenMP's
spinning threads, oversubscription makes a 6 ms forward take over a second.
"""

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
