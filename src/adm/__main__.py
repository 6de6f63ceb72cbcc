"""`python -m adm`."""

from adm.cli.main import run

run()
