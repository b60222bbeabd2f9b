"""Validated overrides of (nested) dataclasses from plain dicts, as read from YAML/TOML files.

Generic: it knows nothing of the run configuration's schema (:mod:`dgmix.config`), only the type
annotations of the dataclass it changes. Unknown field names and values of the wrong type are
one-line :class:`~dgmix.errors.InputError` s naming the field (``pretrain.epochs must be an
integer``); ``Literal``, ``X | None``, ``list[X]`` and ``dict[str, X]`` annotations are checked.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from dgmix.errors import InputError

#: Plain types: what a value must be, and the Python types accepted (``bool`` is never a number).
_SCALARS = {float: ("a number", (int, float)), int: ("an integer", int), bool: ("true or false", bool),
            str: ("a string", str)}


def _check_value(value: Any, tp: Any, where: str, source: str) -> Any:
    """Validate (and lightly coerce, int -> float) one value against a type annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        if value not in args:
            raise InputError(source, f"{where} must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_value(value, arg, where, source)
            except InputError as exc:
                errors.append(exc.problem)
        raise InputError(source, errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise InputError(source, f"{where} must be a mapping with string keys, got {value!r}")
        return {k: _check_value(v, args[1], f"{where}.{k}", source) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise InputError(source, f"{where} must be a list, got {value!r}")
        return [_check_value(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value)]
    if tp in _SCALARS:
        what, ok = _SCALARS[tp]
        if not isinstance(value, ok) or (isinstance(value, bool) and tp is not bool):
            raise InputError(source, f"{where} must be {what}, got {value!r}")
        return float(value) if tp is float else value
    return value


def apply_overrides(obj: Any, overrides: dict[str, Any], source: str, prefix: str = "") -> Any:
    """Apply a nested dict of overrides to a dataclass, validating names and types.

    Mutable dataclasses are changed in place; frozen ones (:class:`FeatureParams`) are replaced
    by an updated copy, whose own checks (``__post_init__``) then run. Returns the result."""
    if not isinstance(overrides, dict):
        raise InputError(source, f"{prefix or 'config'} must be a mapping, got {overrides!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    updates: dict[str, Any] = {}
    for key, value in overrides.items():
        where = f"{prefix}{key}"
        if key not in names:
            raise InputError(source, f"unknown config field {where!r}; known: {', '.join(sorted(names))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            updates[key] = apply_overrides(current, value, source, prefix=f"{where}.")
        else:
            updates[key] = _check_value(value, hints[key], where, source)
    if type(obj).__dataclass_params__.frozen:  # type: ignore[attr-defined]
        try:
            return dataclasses.replace(obj, **updates)
        except ValueError as exc:
            raise InputError(source, f"{prefix.rstrip('.') or 'config'}: {exc}") from None
    for key, value in updates.items():
        setattr(obj, key, value)
    return obj
