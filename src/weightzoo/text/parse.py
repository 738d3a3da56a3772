"""Reading a weights block back: `parse_weights(text, spec)` finds the block in any text and returns the
state dict, or raises `ValueError` naming the layer that is missing, mis-shaped or malformed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import torch

from weightzoo.engine.model import ModelSpec
from weightzoo.text.numbers import parse_number, read_grid_row

# ---------------------------------------------------------------------------------------------------------
# reading back
# ---------------------------------------------------------------------------------------------------------

_HEADER = re.compile(
    r"^layer (\d+) (?:weight \[(\d+) x (\d+)\]|(bias))(?: step ([-+.\deE]+))?:[ \t]*$", re.MULTILINE
)


def _body_lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def _parse_numbers(line: str, where: str) -> list[float]:
    try:
        return [parse_number(t) for t in line.replace(",", " ").split()]
    except ValueError as err:
        raise ValueError(f"{where}: {err} in line {line[:80]!r}") from None


def _read_json(lines: list[str], where: str) -> Any:
    """The JSON list that starts at lines[0] (lines after its closing bracket are ignored)."""
    depth, used = 0, 0
    while used < len(lines):
        depth += lines[used].count("[") - lines[used].count("]")
        used += 1
        if depth <= 0:
            break
    if depth != 0:
        raise ValueError(f"{where}: unbalanced brackets")
    try:
        value = json.loads("".join(lines[:used]).rstrip(","))
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: malformed list ({err.msg})") from None
    return value


def _read_matrix(body: str, rows: int, cols: int, where: str) -> np.ndarray:
    lines = _body_lines(body)
    if lines and lines[0].startswith("["):
        value = _read_json(lines, where)
        if not isinstance(value, list) or not all(isinstance(r, list) for r in value):
            raise ValueError(f"{where}: expected a list of rows")
        data = value
    else:
        if len(lines) < rows:
            raise ValueError(f"{where}: expected {rows} rows, found {len(lines)}")
        data = [_parse_numbers(line, f"{where} row {r}") for r, line in enumerate(lines[:rows])]
    if len(data) != rows:
        raise ValueError(f"{where}: expected {rows} rows, found {len(data)}")
    for r, row in enumerate(data):
        if len(row) != cols:
            raise ValueError(f"{where} row {r}: expected {cols} values, found {len(row)}")
    try:
        out = np.array(data, dtype=np.float64).reshape(rows, cols)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: non-numeric values") from None
    if not np.isfinite(out).all():
        raise ValueError(f"{where}: non-finite values")
    return out


def _read_vector(body: str, size: int, where: str) -> np.ndarray:
    lines = _body_lines(body)
    if not lines:
        raise ValueError(f"{where}: no values")
    if lines[0].startswith("["):
        value = _read_json(lines, where)
        if not isinstance(value, list) or any(isinstance(v, list) for v in value):
            raise ValueError(f"{where}: expected a flat list")
        values = value
    else:
        values = _parse_numbers(lines[0], where)
    if len(values) != size:
        raise ValueError(f"{where}: expected {size} values, found {len(values)}")
    try:
        out = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: non-numeric values") from None
    if not np.isfinite(out).all():
        raise ValueError(f"{where}: non-finite values")
    return out


def _step(text: str | None, where: str) -> float | None:
    """A grid header's step (None: decimal numbers)."""
    if text is None:
        return None
    try:
        step = parse_number(text)
    except ValueError:
        raise ValueError(f"{where}: step {text!r} is not a number") from None
    if step < 0:
        raise ValueError(f"{where}: step {text!r} is negative")
    return step


def _read_grid(body: str, rows: int, cols: int, step: float, where: str) -> np.ndarray:
    lines = _body_lines(body)
    if len(lines) < rows:
        raise ValueError(f"{where}: expected {rows} rows, found {len(lines)}")
    return np.stack([read_grid_row(lines[r], cols, step, f"{where} row {r}") for r in range(rows)])


def parse_weights(text: str, spec: ModelSpec, block: int = -1) -> dict[str, torch.Tensor]:
    """The state dict written in a weights block of `text` (float32 tensors, `network.{i}.*` names).

    A block starts at the first Linear layer's weight header; `block` picks one when the text holds
    several (default the last: for `prompt + completion` that is the completion's). Text around and
    between layers (signatures, task text) is ignored.
    """
    matches = list(_HEADER.finditer(text))
    first = spec.linear_indices[0]
    starts = [k for k, m in enumerate(matches) if int(m.group(1)) == first and m.group(4) is None]
    if not starts:
        raise ValueError(f"no weights block found (no 'layer {first} weight [...]:' header)")
    try:
        start = starts[block]
    except IndexError:
        raise ValueError(f"block {block} requested but the text holds {len(starts)} weights blocks") from None
    end = starts[starts.index(start) + 1] if start != starts[-1] else len(matches)
    headers = matches[start:end]
    expected = [(i, kind) for i in spec.linear_indices for kind in ("weight", "bias")]
    state: dict[str, torch.Tensor] = {}
    for k, (index, kind) in enumerate(expected):
        if k >= len(headers):
            raise ValueError(f"layer {index} {kind}: missing (the block ends early)")
        m = headers[k]
        found = (int(m.group(1)), "bias" if m.group(4) else "weight")
        if found != (index, kind):
            if found[0] not in spec.linear_indices:
                raise ValueError(
                    f"layer {found[0]} is not a Linear layer of this architecture "
                    f"(Linear layers: {', '.join(map(str, spec.linear_indices))})"
                )
            raise ValueError(f"layer {index} {kind}: expected here, found layer {found[0]} {found[1]}")
        body_end = headers[k + 1].start() if k + 1 < len(headers) else len(text)
        body = text[m.end() : body_end]
        fan_in, fan_out = spec.layer_sizes[spec.linear_indices.index(index)]
        where = f"layer {index} {kind}"
        step = _step(m.group(5), where)
        if kind == "weight":
            rows, cols = int(m.group(2)), int(m.group(3))
            if (rows, cols) != (fan_out, fan_in):
                raise ValueError(
                    f"{where}: header says [{rows} x {cols}] "
                    f"but the architecture needs [{fan_out} x {fan_in}]"
                )
            value = (
                _read_matrix(body, rows, cols, where)
                if step is None
                else _read_grid(body, rows, cols, step, where)
            )
        else:
            value = (
                _read_vector(body, fan_out, where)
                if step is None
                else _read_grid(body, 1, fan_out, step, where)[0]
            )
        state[f"network.{index}.{kind}"] = torch.from_numpy(value).to(torch.float32)
    if len(headers) > len(expected):
        extra = headers[len(expected)]
        raise ValueError(f"layer {extra.group(1)}: unexpected extra header after the last layer")
    return state
