"""`python -m adm.cli` (what torchrun runs: `torchrun ... -m adm.cli sample ...`)."""

from adm.cli.entry import run

run()
