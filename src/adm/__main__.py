"""`python -m adm`."""

from adm.cli.entry import run

run()
