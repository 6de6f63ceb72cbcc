"""Typer options generated from a typed config model, so an option list is written once.

``adm train`` and ``adm train-classifier`` take one option per field of ``TrainConfig`` /
``ClassifierTrainConfig``; ``adm sample``, ``upsample`` and ``edit`` one per field of the API's
``SamplingOptions`` and ``RunOptions`` (and ``EditSettings``). Declaring them by hand repeated
the lists per command and let help texts drift from the library; here each option is derived
from its field: the name (``--batch-size``), the type, a ``--x/--no-x`` switch for booleans, and
the help from the field's description, ending with its default. An option's own default is None:
a value not given comes from the layers (preset, the run being continued, the config's
default), so only given values are passed on. Decorators stack: each model fills its own
parameter (``options``, ``sampling``, ...).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel
from pydantic_core import PydanticUndefined


@dataclass(frozen=True)
class Rename:
    """How a field appears on the command line when its own name would mislead."""

    option: str  # e.g. "--iterations"
    help: str | None = None
    parse: Callable[[Any], Any] | None = None  # for fields typed as tuples etc.: text → value
    short: str | None = None  # e.g. "-n"
    repeat: bool = False  # the option may be given several times (parse gets the list)
    flag: bool = False  # a boolean that can only be switched on (--compile, no --no-compile)
    metavar: str | None = None  # what the help shows for the value, e.g. KEY=VALUE
    panel: str | None = None  # the help panel it is listed in (default: Options)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cli_type(annotation: Any) -> type:
    """int / float / bool / Path (optional or not) stay themselves; the rest is text the model validates."""
    if annotation in (int, float, bool, Path):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if len(args) == 1 and args[0] in (int, float, bool, Path) else str


def _sentence(description: str) -> str:
    """A field's description as help: capitalised unless it starts with a name (``ddpm, ...``,
    ``fp32``, ``torch.compile``), with a full stop."""
    first = description.split()[0] if description else ""
    if first.isalpha() and first.islower():
        description = description[:1].upper() + description[1:]
    return description + "."


def _choices(annotation: Any) -> list[str]:
    """The values of a ``Literal`` field (optional or not), as text."""
    if typing.get_origin(annotation) is typing.Literal:
        return [str(v) for v in typing.get_args(annotation)]
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Literal:
            return [str(v) for v in typing.get_args(arg)]
    return []


def config_options(model: type[BaseModel], *, skip: tuple[str, ...] = (), rename: Mapping[str, Rename] | None = None,
                   param: str = "options"):
    """Decorate ``command(options: dict, **its own parameters)`` with one option per model field.

    The command receives ``param`` (default ``options``): the fields given on the command line,
    by field name.
    """
    rename = dict(rename or {})
    target = param

    def decorate(command: Callable) -> Callable:
        hints = typing.get_type_hints(command)  # resolved in the command's module
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(command).parameters.values() if p.name != target]
        taken = {p.name for p in own}
        generated: dict[str, tuple[str, Rename | None]] = {}
        params = list(own)
        for name, info in model.model_fields.items():
            if name in skip:
                continue
            spec = rename.get(name)
            option = spec.option if spec else "--" + name.replace("_", "-")
            param = option.lstrip("-").replace("-", "_")
            param = param + "_" if param in taken else param
            kind = _cli_type(info.annotation) if not (spec and spec.parse) else str
            text = (spec.help if spec and spec.help else None) or _sentence(info.description)
            decls = (f"{option}/--no-{option[2:]}",) if kind is bool and not (spec and spec.flag) else (option,)
            decls += (spec.short,) if spec and spec.short else ()
            choices = _choices(info.annotation)
            if choices and "One of" not in text:
                text += f" One of: {', '.join(choices)}."
            said = ("Default:", "default:", "unset", "Unset")  # the text states its default already
            if not info.is_required() and info.default is not PydanticUndefined and not any(w in text for w in said):
                text += f" Default: {_shown(info.default)}."
            annotation = (list[kind] if spec and spec.repeat else kind) | None
            default = typer.Option(None, *decls, help=text, show_default=False, metavar=spec.metavar if spec else None,
                                   rich_help_panel=spec.panel if spec else None)
            params.append(inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
            generated[param] = (name, spec)

        @functools.wraps(command)
        def wrapper(**kwargs):
            options = {}
            for param, (name, spec) in generated.items():
                value = kwargs.pop(param)
                if value is not None:
                    options[name] = spec.parse(value) if spec and spec.parse else value
            return command(**{target: options}, **kwargs)

        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}  # real types: typer evaluates these
        del wrapper.__wrapped__  # typer must read the generated signature, not the command's
        return wrapper

    return decorate
