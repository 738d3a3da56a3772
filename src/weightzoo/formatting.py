"""Prompt text: subject-model weights and signatures written compactly, and read back.

Numbers
    `NumberFormat(decimals=4, compact=True)`. Every value is rounded to `decimals` places (half to
    even on the scaled value), then written without trailing zeros. Compact numbers drop the leading
    zero (`-.123`, `.5`, `2`, `0` for zero); each weight-matrix row is one line, numbers separated by
    one space. Non-compact writes each matrix as indented JSON nested lists (numbers keep their leading
    zero, so the block is valid JSON). The default spends about 5-6 characters per parameter on
    models of the seed's sizes (the seed spent ~17, one number per line).

Weights block
    For each Linear layer, in `network` index order::

        layer 0 weight [32 x 7]:
        .123 -.5 0 ...          (one line per output neuron; `in` numbers each)
        layer 0 bias:
        .01 -.2 ...             (one line, `out` numbers)

Signature block
    Per layer (the signature's layer keys are Linear indices, as in COMPAT.md), a header naming the
    method values, then one line per neuron (neuron 0 first) with that neuron's method values in the
    method order (list values flattened), always in compact numbers::

        layer 0 signature [32 neurons: mean std]:
        .41 .2

Prompts
    `modification` and `classification` return `(prompt, completion)`;
    the dataset's `_text` column is `prompt + completion`. Style `separate` writes all weights and then
    the whole signature; `interwoven` writes each layer's signature right after that layer's weights.

Reading back
    `parse_weights(text, spec)` finds a weights block in any text (a prompt, a completion, or both
    joined: by default the last block, i.e. the completion's) and returns the state dict. Compact and
    JSON bodies are both recognised. Malformed or mis-shaped blocks raise `ValueError` naming the layer.

Configuration (keys suggested for config.py; here they are function arguments with these defaults):
    signature.prompt_format.style            -> `style` ("separate")
    signature.prompt_format.decimals         -> `NumberFormat.decimals` (3)
    signature.prompt_format.compact_numbers  -> `NumberFormat.compact` (True)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from weightzoo.errors import UserError, shorten
from weightzoo.model import ModelSpec
from weightzoo.patterns import PATTERN_NAMES, PATTERNS
from weightzoo.space import SequenceSpace

STYLES = ("separate", "interwoven")
MAX_DECIMALS = 8
# Quantised values |q| <= _TABLE_HALF are looked up in a table of ready-made strings; others are
# formatted one by one (rare: |value| >= 200 at 3 decimals).
_TABLE_HALF = 200_000
CHARS_PER_TOKEN_ESTIMATE = 4


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


# ---------------------------------------------------------------------------------------------------------
# blocks
# ---------------------------------------------------------------------------------------------------------


def num_parameters(spec: ModelSpec) -> int:
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in spec.layer_sizes)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def architecture_header(spec: ModelSpec) -> str:
    encoding = (
        f"one-hot ({spec.sequence_length} positions x {spec.vocab_size} tokens)"
        if spec.input_encoding == "one_hot"
        else f"token index (A=0, B=1, ...) per position, {spec.sequence_length} positions"
    )
    return (
        f"Architecture: input encoding {encoding}; input size {spec.input_size}; "
        f"{_count(spec.num_layers, 'hidden layer')} of width {spec.neurons_per_layer}; "
        f"activation {spec.activation_type}; output 1 logit (positive = pattern present). "
        f"Vocabulary {spec.vocab_size} tokens, sequence length {spec.sequence_length}."
    )


def _as_array(weights: Mapping[str, Any], name: str) -> np.ndarray:
    if name not in weights:
        raise ValueError(f"weights have no {name!r}")
    value = weights[name]
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def _layer_weights_text(spec: ModelSpec, weights: Mapping[str, Any], index: int, fmt: NumberFormat) -> str:
    fan_in, fan_out = spec.layer_sizes[spec.linear_indices.index(index)]
    w = _as_array(weights, f"network.{index}.weight")
    b = _as_array(weights, f"network.{index}.bias")
    if w.shape != (fan_out, fan_in) or b.shape != (fan_out,):
        raise ValueError(
            f"layer {index}: weight {tuple(w.shape)} / bias {tuple(b.shape)} do not fit the architecture "
            f"(weight {(fan_out, fan_in)}, bias ({fan_out},))"
        )
    return (
        f"layer {index} weight [{fan_out} x {fan_in}]:\n{fmt.matrix(w)}\nlayer {index} bias:\n{fmt.vector(b)}"
    )


def weights_block(
    spec: ModelSpec, weights: Mapping[str, Any], number_format: NumberFormat | None = None
) -> str:
    """All Linear layers' weights and biases, in `network` order."""
    fmt = number_format or NumberFormat()
    return "\n".join(_layer_weights_text(spec, weights, i, fmt) for i in spec.linear_indices)


def _layers_of(signature: Mapping[str, Any]) -> Mapping[str, Any]:
    return signature["neuron_activations"] if "neuron_activations" in signature else signature


def _layer_signature_text(
    key: str, layer: Mapping[str, Any], fmt: NumberFormat, methods: Sequence[str] | None
) -> str:
    profiles = layer["neuron_profiles"]
    methods = list(methods if methods is not None else layer["layer_info"]["profile_methods"])
    neurons = sorted(profiles, key=int)
    if [int(n) for n in neurons] != list(range(len(neurons))):
        raise ValueError(f"layer {key} signature: neurons are not numbered 0..{len(neurons) - 1}")
    widths: list[int] = []
    columns = []
    for method in methods:
        try:
            values = [profiles[n][method] for n in neurons]
        except KeyError:
            missing = next(n for n in neurons if method not in profiles[n])
            raise ValueError(f"layer {key} signature: neuron {missing} has no {method!r} value") from None
        if all(isinstance(v, (int, float)) for v in values):
            column = np.array(values, dtype=np.float64).reshape(len(neurons), 1)
        else:
            flat = [np.ravel(np.asarray(v, dtype=np.float64)) for v in values]
            for n, f in zip(neurons, flat, strict=True):
                if len(f) != len(flat[0]):
                    raise ValueError(
                        f"layer {key} signature: neuron {n} has {len(f)} {method!r} values, "
                        f"neuron 0 has {len(flat[0])}"
                    )
            column = np.stack(flat) if flat else np.zeros((0, 0))
        widths.append(column.shape[1])
        columns.append(column)
    labels = " ".join(m if w == 1 else f"{m}({w})" for m, w in zip(methods, widths, strict=True))
    table = np.concatenate(columns, axis=1) if columns else np.zeros((len(neurons), 0))
    body = "\n".join([" ".join(r) for r in fmt.strings(table, compact=True).tolist()])
    return f"layer {key} signature [{_count(len(neurons), 'neuron')}: {labels}]:\n{body}"


def signature_block(
    signature: Mapping[str, Any],
    number_format: NumberFormat | None = None,
    methods: Sequence[str] | None = None,
    spec: ModelSpec | None = None,
) -> str:
    """Every signature layer in numeric order: a header, then one compact line per neuron."""
    fmt = number_format or NumberFormat()
    layers = _layers_of(signature)
    keys = sorted(layers, key=int)
    if spec is not None:
        _check_signature_keys(spec, keys)
    return "\n".join(_layer_signature_text(k, layers[k], fmt, methods) for k in keys)


def _check_signature_keys(spec: ModelSpec, keys: Iterable[str]) -> None:
    bad = [k for k in keys if int(k) not in spec.linear_indices]
    if bad:
        raise ValueError(
            f"signature layers {', '.join(bad)} are not Linear layers of this architecture "
            f"(Linear layers: {', '.join(map(str, spec.linear_indices))})"
        )


def model_block(
    spec: ModelSpec,
    weights: Mapping[str, Any],
    signature: Mapping[str, Any],
    number_format: NumberFormat | None = None,
    style: str = "separate",
    methods: Sequence[str] | None = None,
) -> str:
    """Weights and signature in the given style (without the architecture header)."""
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}; known: {', '.join(STYLES)}")
    fmt = number_format or NumberFormat()
    layers = _layers_of(signature)
    _check_signature_keys(spec, layers)
    if style == "separate":
        return (
            "Weights:\n"
            + weights_block(spec, weights, fmt)
            + "\n\nSignature (activation profile of each neuron on the signature dataset):\n"
            + signature_block(signature, fmt, methods)
        )
    parts = ["Weights, each layer followed by its signature (activation profile of each neuron):"]
    for index in spec.linear_indices:
        parts.append(_layer_weights_text(spec, weights, index, fmt))
        if str(index) in layers:
            parts.append(_layer_signature_text(str(index), layers[str(index)], fmt, methods))
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------
# prompts
# ---------------------------------------------------------------------------------------------------------


def pattern_descriptions(names: Iterable[str], space: SequenceSpace) -> dict[str, str]:
    """name -> description for the space's vocabulary, in canonical PATTERN_NAMES order."""
    names = set(names)
    unknown = names - set(PATTERN_NAMES)
    if unknown:
        raise ValueError(f"unknown patterns: {', '.join(sorted(unknown))}")
    return {n: PATTERNS[n].description(space) for n in PATTERN_NAMES if n in names}


def modification(
    spec: ModelSpec,
    degraded_weights: Mapping[str, Any],
    improved_weights: Mapping[str, Any],
    signature: Mapping[str, Any],
    target_description: str,
    number_format: NumberFormat | None = None,
    style: str = "separate",
    methods: Sequence[str] | None = None,
) -> tuple[str, str]:
    """(prompt, completion): degraded model + signature + task → the improved weights block."""
    fmt = number_format or NumberFormat()
    prompt = (
        architecture_header(spec)
        + "\n\n"
        + model_block(spec, degraded_weights, signature, fmt, style, methods)
        + f"\n\nThe model is degraded on the pattern: {target_description}. Produce improved weights.\n"
        + "Improved weights:\n"
    )
    return prompt, weights_block(spec, improved_weights, fmt)


def classification(
    spec: ModelSpec,
    improved_weights: Mapping[str, Any],
    signature: Mapping[str, Any],
    enabled_patterns: Mapping[str, str],
    selected_patterns: Iterable[str],
    number_format: NumberFormat | None = None,
    style: str = "separate",
    methods: Sequence[str] | None = None,
) -> tuple[str, str]:
    """(prompt, completion): model + signature + the enabled patterns → the selected names.

    `enabled_patterns` maps name -> description (see `pattern_descriptions`); the completion lists
    the selected names in canonical PATTERN_NAMES order, joined by ", ".
    """
    selected = set(selected_patterns)
    missing = selected - set(enabled_patterns)
    if missing:
        raise ValueError(f"selected patterns not among the enabled ones: {', '.join(sorted(missing))}")
    order = {n: i for i, n in enumerate(PATTERN_NAMES)}
    unknown = [n for n in enabled_patterns if n not in order]
    if unknown:
        raise ValueError(f"unknown patterns: {', '.join(unknown)}")
    listed = sorted(enabled_patterns, key=order.__getitem__)
    pattern_lines = "\n".join(f"{n}: {enabled_patterns[n]}" for n in listed)
    prompt = (
        architecture_header(spec)
        + "\n\n"
        + model_block(spec, improved_weights, signature, number_format, style, methods)
        + "\n\nThe model outputs a positive logit for sequences matching some of these patterns:\n"
        + pattern_lines
        + '\nWhich patterns does it detect? Answer with their names, separated by ", ".\nPatterns: '
    )
    completion = ", ".join(sorted(selected, key=order.__getitem__))
    return prompt, completion


# ---------------------------------------------------------------------------------------------------------
# reading back
# ---------------------------------------------------------------------------------------------------------

_HEADER = re.compile(r"^layer (\d+) (?:weight \[(\d+) x (\d+)\]|(bias)):[ \t]*$", re.MULTILINE)


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
        if kind == "weight":
            rows, cols = int(m.group(2)), int(m.group(3))
            if (rows, cols) != (fan_out, fan_in):
                raise ValueError(
                    f"{where}: header says [{rows} x {cols}] "
                    f"but the architecture needs [{fan_out} x {fan_in}]"
                )
            value = _read_matrix(body, rows, cols, where)
        else:
            value = _read_vector(body, fan_out, where)
        state[f"network.{index}.{kind}"] = torch.from_numpy(value).to(torch.float32)
    if len(headers) > len(expected):
        extra = headers[len(expected)]
        raise ValueError(f"layer {extra.group(1)}: unexpected extra header after the last layer")
    return state


# ---------------------------------------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------------------------------------


def chars_per_parameter(
    spec: ModelSpec, weights: Mapping[str, Any], number_format: NumberFormat | None = None
) -> float:
    """Characters of the weights block (headers included) per model parameter."""
    return len(weights_block(spec, weights, number_format)) / num_parameters(spec)


def load_tokenizer(name_or_path: str, config_path: Path | None = None) -> Any:
    """A tokenizer already on this machine (`signature.prompt_format.tokenizer`): a `tokenizer.json`
    file (read with `tokenizers`; a relative path is relative to the config file's folder, then to the
    working folder), or a `transformers` tokenizer folder or cached name. Nothing is downloaded. A
    path that names no file is an error, never a silent fallback to an estimate."""
    key = "signature.prompt_format.tokenizer"
    candidates = [Path(name_or_path).expanduser()]
    if config_path is not None and not candidates[0].is_absolute():
        candidates.insert(0, Path(config_path).parent / name_or_path)
    path = next((c for c in candidates if c.exists()), None)
    looks_like_path = "/" in name_or_path or "\\" in name_or_path or name_or_path.endswith(".json")
    if path is None and looks_like_path:
        raise UserError(f"{key}: {shorten(name_or_path, 120)} does not exist")
    try:
        if path is not None and path.is_file():
            from tokenizers import Tokenizer

            return Tokenizer.from_file(str(path))
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path or name_or_path), local_files_only=True)
    except ImportError as e:
        raise UserError(
            f"{key}: {shorten(name_or_path, 120)}: the package {e.name!r} is needed to read it"
        ) from None
    except Exception as e:  # the libraries raise OSError, ValueError or their own errors for a bad path
        raise UserError(
            f"{key}: {shorten(name_or_path, 120)} could not be loaded from this machine: {shorten(e, 160)}"
        ) from None


def count_tokens(texts: Iterable[str], tokenizer: Any = None) -> list[int]:
    """Token count of each text.

    With a tokenizer (anything with `.encode(text)`: a `tokenizers.Tokenizer`, whose result has
    `.ids`, or a `transformers` tokenizer, which returns a list and adds its special tokens) the
    counts are exact for it. Without one they are an estimate: ceil(characters / 4), the usual rule
    of thumb for English BPE tokenizers. Number-heavy text usually tokenizes denser than that (often
    ~1 token per 2-3 characters), so treat the estimate as a lower bound.
    """
    if tokenizer is None:
        return [math.ceil(len(t) / CHARS_PER_TOKEN_ESTIMATE) for t in texts]
    if not hasattr(tokenizer, "encode"):
        raise TypeError(f"tokenizer {type(tokenizer).__name__} has no .encode method")
    counts = []
    for t in texts:
        encoded = tokenizer.encode(t)
        counts.append(len(getattr(encoded, "ids", encoded)))
    return counts
