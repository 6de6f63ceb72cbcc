"""``python -m adm.compat SCRIPT [ARGS...]``: run an unmodified guided-diffusion, improved-diffusion or
consistency_models script on adm.

The script runs as ``__main__`` with ``sys.argv`` and ``sys.path[0]`` as ``python SCRIPT ARGS``
would set them, after ``adm.compat.install()``: its ``import guided_diffusion...`` (``improved_diffusion``,
``cm``) lines get adm's modules (and so adm's safe checkpoint loading). ``-m MODULE`` runs a module instead, as
``python -m MODULE``. A problem adm explains (``AdmError``) is printed as one line and exits with
its code; anything else the script raises is the script's own and keeps its traceback.
"""

from __future__ import annotations

import os
import runpy
import sys

USAGE = "usage: python -m adm.compat SCRIPT [ARGS...]  |  python -m adm.compat -m MODULE [ARGS...]"


def _module_exists(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package is missing
        return False


def main(argv: list[str] | None = None) -> int:
    from adm.core.threads import prepare_environment

    prepare_environment()  # before the script imports torch
    from adm.compat.alias import install
    from adm.core.errors import EXIT_USAGE, AdmError

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if not argv or (argv[0] == "-m" and len(argv) < 2):
        print(f"error: no script given ({USAGE})", file=sys.stderr)
        return EXIT_USAGE
    try:
        install()
        if argv[0] == "-m":
            if not _module_exists(argv[1]):
                print(f"error: no module named {argv[1]}", file=sys.stderr)
                return EXIT_USAGE
            sys.argv = [argv[1], *argv[2:]]  # runpy puts the module's file name in argv[0]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            script = argv[0]
            if not os.path.isfile(script):
                print(f"error: {script}: no such script", file=sys.stderr)
                return EXIT_USAGE
            sys.argv = argv
            sys.path[0] = os.path.dirname(os.path.abspath(script))
            runpy.run_path(script, run_name="__main__")
    except AdmError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
