"""The plumbing every layer shares, importing nothing else of adm.

``errors`` (one-line user errors with a hint and an exit code), ``fileio`` (atomic writes with
the umask's mode), ``progress`` (the one progress protocol), ``distributed`` (torchrun and
``torch.distributed``), ``threads`` (the CPU thread policy), ``suggest`` (did-you-mean),
``validation`` (settings validated into one-line errors, finite numbers only), ``signals``
(SIGINT/SIGTERM as interruptions that say what was kept) and ``locks`` (one writer per output).
"""
