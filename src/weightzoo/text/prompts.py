"""The prompt and completion texts: an architecture header, the weights block, the signature block, and the
two tasks' prompts (`modification`, `classification`). The layout is described in `weightzoo.text`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from weightzoo.data.patterns import PATTERN_NAMES, PATTERNS
from weightzoo.data.space import SequenceSpace
from weightzoo.engine.model import ModelSpec
from weightzoo.text.numbers import NumberFormat, grid_rows, grid_step, step_text

# ---------------------------------------------------------------------------------------------------------
# blocks
# ---------------------------------------------------------------------------------------------------------

STYLES = ("separate", "interwoven")


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
    if fmt.grid:  # each tensor on its own grid, its step in the header
        w_step, b_step = grid_step(w), grid_step(b)
        return (
            f"layer {index} weight [{fan_out} x {fan_in}] step {step_text(w_step)}:\n"
            + "\n".join(grid_rows(w, w_step))
            + f"\nlayer {index} bias step {step_text(b_step)}:\n"
            + grid_rows(b[None, :], b_step)[0]
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
    header = f"layer {key} signature [{_count(len(neurons), 'neuron')}: {labels}]"
    if fmt.grid:  # one grid per column: a method's values share a scale, others need not
        steps = [grid_step(table[:, c]) for c in range(table.shape[1])]
        cells = [grid_rows(table[:, c][:, None], s) for c, s in enumerate(steps)]
        body = "\n".join("".join(cells[c][r] for c in range(len(steps))) for r in range(len(neurons)))
        return f"{header} steps {' '.join(step_text(s) for s in steps)}:\n{body}"
    body = "\n".join([" ".join(r) for r in fmt.strings(table, compact=True).tolist()])
    return f"{header}:\n{body}"


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
