"""Numbers in prompt text, written compactly and read back.

Decimal (the default): `NumberFormat` rounds every value to a fixed number of decimals (half to even),
and writes it without trailing zeros and, compact, without a leading zero (`-.123`, `.5`, `0`). A
lookup table of ready-made strings keeps writing a model's weights fast.

Grid (`NumberFormat(grid=True)`, `signature.prompt_format.numbers: grid`): each tensor (a weight
matrix, a bias, a signature column) is written on a grid of its own, `step` = max |value| / 499, stated
once in the tensor's header; each value is the integer q = round(value / step) in -499..499, written
as q + 499 in exactly three digits, with nothing between values (`499` is zero, `998` is the largest
value). Tokenizers of the Llama 3 and GPT-4 families cut digit runs into groups of three, so a value is
one token and a matrix row one line: about one token per parameter, against about three for decimals.
The grid keeps about 10 bits per value, finer than int8's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MAX_DECIMALS = 8
GRID_HALF = 499  # grid values q in -GRID_HALF..GRID_HALF, written as q + GRID_HALF in three digits
_GRID_DIGITS = np.array([f"{d:03d}" for d in range(1000)], dtype=object)
# Quantised values |q| <= _TABLE_HALF are looked up in a table of ready-made strings; others are
# formatted one by one (rare: |value| >= 200 at 3 decimals).
_TABLE_HALF = 200_000


# ---------------------------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------------------------


def _number_text(q: int, decimals: int, leading_zero: bool) -> str:
    """The text of the value q / 10**decimals (q an exact integer), trailing zeros stripped."""
    if q == 0:
        return "0"
    sign = "-" if q < 0 else ""
    whole, frac = divmod(abs(q), 10**decimals)
    frac_text = f"{frac:0{decimals}d}".rstrip("0") if decimals else ""
    whole_text = str(whole) if (whole or leading_zero or not frac_text) else ""
    return sign + whole_text + ("." + frac_text if frac_text else "")


@lru_cache(maxsize=16)
def _table(decimals: int, leading_zero: bool) -> np.ndarray:
    half = min(_TABLE_HALF, 10 ** (decimals + 2))
    scale = 10**decimals
    # Non-negative m = whole * scale + frac is the whole part's text followed by the fraction's.
    fracs = [""] + ["." + f"{f:0{decimals}d}".rstrip("0") for f in range(1, min(scale, half + 1))]
    wholes = ["0" if leading_zero else ""] + [str(w) for w in range(1, half // scale + 1)]
    texts = [w + f for w in wholes for f in fracs][: half + 1]
    texts[0] = "0"
    negatives = ["-" + t for t in texts[:0:-1]]
    return np.array(negatives + texts, dtype=object)


@dataclass(frozen=True)
class NumberFormat:
    """How numbers are written: `decimals` places, compact (one line per row, no leading zero) or JSON."""

    decimals: int = 4
    compact: bool = True
    grid: bool = False  # three-digit integers on each tensor's grid (see the module's docstring)

    def __post_init__(self):
        if not isinstance(self.decimals, int) or not 0 <= self.decimals <= MAX_DECIMALS:
            raise ValueError(f"decimals must be an integer in 0..{MAX_DECIMALS}, got {self.decimals!r}")

    def strings(self, values, compact: bool | None = None) -> np.ndarray:
        """Object array of the texts of `values` (any shape), rounded to `decimals`."""
        compact = self.compact if compact is None else compact
        a = np.asarray(values, dtype=np.float64)
        if not np.isfinite(a).all():
            raise ValueError("cannot write non-finite values (nan or inf)")
        q = np.rint(a * 10.0**self.decimals)
        table = _table(self.decimals, not compact)
        half = (len(table) - 1) // 2
        inside = np.abs(q) <= half
        idx = np.where(inside, q, 0).astype(np.int64) + half
        out = table[idx]
        if not inside.all():
            for pos in zip(*np.nonzero(~inside), strict=True):
                out[pos] = _number_text(int(q[pos]), self.decimals, not compact)
        return out

    def number(self, value: float, compact: bool | None = None) -> str:
        return str(self.strings(np.array([value]), compact)[0])

    def row(self, values) -> str:
        """One vector as one compact line."""
        return " ".join(self.strings(np.ravel(values), compact=True).tolist())

    def matrix(self, values) -> str:
        """A 2-D array: compact lines, or an indented JSON nested list."""
        texts = self.strings(np.atleast_2d(values)).tolist()
        if self.compact:
            return "\n".join([" ".join(r) for r in texts])
        return "[\n" + ",\n".join(["  [" + ", ".join(r) + "]" for r in texts]) + "\n]"

    def vector(self, values) -> str:
        """A 1-D array: one compact line, or a one-line JSON list."""
        texts = self.strings(np.ravel(values)).tolist()
        return " ".join(texts) if self.compact else "[" + ", ".join(texts) + "]"


def parse_number(text: str) -> float:
    """Read one number written by `NumberFormat` (either form)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


# ---------------------------------------------------------------------------------------------------------
# the grid
# ---------------------------------------------------------------------------------------------------------


def grid_step(values) -> float:
    """The step of the grid `values` are written on: max |value| / GRID_HALF, at 6 significant digits
    (the value read back from the header, so text and numbers agree exactly); 0 for all zeros."""
    a = np.asarray(values, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError("cannot write non-finite values (nan or inf)")
    largest = float(np.abs(a).max()) if a.size else 0.0
    return float(f"{largest / GRID_HALF:.6g}") if largest > 0 else 0.0


def step_text(step: float) -> str:
    return f"{step:.6g}"


def grid_rows(values, step: float) -> list[str]:
    """Each row of `values` (a 2-D array) as its three-digit groups, concatenated."""
    a = np.atleast_2d(np.asarray(values, dtype=np.float64))
    q = np.zeros(a.shape) if step == 0 else np.clip(np.rint(a / step), -GRID_HALF, GRID_HALF)
    digits = _GRID_DIGITS[(q + GRID_HALF).astype(np.int64)]
    return ["".join(row) for row in digits.tolist()]


def read_grid_row(text: str, size: int, step: float, where: str) -> np.ndarray:
    """One row written by `grid_rows`: `size` three-digit groups, back to values."""
    text = text.strip()
    if len(text) != 3 * size or not text.isdigit():
        raise ValueError(f"{where}: expected {size} three-digit grid values, found {text[:40]!r}")
    q = np.array([int(text[i : i + 3]) for i in range(0, len(text), 3)], dtype=np.float64) - GRID_HALF
    if np.abs(q).max(initial=0) > GRID_HALF:
        raise ValueError(f"{where}: grid values are 000..{2 * GRID_HALF}")
    return q * step
