"""Typed YAML: mappings read from YAML validated against dataclasses, with errors that name the dotted key and the
file and line (``training.learning_rate: expected a finite number, got 'fast'``). The schema itself is
:mod:`talr.config` (runs) and :mod:`talr.sweep` (sweeps)."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


def _type_name(tp: Any) -> str:
    if tp in (int, float, str, bool):
        return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[tp]
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err).split(": ", 1)[-1])
        raise ConfigError(f"{key}: expected {' or '.join(errors) or 'null'}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(c) for c in typing.get_args(tp))
            raise ConfigError(f"{key}: expected one of {choices}, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return build_dataclass(tp, value, key)
    if tp in _PLAIN_TYPES:  # taken as YAML gives them, only checked
        if not isinstance(value, tp):
            raise ConfigError(f"{key}: expected {_PLAIN_TYPES[tp]}, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        number = None
        if isinstance(value, str):  # YAML reads 1e-6 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer beyond float range
                pass
        if number is None or not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


_PLAIN_TYPES = {dict: "a mapping", bool: "true or false", str: "a string"}  # type -> how an error names it


def build_dataclass(cls: type, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in known:
            raise ConfigError(f"{dotted}: unknown key (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def checked_section(prefix: str, section) -> None:
    """Run a section's own ``check()``, naming the section in the error (``talr.tau: ...``)."""
    try:
        section.check()
    except ConfigError as err:
        raise ConfigError(f"{prefix}.{err}") from None


def _yaml_error(where: str, err: yaml.YAMLError) -> ConfigError:
    """One line: where, line and column, and what YAML objects to."""
    mark = getattr(err, "problem_mark", None)
    at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return ConfigError(f"{where}{at}: invalid YAML ({problem})")


def read_yaml_mapping(path: Path, what: str = "config") -> dict:
    """A YAML file that must hold a mapping (an empty file is an empty one); errors name the file (and line)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise _yaml_error(str(path), err) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the {what} must be a mapping at the top level, got {type(raw).__name__}")
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, value = text.split("=", 1)
    try:
        return key.strip().split("."), yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as err:
        raise _yaml_error(f"--set {text!r}", err) from None


