"""Typed settings validated at the edge: one pydantic error becomes one line naming the option."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from adm.core.errors import UsageError
from adm.core.suggest import did_you_mean

M = TypeVar("M", bound=BaseModel)


def cli_option(field: str) -> str:
    """``guidance_interval`` → ``--guidance-interval``."""
    return "--" + field.split(".")[0].replace("_", "-")


def validated(cls: type[M], values: Mapping[str, Any], *, option: Callable[[str], str] = cli_option,
              what: str = "option") -> M:
    """``cls(**values)``, or a ``UsageError``: "bad value for --x: why", "unknown option 'y' (did you mean ...)"."""
    try:
        return cls(**values)
    except ValidationError as err:
        first = err.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            raise UsageError(f"unknown {what} {name!r}", did_you_mean(name, cls.model_fields, f"{cls.__name__} has:")) from None
        if not name:  # a check across fields: its message names them
            raise UsageError(message) from None
        raise UsageError(f"bad value for {option(name)}: {message}") from None
