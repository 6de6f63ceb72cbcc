"""The console script: prepare the process (OpenMP's wait policy), then load the CLI and torch."""

from __future__ import annotations


def run() -> None:
    from adm.core.threads import prepare_environment

    prepare_environment()
    from adm.cli.main import run as main

    main()
