"""The probe sequences run through a subject model, layer by layer, in float64: the activations a signature
is made of.
"""

from __future__ import annotations

import numpy as np
import torch

from weightzoo.engine.model import ACTIVATIONS, ModelSpec, encode_inputs

# --- forward pass --------------------------------------------------------------------------------------


def layer_activations(
    specs: list[ModelSpec], weights: list[dict[str, torch.Tensor]], sequences: np.ndarray
) -> list[dict[str, np.ndarray]]:
    """Each model's activations on the probe sequences: layer key -> float64 [n_examples, n_neurons].

    Hidden layers give their post-activation outputs, the last Linear its logit ([n, 1]). Each model
    runs alone, in float64: a batched product over several models pads them to the widest and may pick
    another kernel for another number of models, and either changes the last bits, so a signature
    would depend on which models shared its part (the tests train one example alone and beside others
    and compare every byte). Alone, a model's few small products cost far less than its training.
    """
    if len(specs) != len(weights):
        raise ValueError(f"{len(specs)} specs but {len(weights)} weight sets")
    x = torch.as_tensor(np.asarray(sequences))
    with torch.no_grad():
        return [_forward_one(spec, w, x) for spec, w in zip(specs, weights, strict=True)]


def _forward_one(spec: ModelSpec, weights: dict, sequences: torch.Tensor) -> dict[str, np.ndarray]:
    h = encode_inputs(sequences, spec, dtype=torch.float64)  # [n, in]
    activation = ACTIVATIONS[spec.activation_type]()
    out: dict[str, np.ndarray] = {}
    for layer, index in enumerate(spec.linear_indices):
        w = torch.as_tensor(weights[f"network.{index}.weight"], dtype=torch.float64)  # [out, in]
        b = torch.as_tensor(weights[f"network.{index}.bias"], dtype=torch.float64)
        h = torch.nn.functional.linear(h, w, b)
        if layer < spec.num_layers:
            h = activation(h)
        out[str(index)] = h.numpy().copy()
    return out
