"""Dataclasses to and from JSON-ready dicts (nested dataclasses, tuples, lists, mappings, optionals).

Configuration records (training settings, network architectures, classifier recipes) are stored
as JSON in model files and read back from configuration files. :func:`to_dict` writes every field
(tuples become lists); :func:`from_dict` reads a dict back by the fields' type hints: a missing
field keeps its default, a list becomes the tuple a field declares, a nested dict becomes the
nested dataclass, and an unknown key or a value of the wrong type is a :class:`ConfigError` that
names it by its dotted path (``phase1.crops``).

>>> from LesionAILib.models.networks import LocalizerConfig
>>> from_dict(LocalizerConfig, {"widths": [4, 8], "pools": [[1, 2, 2]]}).pools
((1, 2, 2),)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from LesionAILib.errors import ConfigError

Record = TypeVar("Record")


def to_dict(record: Any) -> dict:
    """Every field of the dataclass ``record``, recursively as plain JSON values."""
    return {f.name: _plain(getattr(record, f.name)) for f in dataclasses.fields(record)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def from_dict(cls: type[Record], data: Mapping, what: str = "setting") -> Record:
    """Build the dataclass ``cls`` from ``data`` (see module docstring).

    ``what`` names the kind of entry in error messages ("unknown training setting(s): phase1.crops").
    """
    return _record(cls, data, "", what)


class DictSerialisable:
    """Mixin giving a dataclass ``to_dict()`` and ``from_dict(data)`` through this module."""

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls: type[Record], data: Mapping) -> Record:
        return from_dict(cls, data)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _record(cls: type, data: Any, path: str, what: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} {path or cls.__name__} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what}(s): {', '.join(_join(path, str(key)) for key in unknown)}")
    values = {name: _value(hints[name], value, _join(path, name), what) for name, value in data.items()}
    try:
        return cls(**values)
    except TypeError as error:  # e.g. a required field left out
        raise ConfigError(f"invalid {what} {path or cls.__name__}: {error}") from None


def _value(hint: Any, value: Any, path: str, what: str) -> Any:
    """``value`` read as the type ``hint`` (the field at ``path``)."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        options = [a for a in arguments if a is not type(None)]
        if len(options) == 1:
            return _value(options[0], value, path, what)
        return value
    if dataclasses.is_dataclass(hint):
        return _record(hint, value, path, what)
    if origin is tuple:
        items = _sequence(value, path, what)
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return tuple(_value(arguments[0], item, f"{path}[{i}]", what) for i, item in enumerate(items))
        if arguments and len(items) != len(arguments):
            raise ConfigError(f"{what} {path} needs {len(arguments)} values, got {len(items)}")
        return tuple(
            _value(a, item, f"{path}[{i}]", what) for i, (a, item) in enumerate(zip(arguments, items, strict=True))
        )
    if origin is list:
        items = _sequence(value, path, what)
        return [_value(arguments[0], item, f"{path}[{i}]", what) if arguments else item for i, item in enumerate(items)]
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{what} {path} must be a mapping, got {value!r}")
        item_hint = arguments[1] if arguments else Any
        return {key: _value(item_hint, item, _join(path, str(key)), what) for key, item in value.items()}
    return _scalar(hint, value, path, what)


def _sequence(value: Any, path: str, what: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{what} {path} must be a list, got {value!r}")
    return list(value)


def _scalar(hint: Any, value: Any, path: str, what: str) -> Any:
    # bool is an int in Python, but a JSON true is no epoch count (and 1 is no switch)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{what} {path} must be true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{what} {path} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{what} {path} must be a number, got {value!r}")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{what} {path} must be a string, got {value!r}")
    return value
