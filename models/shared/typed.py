"""The one strict loader of config dataclasses from plain data (JSON, a weights file's metadata,
a recipe's ``options``), used by every family config, engine spec and protocol in the project.

``from_dict(SgMgConfig, data)`` rebuilds a (nested, frozen) dataclass from its
:func:`dataclasses.asdict` form: nested dataclass fields from mappings, tuples from lists, enums
from their values or names. A key the dataclass does not have is an error that names it and
lists the known ones, so a typo never silently falls back to a default.
``replace_fields(obj, changes)`` is :func:`dataclasses.replace` with the same strictness and
conversions.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


class UnknownFieldError(ValueError):
    """Plain data names a field its dataclass does not have (or holds an unconvertible value)."""


def from_dict(cls: type[T], data: Mapping[str, Any], *, where: str | None = None) -> T:
    """``cls(**data)`` with nested dataclasses, tuples and enums rebuilt; unknown keys refused.

    Args:
        cls: a dataclass type.
        data: its fields by name (missing ones take their defaults).
        where: what ``data`` is, for error messages (default: the class name).
    """
    if not isinstance(data, Mapping):
        raise UnknownFieldError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    return cls(**_converted(cls, data, where or cls.__name__))


def replace_fields(obj: T, changes: Mapping[str, Any], *, where: str | None = None) -> T:
    """:func:`dataclasses.replace` that refuses unknown fields and converts values like
    :func:`from_dict`."""
    cls = type(obj)
    return dataclasses.replace(obj, **_converted(cls, changes, where or cls.__name__))  # type: ignore[type-var]


def field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _converted(cls: type, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    known = field_names(cls)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UnknownFieldError(
            f"{where}: unknown field{'s' if len(unknown) > 1 else ''} {unknown}; "
            f"known: {sorted(known)}"
        )
    hints = _hints(cls)
    return {name: _value(hints[name], value, f"{where}.{name}") for name, value in data.items()}


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _value(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        for option in options:
            if _fits(option, value):
                return _value(option, value, where)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_dict(hint, value, where=where)  # type: ignore[arg-type]
    if isinstance(hint, type) and issubclass(hint, enum.Enum) and not isinstance(value, hint):
        try:
            return hint(value)
        except ValueError:
            if isinstance(value, str) and value in hint.__members__:
                return hint[value]
            raise UnknownFieldError(
                f"{where}: {value!r} is not one of {[m.value for m in hint]}"
            ) from None
    if origin is tuple and isinstance(value, list | tuple):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], v, where) for v in value)
        if args and len(args) == len(value):
            return tuple(_value(a, v, where) for a, v in zip(args, value, strict=True))
        return tuple(value)
    return value


def _fits(hint: Any, value: Any) -> bool:
    """Whether ``value`` is plain data for ``hint`` (chooses the member of a union)."""
    origin = typing.get_origin(hint) or hint
    if dataclasses.is_dataclass(hint):
        return isinstance(value, Mapping | hint)
    if origin is tuple:
        return isinstance(value, list | tuple)
    if isinstance(origin, type) and issubclass(origin, enum.Enum):
        return isinstance(value, str | int | origin)
    if hint is Any:
        return True
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(origin, type) and isinstance(value, origin)
