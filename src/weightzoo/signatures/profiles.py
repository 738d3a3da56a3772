"""One model's signature from its activations: each layer's profiles (`profile_layer`), the seed's row
layout (`signature`) and the flat vector downstream readers make of it (`signature_vector`).
"""

from __future__ import annotations

import numpy as np

from weightzoo.signatures.methods import PROFILE_METHODS, ProfileContext, _get, _params

# --- profiles and signatures ---------------------------------------------------------------------------


def method_length(
    name: str, params: dict | None, n_examples: int, n_neurons: int, context: ProfileContext | None = None
) -> int:
    method = _get(name)
    return method.length(_params(method, params), n_examples, n_neurons, context)


def profile_layer(
    acts: np.ndarray, methods: dict[str, dict], context: ProfileContext
) -> dict[str, np.ndarray]:
    """method -> float64 [n_neurons, length] for one layer's activations [n_examples, n_neurons]."""
    acts = np.asarray(acts, dtype=np.float64)
    if acts.ndim != 2:
        raise ValueError(f"a layer's activations must be [examples, neurons], got shape {acts.shape}")
    n, m = acts.shape
    out = {}
    for name, params in methods.items():
        method = _get(name)
        full = _params(method, params)
        length = method.length(full, n, m, context)
        values = np.asarray(method.compute(acts, full, context), dtype=np.float64)
        if values.shape != (m, length):
            raise AssertionError(f"{name} gave shape {values.shape}, expected {(m, length)}")
        out[name] = values
    return out


def _layer_keys(acts_by_layer: dict) -> list[str]:
    return sorted(acts_by_layer, key=int)


def signature(
    acts_by_layer: dict[str, np.ndarray],
    methods: dict[str, dict],
    probe_groups: tuple[str, ...],
    model_config: dict,
) -> dict:
    """One model's signature in the seed's row layout; layers in network order, methods in `methods` order."""
    for name in methods:
        _get(name)
    context = ProfileContext(tuple(probe_groups))
    layers = {}
    for key in _layer_keys(acts_by_layer):
        acts = np.asarray(acts_by_layer[key], dtype=np.float64)
        profiles = profile_layer(acts, methods, context)
        n, m = acts.shape
        neurons = {}
        for j in range(m):
            neurons[str(j)] = {
                name: (float(values[j, 0]) if PROFILE_METHODS[name].scalar else [float(v) for v in values[j]])
                for name, values in profiles.items()
            }
        layers[str(key)] = {
            "neuron_profiles": neurons,
            "layer_info": {"num_neurons": int(m), "num_examples": int(n), "profile_methods": list(methods)},
        }
    return {"neuron_activations": layers, "model_config": model_config}


def signature_vector(sig: dict, methods) -> list[float]:
    """Flatten as downstream readers do: layers (by index), neurons (by index), then `methods` in order."""
    vector: list[float] = []
    layers = sig["neuron_activations"]
    for key in _layer_keys(layers):
        profiles = layers[key]["neuron_profiles"]
        for neuron in sorted(profiles, key=int):
            for name in methods:
                value = profiles[neuron][name]
                if isinstance(value, list):
                    vector.extend(float(v) for v in value)
                else:
                    vector.append(float(value))
    return vector
