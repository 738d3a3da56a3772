"""Numbers in prompt text, written compactly and read back: `NumberFormat` rounds every value to a fixed
number of decimals (half to even), and writes it without trailing zeros and, compact, without a leading
zero (`-.123`, `.5`, `0`). A lookup table of ready-made strings keeps writing a model's weights fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MAX_DECIMALS = 8
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
