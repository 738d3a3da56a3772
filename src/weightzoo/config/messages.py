"""Pydantic's errors turned into our lines: the key path, the bad value (cut short), what is allowed, and a
did-you-mean for an unknown key.
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from pydantic import (
    BaseModel,
)
from typing_extensions import is_typeddict

from weightzoo.config.sections import Config
from weightzoo.config.values import _fmt
from weightzoo.errors import shorten

# ---------------------------------------------------------------------------------------------------------
# turning pydantic's errors into our lines
# ---------------------------------------------------------------------------------------------------------


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for a mapping's key: the key itself is named already
            continue
        part = part if isinstance(part, int) else shorten(part, 40)  # a key as long as a book stays short
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _overlaps(a: str, b: str) -> bool:
    """True when one key path is the other or lies inside it."""
    if a == b:
        return True
    short, long = sorted((a, b), key=len)
    return short == "" or long.startswith(short + ".") or long.startswith(short + "[")


def _strip(tp: Any) -> Any:
    """Annotated[X, ...] and X | None -> X."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or origin is types.UnionType:
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _fields(tp: Any) -> dict[str, Any]:
    """The keys a mapping type accepts, with their types."""
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {name: f.annotation for name, f in tp.model_fields.items()}
    if is_typeddict(tp):
        return get_type_hints(tp, include_extras=True)
    return {}


def _known_keys(loc: tuple) -> list[str]:
    tp: Any = Config
    for part in loc:
        if isinstance(part, int):
            args = get_args(_strip(tp))
            tp = args[0] if args else None
        else:
            tp = _fields(tp).get(part)
        if tp is None:
            return []
    return list(_fields(tp))


_MESSAGES = {
    "int_type": "{value} is not an integer",
    "float_type": "{value} is not a number",
    "finite_number": "{value} is not a finite number",
    "bool_type": "{value} is not true or false",
    "string_type": "{value} is not a string",
    "list_type": "{value} is not a list",
    "dict_type": "{value} is not a mapping",
    "model_type": "{value} is not a mapping",
    "model_attributes_type": "{value} is not a mapping",
}


def _describe(error: dict) -> str:
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    path = _path(loc) or "(top level)"
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        if close:
            return f"{path}: unknown key (did you mean {close[0]!r}?)"
        return f"{path}: unknown key (known keys: {', '.join(known)})" if known else f"{path}: unknown key"
    if kind == "invalid_key":
        return f"{_path(loc[:-1]) or '(top level)'}: key {_fmt(value)} is not a string"
    if kind == "literal_error":
        allowed = ", ".join(re.findall(r"'([^']*)'", error["ctx"]["expected"]))
        return f"{path}: {_fmt(value)} is not one of {allowed}"
    if kind == "weightzoo_range":
        return f"{path}: {_fmt(value)} is {error['msg']}"
    if kind == "weightzoo":
        return f"{path}: {error['msg']}"
    if kind in _MESSAGES:
        return f"{path}: " + _MESSAGES[kind].format(value=_fmt(value))
    return f"{path}: {_fmt(value)}: {error['msg']}"


def _without(data: dict, loc: tuple) -> None:
    """Delete, in place, the mapping key a failed loc points at (or the key holding a failed list item)."""
    parent, key, node = None, None, data
    for part in loc:
        if not isinstance(node, dict):
            break  # a list item or a bad value inside: drop the key holding it
        if part not in node:
            return  # already dropped
        parent, key, node = node, part, node[part]
    if parent is not None:
        del parent[key]
