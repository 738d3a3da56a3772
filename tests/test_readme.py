"""The README's pattern table agrees with the code: every pattern once, true examples, exact member counts."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from weightzoo.data.patterns import PATTERN_NAMES, PATTERNS
from weightzoo.data.space import SequenceSpace

README = Path(__file__).resolve().parents[1] / "README.md"
SPACE = SequenceSpace(7, 7)
ROW = re.compile(r"^\|\s*`(?P<name>[a-z_]+)`\s*\|")


def table_rows() -> list[dict]:
    """Rows of the pattern table: | `name` | member if ... | e.g. | members at 7/7 | sampler |."""
    rows = []
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Patterns") :].split("\n## ")[1]  # up to the next section
    for line in section.splitlines():
        match = ROW.match(line.strip())
        if not match:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 5, f"pattern table row does not have 5 columns: {line}"
        rows.append({"name": match["name"], "example": cells[2], "count": cells[3]})
    return rows


ROWS = table_rows()


def test_every_pattern_appears_exactly_once():
    counts = Counter(row["name"] for row in ROWS)
    assert set(counts) == set(PATTERN_NAMES)
    assert [name for name, n in counts.items() if n != 1] == []
    assert len(ROWS) == len(PATTERN_NAMES) == 15


@pytest.mark.parametrize("row", ROWS, ids=[row["name"] for row in ROWS])
def test_example_satisfies_its_pattern(row):
    assert re.fullmatch(r"[A-G]{7}", row["example"]), row
    sequence = SPACE.from_letters(row["example"])
    assert PATTERNS[row["name"]].matches(sequence, SPACE)[0], row


@pytest.mark.parametrize("row", ROWS, ids=[row["name"] for row in ROWS])
def test_member_count_is_exact(row):
    assert re.fullmatch(r"\d{1,3}(,\d{3})*", row["count"]), row
    assert int(row["count"].replace(",", "")) == PATTERNS[row["name"]].count(SPACE)
