"""``guided_diffusion.logger``, the part the original's scripts and forks call.

``configure`` picks the log folder as the original does (``dir``, else ``$OPENAI_LOGDIR``, else a
new ``openai-<time>`` folder in the temp dir) and the outputs from ``format_strs`` (else
``$OPENAI_LOG_FORMAT``, default ``stdout,log,csv``; ranks other than 0 write only ``log``, to a
``-rankNNN`` file). ``log`` writes a line to the text outputs; ``logkv`` / ``logkv_mean`` collect
values and ``dumpkvs`` writes them as one row (a table on the text outputs, a line of
``progress.csv`` / ``progress.json``). This module is a script's logger, so it writes to stdout
like the original; adm's own library never does. Not provided: TensorBoard output, MPI
averaging (``comm``), ``profile``.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
from collections import defaultdict
from contextlib import contextmanager

from adm.core.errors import UsageError
from adm.core.fileio import atomic_path

DEBUG = 10
INFO = 20
WARN = 30
ERROR = 40
DISABLED = 50

FORMATS = ("stdout", "log", "csv", "json")


class _Text:
    """Lines and key/value tables, to stdout or a text file."""

    def __init__(self, path: str | None):
        self.file = sys.stdout if path is None else open(path, "w", encoding="utf-8")  # noqa: SIM115 (kept open)

    def write_line(self, text: str) -> None:
        self.file.write(text + "\n")
        self.file.flush()

    def write_row(self, row: dict) -> None:
        if not row:
            return
        cells = {str(k)[:30]: (f"{v:<8.3g}" if isinstance(v, float) else str(v))[:30] for k, v in row.items()}
        width = max(map(len, cells)), max(map(len, cells.values()))
        rule = "-" * (width[0] + width[1] + 7)
        body = [f"| {k:<{width[0]}} | {v:<{width[1]}} |" for k, v in sorted(cells.items())]
        self.write_line("\n".join([rule, *body, rule]))

    def close(self) -> None:
        if self.file is not sys.stdout:
            self.file.close()


class _Csv:
    """``progress.csv``: one row per ``dumpkvs``; a new key rewrites the file with a wider header."""

    def __init__(self, path: str):
        self.path, self.keys, self.rows = path, [], []

    def write_row(self, row: dict) -> None:
        self.keys += [k for k in row if k not in self.keys]
        self.rows.append([row.get(k, "") for k in self.keys])
        lines = [",".join(self.keys)]
        lines += [",".join(str(v) for v in values) + "," * (len(self.keys) - len(values)) for values in self.rows]
        with atomic_path(self.path) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def close(self) -> None:
        pass


class _Json:
    """``progress.json``: one JSON object per ``dumpkvs``."""

    def __init__(self, path: str):
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (kept open)

    def write_row(self, row: dict) -> None:
        self.file.write(json.dumps({k: float(v) if hasattr(v, "dtype") else v for k, v in row.items()}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _output(name: str, folder: str, suffix: str):
    if name == "stdout":
        return _Text(None)
    if name == "log":
        return _Text(os.path.join(folder, f"log{suffix}.txt"))
    if name == "csv":
        return _Csv(os.path.join(folder, f"progress{suffix}.csv"))
    if name == "json":
        return _Json(os.path.join(folder, f"progress{suffix}.json"))
    raise UsageError(f"unknown log format {name!r}", hint=f"use {', '.join(FORMATS)}")


class Logger:
    """A log folder, its outputs, the level and the values collected since the last dump."""

    CURRENT: Logger | None = None

    def __init__(self, folder: str, outputs: list):
        self.dir, self.outputs, self.level = folder, outputs, INFO
        self.values: dict = {}
        self.means: dict = defaultdict(lambda: (0.0, 0))

    def log(self, *args, level: int = INFO) -> None:
        if self.level <= level:
            for out in self.outputs:
                if isinstance(out, _Text):
                    out.write_line(" ".join(map(str, args)))

    def dumpkvs(self) -> dict:
        row = dict(self.values)
        row.update({k: total / count for k, (total, count) in self.means.items()})
        if self.level != DISABLED:
            for out in self.outputs:
                out.write_row(row)
        self.values.clear()
        self.means.clear()
        return row

    def close(self) -> None:
        for out in self.outputs:
            out.close()


def configure(dir=None, format_strs=None, comm=None, log_suffix="") -> None:  # noqa: A002 (the original's name)
    folder = dir or os.getenv("OPENAI_LOGDIR") or os.path.join(
        tempfile.gettempdir(), datetime.datetime.now().strftime("openai-%Y-%m-%d-%H-%M-%S-%f")
    )
    folder = os.path.expanduser(folder)
    os.makedirs(folder, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    if rank > 0:
        log_suffix = f"{log_suffix}-rank{rank:03d}"
    if format_strs is None:
        format_strs = os.getenv("OPENAI_LOG_FORMAT" if rank == 0 else "OPENAI_LOG_FORMAT_MPI", "stdout,log,csv" if rank == 0 else "log").split(",")
    if Logger.CURRENT is not None:
        Logger.CURRENT.close()
    Logger.CURRENT = Logger(folder, [_output(name, folder, log_suffix) for name in format_strs if name])
    if Logger.CURRENT.outputs:
        log(f"Logging to {folder}")


def get_current() -> Logger:
    if Logger.CURRENT is None:
        configure()
    return Logger.CURRENT


def get_dir() -> str:
    return get_current().dir


def log(*args, level: int = INFO) -> None:
    get_current().log(*args, level=level)


def debug(*args) -> None:
    log(*args, level=DEBUG)


def info(*args) -> None:
    log(*args, level=INFO)


def warn(*args) -> None:
    log(*args, level=WARN)


def error(*args) -> None:
    log(*args, level=ERROR)


def set_level(level: int) -> None:
    get_current().level = level


def logkv(key, val) -> None:
    """Record ``key`` for this row (the last value wins)."""
    get_current().values[key] = val


def logkv_mean(key, val) -> None:
    """Record ``key`` for this row as the mean of every value given."""
    total, count = get_current().means[key]
    get_current().means[key] = (total + float(val), count + 1)


def logkvs(d: dict) -> None:
    for key, val in d.items():
        logkv(key, val)


def getkvs() -> dict:
    current = get_current()
    return {**current.values, **{k: total / count for k, (total, count) in current.means.items()}}


def dumpkvs() -> dict:
    return get_current().dumpkvs()


@contextmanager
def scoped_configure(dir=None, format_strs=None, comm=None):  # noqa: A002 (the original's name)
    previous = Logger.CURRENT
    Logger.CURRENT = None
    configure(dir=dir, format_strs=format_strs, comm=comm)
    try:
        yield
    finally:
        Logger.CURRENT.close()
        Logger.CURRENT = previous


__all__ = [
    "DEBUG", "DISABLED", "ERROR", "INFO", "WARN", "configure", "debug", "dumpkvs", "error", "get_current",
    "get_dir", "getkvs", "info", "log", "logkv", "logkv_mean", "logkvs", "scoped_configure", "set_level", "warn",
]
