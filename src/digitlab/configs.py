"""Building frozen config dataclasses from plain values (JSON, command-line strings), checked by type,
and the command-line options that set them (one per field, documented by the comments beside it)."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import inspect
import io
import json
import linecache
import re
import shutil
import textwrap
import tokenize
import types
import typing
from collections.abc import Sequence
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
    if typing.get_origin(hint) is tuple and typing.get_args(hint)[0] is str:  # folders, names
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise fail()
        return tuple(value)
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
        return "names like A,B" if typing.get_args(hint)[0] is str else "ratios like 4:1"
    if hint is dict:
        return 'a JSON object like {"dropout": 0.3}'
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


# --- command-line options and their documentation, from config dataclasses --------------------------

FIELD = re.compile(r"^    (\w+)\s*:")
HEADING = re.compile(r"[a-z][a-z ]*")  # "# geometry" above a group of fields


def add_config_options(parser: argparse.ArgumentParser, cls: type, title: str,
                       choices: dict[str, Sequence[str]] | None = None) -> None:
    """One `--field-name VALUE` option per field of config dataclass `cls`, in a group of their own, each
    with a help line that gives the field's meaning (field_docs), its default and, for the fields named
    in `choices`, the allowed values; and `--list-settings`, which prints them as a table and exits.
    Values stay strings (None when not given): config_values() collects them for config_from_dict,
    which converts and checks them."""
    choices = choices or {}
    hints = typing.get_type_hints(cls)
    listing = next((a for a in parser._actions if isinstance(a, _ListSettings)), None)
    if listing is None:
        parser.add_argument("--list-settings", action=_ListSettings, cls=cls, choices_of=choices,
                            help="print the settings below as a table (name, default, meaning) and exit")
    else:  # a second config of the same command (federate: training, then federation): one table each
        listing.classes.append((cls, choices))
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        allowed = choices.get(f.name) or (("true", "false") if hints[f.name] is bool else None)
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None,
                           metavar="{" + ",".join(allowed) + "}" if allowed else _metavar(f.name, hints[f.name]),
                           help=_describe(cls, f, choices).replace("%", "%%"))


def config_values(args: argparse.Namespace, cls: type) -> dict[str, str]:
    """The fields of config dataclass `cls` given on the command line (add_config_options), as strings."""
    return {f.name: value for f in dataclasses.fields(cls) if (value := getattr(args, f.name, None)) is not None}


def settings_table(cls: type, choices: dict[str, Sequence[str]] | None = None, width: int = 100) -> str:
    """Every field of config dataclass `cls` as the command line sets it, its default and its meaning
    (wrapped to fit `width` columns)."""
    rows = [("setting", "default", "meaning")]
    rows += [(f"--{f.name.replace('_', '-')}", show_value(field_default(f)),
              _describe(cls, f, choices or {}, default=False)) for f in dataclasses.fields(cls)]
    a, b = (max(len(r[i]) for r in rows) for i in (0, 1))
    out = []
    for name, default, meaning in rows:
        lines = textwrap.wrap(meaning, max(30, width - a - b - 4)) or [""]
        out.append(f"{name:<{a}}  {default:<{b}}  {lines[0]}".rstrip())
        out += [f"{'':<{a + b + 4}}{line}" for line in lines[1:]]
    return "\n".join(out)


def field_default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def show_value(value: Any) -> str:
    """A config value as it is typed on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(value) if all(isinstance(v, str) for v in value) and value else \
            ":".join(f"{v:g}" for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value) if value != "" else '""'


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The meaning of each field of config dataclass `cls`, from the comments of its source, which are
    the configs' documentation: the comment block right above a field, if any, then the comment after
    it (with the lines it wraps onto below it); a field with neither shares the block above the field
    before it. A comment of a few lowercase words right above a field heads a section and is no field's.
    Fields whose source cannot be read have no entry."""
    names = {f.name for f in dataclasses.fields(cls)}
    body = _class_body(cls)
    fields = [m[1] if (m := FIELD.match(line)) and m[1] in names else None for line in body]
    docs: dict[str, str] = {}
    block: list[str] = []  # comment lines since the last field
    wrapped = shared = ""  # the field whose comment may go on below it; the block uncommented fields share
    for i, line in enumerate(body):
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if not block and HEADING.fullmatch(text) and i + 1 < len(body) and fields[i + 1]:
                block, wrapped, shared = [], "", ""
            elif wrapped and not block and text[:1].islower():
                docs[wrapped] += " " + text
            else:
                block.append(text)
                wrapped = ""
        elif name := fields[i]:
            comment, above = _comment(line), " ".join(block)
            docs[name] = "; ".join(p for p in (above, comment) if p) or shared
            shared = above or ("" if comment else shared)
            block, wrapped = [], name if comment else ""
    return docs


def _describe(cls: type, f: dataclasses.Field, choices: dict[str, Sequence[str]], default: bool = True) -> str:
    """A field's meaning, then (its default and) its allowed values, in brackets."""
    facts = [f"default {show_value(field_default(f))}"] if default else []
    if f.name in choices:
        facts.append(f"one of {', '.join(choices[f.name])}")
    meaning = field_docs(cls).get(f.name, "")
    if not facts:
        return meaning
    return f"{meaning} ({'; '.join(facts)})" if meaning else "; ".join(facts)


def _class_body(cls: type) -> list[str]:
    """The source lines of a dataclass's fields: its body up to its first method ([] without source)."""
    try:
        lines = linecache.getlines(inspect.getsourcefile(cls) or "")
    except TypeError:
        return []
    head = re.compile(rf"class {cls.__name__}\b")
    start = next((i for i, line in enumerate(lines) if head.match(line)), None)
    if start is None:
        return []
    body = []
    for line in lines[start + 1:]:
        if (line.strip() and not line.startswith(" ")) or line.lstrip().startswith(("def ", "@")):
            break
        body.append(line.rstrip("\n"))
    return body


def _comment(line: str) -> str:
    """The comment at the end of a line of code ('' if none; a '#' inside a string is no comment)."""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline):
            if tok.type == tokenize.COMMENT:
                return tok.string.lstrip("#").strip()
    except tokenize.TokenError:  # a field whose default goes on over several lines
        pass
    return ""


def _metavar(name: str, hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return "A,B" if typing.get_args(hint)[0] is str else "A:B"
    return {int: "N", float: "X", dict: "JSON"}.get(hint, name.upper())


class _ListSettings(argparse.Action):
    """--list-settings: print the settings table of a config dataclass and exit (before the command's
    required arguments are checked, as --version does)."""

    def __init__(self, option_strings, dest, cls, choices_of, help=None):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)
        self.classes = [(cls, choices_of)]

    def __call__(self, parser, namespace, values, option_string=None):
        width = max(80, shutil.get_terminal_size((120, 24)).columns)
        print("\n\n".join(settings_table(cls, choices, width) for cls, choices in self.classes))
        parser.exit()
