"""The plumbing every layer shares, importing nothing else of adm.

``errors`` (one-line user errors with a hint and an exit code), ``fileio`` (atomic writes with
the umask's mode), ``progress`` (the one progress protocol), ``distributed`` (torchrun and
``torch.distributed``), ``threads`` (the CPU thread policy) and ``suggest`` (did-you-mean).
"""
