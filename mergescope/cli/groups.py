"""Option groups: a command takes a group of options as one parameter, one typed record.

Typer makes one option of each parameter of a command's function, so a command with 30 options would take 30
parameters. An option group is a frozen, keyword-only dataclass whose fields are `Annotated` typer options
with their defaults (options.py). `@option_groups` shows typer each group's fields in the place of the
parameter the group annotates, so `--help` lists every option, in order, with its help text, and calls the
command with one record per group.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any


class OptionGroup:
    """The base of option groups: frozen, keyword-only dataclasses whose fields are typer options."""


def option_groups(command: Callable) -> Callable:
    """`command`, with each parameter annotated by an OptionGroup taken apart into the group's options for typer."""
    signature = inspect.signature(command, eval_str=True)
    groups = {name: p.annotation for name, p in signature.parameters.items() if _is_group(p.annotation)}
    flat = [
        option
        for p in signature.parameters.values()
        for option in (_fields_as_parameters(p.annotation) if p.name in groups else [_keyword(p)])
    ]
    names = [p.name for p in flat]
    if len(set(names)) != len(names):
        raise TypeError(f"{command.__name__}: an option name occurs twice among its parameters and groups")

    @functools.wraps(command)
    def with_groups(**options: Any) -> Any:
        for name, group in groups.items():
            options[name] = group(**{field.name: options.pop(field.name) for field in dataclasses.fields(group)})
        return command(**options)

    with_groups.__signature__ = signature.replace(parameters=flat)  # type: ignore[attr-defined]  # typer reads it
    with_groups.__annotations__ = {p.name: p.annotation for p in flat}
    return with_groups


def _is_group(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, OptionGroup)


def _keyword(parameter: inspect.Parameter) -> inspect.Parameter:
    # keyword-only: typer passes every option by name, and a required option may then follow optional ones
    return parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)


def _fields_as_parameters(group: type) -> list[inspect.Parameter]:
    """The group's fields as keyword parameters, annotated with their typer options and defaulting as the fields."""
    hints = typing.get_type_hints(group, include_extras=True)
    required = dataclasses.MISSING
    return [
        inspect.Parameter(
            field.name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=hints[field.name],
            default=inspect.Parameter.empty if field.default is required else field.default,
        )
        for field in dataclasses.fields(group)
    ]
