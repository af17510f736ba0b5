"""Typed checks for JSON configs (voice.json, a part's config.json) against plain dataclasses.

A config read from disk may hold anything JSON can: a string where a number belongs, NaN, a list for a
dict. Without a check these surface much later as AttributeError/TypeError/ZeroDivisionError from deep
inside a model. `from_dict` builds a dataclass from a dict and `check_fields` validates one that is
already built; both raise a ConfigError that names the file and the field. Annotations understood:
int, float (finite; ints accepted), bool, str, None, unions (`X | None`), Literal, list/tuple/dict
(with element types), nested dataclasses; anything else is accepted as is.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union

from codectts.errors import ConfigError


def _hints(cls) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation we cannot resolve is simply not checked
        return {}


def _describe(tp) -> str:
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "an object"
    origin = typing.get_origin(tp) or tp
    return {int: "an integer", float: "a finite number", bool: "true or false", str: "a string",
            list: "a list", tuple: "a list", dict: "an object"}.get(origin, getattr(tp, "__name__", str(tp)))


def _matches(value, tp) -> bool:
    if tp is Any:
        return True
    if tp is type(None) or tp is None:
        return value is None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args, strict=True))
        return not args or all(_matches(v, args[0]) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return False
        return len(args) != 2 or all(_matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
    if dataclasses.is_dataclass(tp):
        return isinstance(value, tp)
    return True


def _nested_class(tp, value):
    """The dataclass a dict value should become (for `x: Cfg` or `x: Cfg | None`), else None."""
    if not isinstance(value, dict):
        return None
    options = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    found = [a for a in options if dataclasses.is_dataclass(a)]
    return found[0] if len(found) == 1 else None


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_fields(obj, where: str) -> None:
    """Raise ConfigError if a field of dataclass `obj` (or of a nested one) is not of its annotated type."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name not in hints:
            continue
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_fields(value, f"{where}: {f.name}")
        elif not _matches(value, hints[f.name]):
            raise ConfigError(f"{where}: {f.name!r} must be {_describe(hints[f.name])}, got {_show(value)}")


def from_dict(cls, data, where: str, *, extra: bool = False):
    """Build dataclass `cls` from a JSON object, checking keys and types (nested dataclasses from nested objects).

    Unknown keys are a ConfigError (a misspelt key would otherwise be ignored) unless `extra`.
    Errors the class's own __post_init__ raises (ConfigError, ValueError, TypeError) name `where`.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be an object, got {_show(data)}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown and not extra:
        raise ConfigError(f"{where}: unknown field(s) {unknown} (known: {sorted(names)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing {f.name!r}")
            continue
        value, tp = data[f.name], hints.get(f.name, Any)
        sub = _nested_class(tp, value)
        if sub is not None:
            value = from_dict(sub, value, f"{where}: {f.name}", extra=extra)
        elif not _matches(value, tp):
            raise ConfigError(f"{where}: {f.name!r} must be {_describe(tp)}, got {_show(value)}")
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
