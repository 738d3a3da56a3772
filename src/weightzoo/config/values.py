"""Value types for the config's keys: strict numbers (no bool or "3" for an int), ranges, the stated maxima
of every size and count, paths, pattern names, and the `Section` base that rejects unknown keys.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Strict,
    model_validator,
)
from pydantic_core import PydanticCustomError

from weightzoo.activations import NAMES as ACTIVATION_NAMES
from weightzoo.data.space import LETTERS
from weightzoo.errors import shorten

# ---------------------------------------------------------------------------------------------------------
# Value types. Strict where pydantic's lax mode would surprise: no bool or "3" for an int, no 2.5 for an int,
# no string for a number or a bool. An int is a fine float, and 1000.0 is a fine int.
# ---------------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    """A value as the user wrote it in YAML, short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, int) and value.bit_length() > 128:  # str() of a huge int is slow, or refused
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return shorten(repr(value))


def _problem(message: str, *, value: Any = None, **text: str) -> PydanticCustomError:
    """A per-key problem whose message is already in our format (the key path is added later).

    `{value}` in the message is the bad value as written in YAML; other fields are plain text.
    """
    return PydanticCustomError("weightzoo", message, {"value": _fmt(value), **text})


# Maxima of the sizes and counts a run can hold: past these, a run would run out of memory or time long
# before it wrote anything (a cohort of 1e30 indices, 5,000 cluster centres per neuron), so they are
# config errors. docs/config.md states each one.
MAX_ROWS = 100_000  # rows of one subject dataset, a minibatch, a held-out set
MAX_POOL = 200_000  # sequences kept per pattern pool (each worker holds every pool)
MAX_DATASET = 10_000_000  # accepted examples of one dataset
MAX_EPOCHS = 10_000
MAX_COHORT = 100_000  # examples per cohort (shards are written a work unit at a time)
MAX_THREADS = 1024
MAX_SEED = 2**64 - 1
MAX_COMPONENTS = 64  # values per neuron of pca, svd and clustering
MAX_BINS = 1000
MAX_FREQUENCIES = 512
MAX_PARAMETERS = 1_000_000  # of the largest subject model the ranges allow
MAX_DEPTH = 32  # levels of YAML nesting (the config itself needs four)
MAX_TEXT = 1000  # characters of a string value
MAX_PATH = 3800  # characters of a resolved path, leaving room under PATH_MAX (4096) for the files below it
MAX_NAME = 255  # bytes of one path component (NAME_MAX)


def _short_text(value: str) -> str:
    if len(value) > MAX_TEXT:
        raise _problem("is {n} characters long (at most {most})", n=str(len(value)), most=str(MAX_TEXT))
    return value


def _integral_float_to_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Int = Annotated[int, BeforeValidator(_integral_float_to_int), Strict()]
Float = Annotated[float, Strict(), AllowInfNan(False)]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def between(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False
) -> AfterValidator:
    """A range check whose error says what is allowed: '5..26', '>= 1', '>= 0 and < 1', ..."""
    if lo is not None and hi is not None and not lo_open and not hi_open:
        allowed = f"{_num(lo)}..{_num(hi)}"
    else:
        parts = []
        if lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {_num(lo)}")
        if hi is not None:
            parts.append(f"{'<' if hi_open else '<='} {_num(hi)}")
        allowed = " and ".join(parts)

    def check(value: float) -> float:
        too_low = lo is not None and (value < lo or (lo_open and value == lo))
        too_high = hi is not None and (value > hi or (hi_open and value == hi))
        if too_low or too_high:
            # its own kind, so the message can show the value as written (0, not the 0.0 it became)
            raise PydanticCustomError(
                "weightzoo_range", "out of range (allowed {allowed})", {"allowed": allowed}
            )
        return value

    return AfterValidator(check)


def at_least(lo: float) -> AfterValidator:
    return between(lo)


def _unique(items: list) -> list:
    seen = set()
    for item in items:
        if item in seen:
            raise _problem("{value} is listed more than once", value=item)
        seen.add(item)
    return items


def _non_empty(items: Any) -> Any:
    if not items:
        raise _problem("is empty; list at least one")
    return items


def _path_string(value: Any) -> Any:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value.strip():
        raise _problem("{value} is not a path (expected a non-empty string)", value=value)
    if "\x00" in value:
        raise _problem("{value} is not a path (it holds a NUL character)", value=value)
    try:
        path = Path(value).expanduser()
    except RuntimeError as e:  # ~name of a user this machine does not know
        raise _problem(
            "{value}: no home folder is known for {user}", value=value, user=value.split("/")[0]
        ) from e
    if len(str(path)) > MAX_PATH:
        raise _problem("is {n} characters long (at most {most})", n=str(len(str(path))), most=str(MAX_PATH))
    for part in path.parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME:
            raise _problem(
                "{value}: a folder or file name in it is longer than {most} bytes (no file system allows it)",
                value=value,
                most=str(MAX_NAME),
            )
    return path


def _capital_letter(value: str) -> str:
    if len(value) != 1 or value not in LETTERS:
        raise _problem("{value} is not a single capital letter A..Z", value=value)
    return value


_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _hub_name(value: str | None) -> str | None:
    if value is not None and len(value) > 200:
        raise _problem("is {n} characters long (at most 200)", n=str(len(value)))
    if value is not None and not _HUB_NAME.match(value):
        raise _problem("{value} is not of the form owner/name", value=value)
    return value


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")


def _url(value: str | None) -> str | None:
    """An fsspec URL: a scheme, "://", and a location (`s3://bucket/zoo`, `memory://zoo`)."""
    if value is not None and not _URL.match(value):
        raise _problem(
            "{value} is not a URL of the form scheme://location (e.g. s3://bucket/zoo)", value=value
        )
    return value


def _pattern_table() -> dict:
    from weightzoo.data.patterns import (
        PATTERNS,  # imported late: patterns imports numpy and knows nothing of us
    )

    return PATTERNS


def _known_pattern(name: str) -> str:
    names = list(_pattern_table())
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        if close:
            raise _problem(
                "{value} is not a known pattern (did you mean {close}?)", value=name, close=repr(close[0])
            )
        raise _problem("{value} is not one of {allowed}", value=name, allowed=", ".join(names))
    return name


Path_ = Annotated[Path, BeforeValidator(_path_string)]
Letter = Annotated[Str, AfterValidator(_capital_letter)]
Activation = Literal[ACTIVATION_NAMES]  # type: ignore[valid-type]
PatternName = Annotated[Str, AfterValidator(_known_pattern)]


class Section(BaseModel):
    """A YAML mapping: unknown keys are errors, and an empty (null) mapping means 'all defaults'."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _null_means_defaults(cls, data: Any) -> Any:
        return {} if data is None else data
