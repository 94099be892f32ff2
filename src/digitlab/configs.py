"""Building frozen config dataclasses from plain values (JSON, command-line strings), checked by type."""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from typing import Any, TypeVar

from digitlab.errors import ConfigError

C = TypeVar("C")


def config_from_dict(cls: type[C], values: dict[str, Any], label: str = "config") -> C:
    """cls(**values) with each value converted to its field's type; unknown keys and wrong types fail
    with one line naming the key (and the closest known key)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown {label} key {key!r}{hint}")
        kwargs[name] = _coerce(name, value, hints[name], label)
    return cls(**kwargs)


def _coerce(name: str, value: Any, hint: Any, label: str) -> Any:
    """Convert a JSON or command-line value to the field's type, or fail naming the field."""
    def fail() -> ConfigError:
        return ConfigError(f"config key {name!r} expects {_type_name(hint)}, got {value!r}")

    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            return None
        return _coerce(name, value, args[0], label)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise fail()
    if hint is int:
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise fail() from None
        raise fail()
    if hint is float:
        if isinstance(value, bool):
            raise fail()
        try:
            return float(value)
        except (TypeError, ValueError):
            raise fail() from None
    if hint is str:
        if not isinstance(value, str):
            raise fail()
        return value
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str):
            value = value.replace(":", ",").split(",")
        if not isinstance(value, (list, tuple)):
            raise fail()
        try:
            return tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise fail() from None
    if hint is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise fail() from None
        if not isinstance(value, dict):
            raise fail()
        return dict(value)
    return value


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return "ratios like 4:1"
    if hint is dict:
        return 'a JSON object like {"dropout": 0.3}'
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))
