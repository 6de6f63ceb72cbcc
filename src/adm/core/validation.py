"""Typed settings validated at the edge: one pydantic error becomes one line naming the option.

Every settings object (sampling and run options, sampler settings, model flags, training
configs) is made by ``validated``, which is also where non-finite numbers are refused, for all of
them at once: ``inf`` and ``nan`` parse as floats (``--scale inf``, ``--eta nan``), pass or fail
range checks by accident (``nan >= 0`` is false, ``inf >= 0`` true) and end as saturated images
and JSON that is not JSON (``"scale": Infinity``). No setting of adm means anything at infinity.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from adm.core.errors import UsageError
from adm.core.suggest import did_you_mean

M = TypeVar("M", bound=BaseModel)

FINITE = "Input should be a finite number"  # pydantic's words for its own allow_inf_nan=False check
_NUMBER_CHECKS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of",
                  "finite_number", "float_parsing"}


def cli_option(field: str) -> str:
    """``guidance_interval`` → ``--guidance-interval``."""
    return "--" + field.split(".")[0].replace("_", "-")


def validated(cls: type[M], values: Mapping[str, Any], *, option: Callable[[str], str] = cli_option,
              what: str = "option") -> M:
    """``cls(**values)``, or a ``UsageError``: "bad value for --x: why", "unknown option 'y' (did you mean ...)".

    A non-finite number is refused, given as a number (``--scale inf``) or as text that a float
    field parses (``scale="nan"``), whatever else the field's checks would have said about it.
    """
    _refuse_non_finite(values, option)
    try:
        made = cls(**values)
    except ValidationError as err:
        first = err.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            raise UsageError(f"unknown {what} {name!r}", did_you_mean(name, cls.model_fields, f"{cls.__name__} has:")) from None
        if not name:  # a check across fields: its message names them
            raise UsageError(message) from None
        if first["type"] in _NUMBER_CHECKS and _non_finite_text(first.get("input")):
            raise UsageError(f"bad value for {option(name)}: {FINITE}, got {first['input']}") from None
        raise UsageError(f"bad value for {option(name)}: {message}") from None
    _refuse_non_finite({name: getattr(made, name) for name in type(made).model_fields}, option)
    return made


def _refuse_non_finite(values: Mapping[str, Any], option: Callable[[str], str]) -> None:
    found = _first_non_finite(values, ())
    if found is not None:
        where, value = found
        raise UsageError(f"bad value for {option('.'.join(map(str, where)))}: {FINITE}, got {value}")


def _first_non_finite(value: Any, where: tuple) -> tuple[tuple, float] | None:
    """The path to and value of the first ``inf``/``nan`` float in nested values, else None."""
    if isinstance(value, numbers.Real):  # numpy's floats too
        return None if math.isfinite(value) else (where, float(value))
    if isinstance(value, BaseModel):
        value = {name: getattr(value, name) for name in type(value).model_fields}
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _first_non_finite(item, (*where, key))
        if found is not None:
            return found
    return None


def _non_finite_text(value: Any) -> bool:
    """``"inf"``, ``"-Infinity"``, ``"nan"``: text a float field reads as a non-finite number."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if not isinstance(value, str):
        return False
    try:
        return not math.isfinite(float(value))
    except ValueError:
        return False
