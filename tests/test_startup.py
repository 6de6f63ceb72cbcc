"""Start-up without torch (issue 21): `adm --help` took 4.7 s, 2.5 of them importing torch for
nothing. Typer reads every command's options when `adm` starts, so the command modules, and the
settings models their options are made of, must import without torch; the commands that only
list things never load it.

Each check runs a fresh interpreter: torch, once imported by any test, stays in ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[1] / "src" / "adm" / "cli"

# A meta-path finder that refuses torch: a module that imports it fails, and the traceback names
# the chain of adm modules that led there.
IMPORT_EACH = """
import importlib, json, sys, traceback

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError("torch imported")

sys.meta_path.insert(0, NoTorch())
found = {}
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        if "torch imported" not in str(err):
            raise
        chain = [f.filename for f in traceback.extract_tb(err.__traceback__) if "/adm/" in f.filename]
        found[module] = " -> ".join(dict.fromkeys(p.split("/adm/", 1)[1] for p in chain))
print(json.dumps(found))
"""

# The real command, run in-process, then: did anything load torch?
RUN_ADM = """
import sys
from adm.cli.main import app
try:
    app(sys.argv[1:], prog_name="adm")
except SystemExit as done:
    assert not done.code, f"adm exited with {done.code}"
print("torch loaded:", "torch" in sys.modules, file=sys.stderr)
"""

def command_modules() -> list[str]:
    return sorted(f"adm.cli.{p.stem}" for p in CLI.glob("*.py") if p.stem not in ("__main__", "__init__", "main"))


def python(code: str, *args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80", "ADM_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


def test_the_command_modules_import_without_torch(tmp_path):
    modules = command_modules()
    result = python(IMPORT_EACH, *modules, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}  # module -> the adm files through which it imported torch


def test_the_check_sees_an_import_of_torch(tmp_path):
    result = python(IMPORT_EACH, "adm.api.models", home=tmp_path)
    assert "adm.api.models" in json.loads(result.stdout)


@pytest.mark.parametrize("args", ["--help", "presets", "download --list", "samplers", "sample --help"])
def test_listing_commands_never_load_torch(tmp_path, args):
    result = python(RUN_ADM, *args.split(), home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()  # it did its work
    assert "torch loaded: False" in result.stderr
