"""Typed schemas for YAML files: dataclasses filled from plain dicts, with clear errors.

Unknown keys are errors with a suggestion; values are checked against the field types
(``int``, ``float``, ``str``, ``bool``, ``list[...]``, ``dict``, ``X | None``, ``Literal``,
nested dataclasses). Used by dataset recipes and training configs alike.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from opflow.errors import ConfigError

__all__ = ["from_dict", "to_dict", "load_yaml", "apply_overrides"]

T = TypeVar("T")


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3`` as a float (YAML 1.2; 1.1 wants ``1.0e-3``)."""


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def safe_load(text: str) -> Any:
    """Parse YAML text with a safe loader (no arbitrary objects) that knows ``1e-3``."""
    loader = _SafeLoader(text)  # a yaml.SafeLoader: plain data only, never Python objects
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_error(err: yaml.YAMLError, source: str) -> ConfigError:
    """One line for a YAML error: where (file or override, line, column) and what."""
    mark = getattr(err, "problem_mark", None)
    where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    context_mark = getattr(err, "context_mark", None)
    if context and context_mark is not None and context_mark.line != getattr(mark, "line", None):
        context += f" that starts at line {context_mark.line + 1}, column {context_mark.column + 1}"
    if "could not determine a constructor" in problem:
        problem = f"{problem.split(' for the tag ')[-1]} is not a plain YAML value"
        fix = "remove the !! tag: configs hold plain values (numbers, strings, lists, mappings)"
    else:
        fix = "fix the syntax there"
    return ConfigError(
        f"{where}: {problem}" + (f" ({context})" if context else "") + " -- not valid YAML",
        "plain YAML",
        fix,
    )


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping (safely), with clear errors for missing/bad files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"No such file: {path}", "a path to an existing YAML file", "check the path"
        )
    try:
        data = safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise yaml_error(err, str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} holds a {type(data).__name__}, not a mapping",
            "a YAML mapping of keys to values",
            "start the file with 'key: value' lines",
        )
    return data


def _check(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            raise ConfigError(
                f"{where} = {value!r} is not allowed",
                f"one of {list(args)}",
                f"did you mean {close[0]!r}?" if close else f"use one of {list(args)}",
            )
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _type_error(where, value, hint)
        inner = args[0] if args else Any
        return [_check(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _type_error(where, value, hint)
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(where, value, hint)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(where, value, hint)
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise _type_error(where, value, hint)
        return value
    return value


def _type_error(where: str, value: Any, hint: Any) -> ConfigError:
    name = getattr(hint, "__name__", str(hint))
    return ConfigError(
        f"{where} = {value!r} has the wrong type ({type(value).__name__})",
        f"a value of type {name}",
        f"write {where} as a {name}",
    )


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; ``where`` names the location in messages."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where} must be a mapping, got {type(data).__name__}",
            f"keys of {cls.__name__}",
            f"write {where} as 'key: value' lines",
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            raise ConfigError(
                f"Unknown key {where}.{key}",
                f"keys of {where}: {sorted(fields)}",
                f"did you mean {where}.{close[0]}?" if close else f"remove {where}.{key}",
            )
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _check(data[name], hints[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(
                f"Missing key {where}.{name}",
                f"{where}.{name} of type {hints[name]}",
                f"add '{name}:' under {where}",
            )
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data form of a (nested) dataclass, for JSON/YAML."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` strings (values parsed as YAML scalars) to a nested dict."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"Override {item!r} has no '='",
                "key.path=value",
                "write e.g. --set training.epochs=5",
            )
        path, raw = item.split("=", 1)
        try:
            value = safe_load(raw)
        except yaml.YAMLError as err:
            raise yaml_error(err, f"--set {item!r}") from None
        node = data
        keys = path.split(".")
        for key in keys[:-1]:
            child = node.get(key)
            node[key] = dict(child) if isinstance(child, dict) else {}
            node = node[key]
        node[keys[-1]] = value
    return data
