"""The strict dataclass loader every config in the project goes through."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field

import pytest

from models.shared.typed import UnknownFieldError, from_dict, replace_fields


class Colour(enum.Enum):
    red = "red"
    blue = "blue"


@dataclass(frozen=True)
class Inner:
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[int, float] = (1, 2.0)


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None
    colour: Colour = Colour.red
    free: dict[str, object] = field(default_factory=dict)


def test_round_trip_rebuilds_nested_tuples_and_enums() -> None:
    value = Outer("y", Inner((3, 4, 5), (7, 0.5)), Inner(), Colour.blue, {"a": [1]})
    plain = asdict(value)
    plain["colour"] = "blue"
    rebuilt = from_dict(Outer, plain)
    assert rebuilt == value
    assert isinstance(rebuilt.inner.sizes, tuple) and isinstance(rebuilt.maybe, Inner)
    assert from_dict(Outer, {"colour": "red", "maybe": None}) == Outer()


def test_unknown_fields_are_named_with_where() -> None:
    with pytest.raises(UnknownFieldError, match=r"weights\.json: unknown field \['nmae'\]"):
        from_dict(Outer, {"nmae": "z"}, where="weights.json")
    with pytest.raises(UnknownFieldError, match=r"Outer\.inner: unknown field \['size'\]"):
        from_dict(Outer, {"inner": {"size": [1]}})
    with pytest.raises(UnknownFieldError, match=r"Outer\.colour: 'green' is not one of"):
        from_dict(Outer, {"colour": "green"})


def test_replace_fields_is_strict_replace() -> None:
    changed = replace_fields(Inner(), {"sizes": [9]})
    assert changed == Inner(sizes=(9,))
    with pytest.raises(UnknownFieldError, match="protocol options: unknown field"):
        replace_fields(Inner(), {"short_sid": 3}, where="protocol options")
