"""Typed results: each problem's result is a dataclass that writes and reads its results JSON.

A problem declares its result once, with typed fields (nested dataclasses, lists, dicts, optional values):

    @dataclass
    class P5Result(Result):
        weights: dict[str, Any]
        errors: int
        margin: float | None = None

`to_json()` gives the plain JSON object the script writes; `from_json(obj)` checks an object read back
field by field (a missing field, an unknown one or a value of the wrong type is a ResultError naming it)
and returns the typed result. The report reads results only through `from_json`, so a field renamed on
one side fails there, not silently in the PDF.

JSON has no NaN: scratchnet.io.write_json writes NaN and infinities as null, so a `float` field reads
null back as NaN; `float | None` keeps None.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from scratchnet.io import write_json


class ResultError(ValueError):
    """A results object that does not match its type: says which field, and what was expected."""


def _name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp, value, where: str):
    """`value` (parsed JSON) checked against type `tp` and turned into it (dataclasses built)."""
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, where)
            except ResultError as e:
                errors.append(str(e))
        raise ResultError(errors[0] if len(errors) == 1 else f"{where}: expected {_name(tp)}, got {value!r:.60}")
    if dataclasses.is_dataclass(tp):
        return _from_json(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ResultError(f"{where}: expected a list, got {type(value).__name__}")
        return [_convert(args[0] if args else Any, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ResultError(f"{where}: expected an object, got {type(value).__name__}")
        kt, vt = args if args else (str, Any)
        if kt is not str:
            raise TypeError(f"{where}: JSON object keys are strings; declare dict[str, ...]")
        return {k: _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list) or len(value) != len(args):
            raise ResultError(f"{where}: expected a list of {len(args)}, got {value!r:.60}")
        return tuple(_convert(t, v, f"{where}[{i}]") for i, (t, v) in enumerate(zip(args, value)))
    if tp is float:
        if value is None:           # write_json's NaN
            return math.nan
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp in (str, bool):
        if isinstance(value, tp):
            return value
    else:
        raise TypeError(f"{where}: field type {_name(tp)} is not supported by problems.common.result")
    raise ResultError(f"{where}: expected {_name(tp)}, got {type(value).__name__} {value!r:.60}")


def _from_json(cls, obj, where: str):
    if not isinstance(obj, dict):
        raise ResultError(f"{where}: expected an object, got {type(obj).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(obj) - set(known))
    if unknown:
        raise ResultError(f"{where}: unknown field(s) {', '.join(unknown)} (not in {cls.__name__})")
    values = {}
    for name, f in known.items():
        if name in obj:
            values[name] = _convert(hints[name], obj[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ResultError(f"{where}: missing field {name!r} ({cls.__name__})")
    return cls(**values)


def _to_json(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


class Result:
    """Base of the problems' result dataclasses: JSON out (`to_json`, `write`) and checked JSON in
    (`from_json`, `read`)."""

    def to_json(self) -> dict:
        return _to_json(self)

    @classmethod
    def from_json(cls, obj):
        return _from_json(cls, obj, cls.__name__)

    def write(self, path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls, path):
        """The result in the JSON file `path`; ResultError when it is not one (unreadable, wrong fields)."""
        try:
            obj = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ResultError(f"{path}: not a readable JSON file ({type(e).__name__})") from None
        return cls.from_json(obj)


def read_result(cls, path, what: str, missing_hint: str = ""):
    """The `cls` result in the JSON file `path` for a command line: a missing file, a folder, an unreadable
    file or one with the wrong fields is one UserError line naming `what` and the file (and, when missing,
    `missing_hint`: how to make it)."""
    from problems.common.cli import UserError
    path = Path(path)
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "does not exist"
        raise UserError(f"{what} {path} {state}" + (f"; {missing_hint}" if missing_hint and not path.is_dir() else ""))
    try:
        return cls.read(path)
    except ResultError as e:
        raise UserError(f"{what} {path}: {e}") from None
