"""Post-training precision and quantization, applied the same way to degraded and improved weights.

Each tensor (weight or bias) is quantized on its own, symmetrically, as `q * scale` with integer q:

| method  | q in            | scale                                   |
|---------|-----------------|-----------------------------------------|
| int8    | -127 .. 127     | max|w| / 127                            |
| int4    | -7 .. 7         | max|w| / 7    (at most 15 values)       |
| ternary | -1, 0, 1        | mean |w| over entries with |w| > 0.7 * mean|w|; q = sign(w) there, else 0 |
| binary  | -1, 1           | mean |w|; q = sign(w), with sign(0) = +1 |

The scale keeps ternary and binary models computing something of the right magnitude. A tensor of
zeros keeps scale 0. Stored weights are the dequantized values `q * scale`; the scales are recorded.
`precision` (float32, float16, bfloat16) rounds the stored values to that type first.
"""

from __future__ import annotations

import torch

PRECISIONS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
METHODS = ("none", "int8", "int4", "ternary", "binary")


def quantize_tensor(w: torch.Tensor, method: str) -> tuple[torch.Tensor, float]:
    """Dequantized tensor and its scale (1.0 for `none`)."""
    w = w.to(torch.float32)
    if method == "none":
        return w.clone(), 1.0
    magnitude = w.abs()
    if method in ("int8", "int4"):
        levels = 127 if method == "int8" else 7
        scale = float(magnitude.max()) / levels
        q = torch.round(w / scale).clamp(-levels, levels) if scale > 0 else torch.zeros_like(w)
    elif method == "ternary":
        threshold = 0.7 * float(magnitude.mean())
        keep = magnitude > threshold
        scale = float(magnitude[keep].mean()) if keep.any() else 0.0
        q = torch.sign(w) * keep
    elif method == "binary":
        scale = float(magnitude.mean())
        q = torch.where(w >= 0, 1.0, -1.0)
    else:
        raise ValueError(f"unknown quantization {method!r}; known: {', '.join(METHODS)}")
    return q * scale, scale


def apply_precision_and_quantization(
    weights: dict[str, torch.Tensor], precision: str, method: str
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Round to `precision`, then quantize each tensor; returns float32 tensors and per-tensor scales."""
    dtype = PRECISIONS[precision]
    if dtype == torch.float32 and method == "none":  # nothing to round or quantize: copies, as below
        return {name: w.to(torch.float32).clone() for name, w in weights.items()}, dict.fromkeys(weights, 1.0)
    out, scales = {}, {}
    for name, w in weights.items():
        rounded = w.to(dtype).to(torch.float32)
        q, scale = quantize_tensor(rounded, method)
        out[name] = q.to(dtype).to(torch.float32)
        scales[name] = scale
    return out, scales
