"""Activation signatures: per-neuron statistics of a subject model over the fixed probe (signature) set.

Every model of a dataset sees the same probe sequences. `layer_activations` runs them through many
models at once (batched by architecture), recording each hidden layer's post-activation outputs and the
output logit. `signature` turns one model's activations into the layout the seed's downstream readers
expect: per layer (the Linear module's index in `network`, as a string),
per neuron (its index, as a string), per profile method, a number or a list of numbers.

Profile methods. `a` is one neuron's activations over the n probe examples in file order; `A` is the
layer's activation matrix [n, m] (examples × neurons). Every method gives each neuron of a layer the same
number of values (its length), fixed by the method's parameters and the layer (never by the data), so
signature vectors of one dataset line up.

| method | params | length | value for a neuron |
|---|---|---|---|
| mean | | 1 | mean(a) |
| std | | 1 | population standard deviation (ddof=0) |
| max | | 1 | max(a) |
| min | | 1 | min(a) |
| sparsity | threshold | 1 | fraction of examples with abs(a) <= threshold |
| pca | components | components | with A - mean(A, axis=0) = U S Vᵀ: V[j, c] · S[c] / sqrt(n - 1) |
| svd | components | components | with A = U S Vᵀ (uncentered): V[j, c] · S[c] / sqrt(n) |
| entropy | bins | 1 | bits of the `bins`-bin histogram of a over [min(a), max(a)]; 0 if constant |
| clustering | n_clusters | n_clusters | sorted centres of a 1-D k-means on a (see below) |
| fourier | n_frequencies | n_frequencies | abs(rfft(a)[k]) / n, k = 1..n_frequencies (k=0 left out) |
| pattern_wise | | number of groups | mean(a) over each probe group's examples (order below) |

(j is the neuron, c = 0..components-1 the component: pca gives covariance-scaled loadings, so L Lᵀ is
the layer's sample covariance when all components are kept. Entropy uses numpy.histogram's binning and
lies in [0, log2(bins)].)

Details, so that a signature is a pure function of the model and the probe set:

- pca / svd: each principal axis (right singular vector) gets a deterministic sign: its entry of largest
  absolute value (the first such entry on ties) is made positive. Components beyond the layer's rank
  (at most min(n, m); singular values at or below S[0]·max(n, m)·eps count as zero) are 0.0, so the
  length stays `components` however narrow the layer is. With n = 1 the pca divisor is 1 (the centered
  matrix is all zeros anyway).
- clustering: Lloyd's algorithm with the initial centres at the quantiles of a at evenly spaced levels
  linspace(0, 1, n_clusters) (linear interpolation); each point goes to its nearest centre (the lower
  centre on ties), each centre moves to the mean of its points (a centre with no points stays put);
  it stops when no assignment changes, or after 100 iterations. The centres are sorted ascending. When a
  has no more distinct values than n_clusters, the centres are its distinct values, ascending, padded by
  repeating the last (largest) one up to n_clusters (a constant neuron gives its value n_clusters times).
- fourier: when the probe set has fewer than n_frequencies non-constant frequencies (n // 2), the rest
  are 0.0. A constant neuron gives all zeros.
- pattern_wise: the groups are those present in the probe set (`ProbeSet.groups`), ordered as the pattern
  names in `weightzoo.patterns.PATTERN_NAMES`, then "negative". The probe set is the same for every
  model of a dataset, so the length is too.

Output types: the scalar methods (mean, std, max, min, sparsity, entropy) give a number; the others
always give a list, even when their length is 1 (e.g. fourier's default n_frequencies=1), so a method's
JSON type never depends on its parameters. Readers flatten numbers and lists alike (`signature_vector`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from weightzoo.model import ACTIVATIONS, ModelSpec, encode_inputs
from weightzoo.patterns import PATTERN_NAMES

NEGATIVE = "negative"
KMEANS_MAX_ITERATIONS = 100

__all__ = [
    "PROFILE_METHODS",
    "ProfileContext",
    "ProfileMethod",
    "group_order",
    "layer_activations",
    "method_length",
    "profile_layer",
    "signature",
    "signature_vector",
]


@dataclass(frozen=True)
class ProfileContext:
    """What a method may need beyond the activations: the probe set's group of each example."""

    probe_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProfileMethod:
    name: str
    formula: str  # one line; the module docstring has the full table
    length: Callable[[dict, int, int, ProfileContext], int]
    compute: Callable[[np.ndarray, dict, ProfileContext], np.ndarray]  # -> [n_neurons, length]
    scalar: bool = False  # gives a number rather than a list
    defaults: tuple[tuple[str, object], ...] = ()


PROFILE_METHODS: dict[str, ProfileMethod] = {}


def _register(method: ProfileMethod) -> None:
    PROFILE_METHODS[method.name] = method


def _get(name: str) -> ProfileMethod:
    try:
        return PROFILE_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown profile method {name!r}; known: {', '.join(PROFILE_METHODS)}") from None


def _params(method: ProfileMethod, params: dict | None) -> dict:
    return {**dict(method.defaults), **(params or {})}


def _column(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1, 1)


# --- scalar statistics -------------------------------------------------------------------------------


def _one(*_args) -> int:
    return 1


_register(ProfileMethod("mean", "mean(a)", _one, lambda a, p, c: _column(a.mean(axis=0)), scalar=True))
_register(ProfileMethod("std", "population std (ddof=0)", _one, lambda a, p, c: _column(a.std(axis=0)), True))
_register(ProfileMethod("max", "max(a)", _one, lambda a, p, c: _column(a.max(axis=0)), scalar=True))
_register(ProfileMethod("min", "min(a)", _one, lambda a, p, c: _column(a.min(axis=0)), scalar=True))
_register(
    ProfileMethod(
        "sparsity",
        "fraction of examples with |a| <= threshold",
        _one,
        lambda a, p, c: _column((np.abs(a) <= p["threshold"]).mean(axis=0)),
        scalar=True,
        defaults=(("threshold", 1e-6),),
    )
)


# --- pca / svd ---------------------------------------------------------------------------------------


def _loadings(matrix: np.ndarray, components: int, divisor: float) -> np.ndarray:
    """[m, components]: right singular vectors (sign-fixed) × singular values / divisor; 0 past the rank."""
    n, m = matrix.shape
    out = np.zeros((m, components))
    if n == 0 or m == 0:
        return out
    _, s, vt = np.linalg.svd(matrix, full_matrices=False)
    tol = s[0] * max(n, m) * np.finfo(np.float64).eps if s.size else 0.0
    rank = int((s > tol).sum())
    keep = min(rank, components)
    for c in range(keep):
        axis = vt[c]
        if axis[np.argmax(np.abs(axis))] < 0:
            axis = -axis
        out[:, c] = axis * s[c] / divisor
    return out


def _pca(a, p, c):
    n = a.shape[0]
    return _loadings(a - a.mean(axis=0), p["components"], math.sqrt(max(n - 1, 1)))


def _svd(a, p, c):
    return _loadings(a, p["components"], math.sqrt(max(a.shape[0], 1)))


_register(
    ProfileMethod(
        "pca",
        "covariance-scaled loadings on the top principal axes of the centered layer matrix",
        lambda p, n, m, c=None: p["components"],
        _pca,
        defaults=(("components", 3),),
    )
)
_register(
    ProfileMethod(
        "svd",
        "right singular vectors × singular values / sqrt(n) of the uncentered layer matrix",
        lambda p, n, m, c=None: p["components"],
        _svd,
        defaults=(("components", 2),),
    )
)


# --- entropy -----------------------------------------------------------------------------------------


def _entropy(a, p, c):
    """numpy.histogram's equal-bin assignment, vectorised over neurons."""
    bins = p["bins"]
    n, m = a.shape
    lo, hi = a.min(axis=0), a.max(axis=0)
    result = np.zeros((m, 1))
    varying = hi > lo
    if n == 0 or not varying.any():
        return result
    x, lo, hi = a[:, varying], lo[varying], hi[varying]
    edges = np.linspace(lo, hi, bins + 1)  # [bins + 1, m'], as numpy.histogram builds them per neuron
    idx = (((x - lo) / (hi - lo)) * bins).astype(np.intp)
    idx[idx == bins] -= 1
    cols = np.arange(x.shape[1])[None, :]
    idx[x < edges[idx, cols]] -= 1
    idx[(x >= edges[idx + 1, cols]) & (idx != bins - 1)] += 1
    counts = np.zeros((bins, x.shape[1]))
    np.add.at(counts, (idx, np.broadcast_to(cols, idx.shape)), 1.0)
    prob = counts / n
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(prob > 0, -prob * np.log2(np.where(prob > 0, prob, 1.0)), 0.0)
    result[varying, 0] = terms.sum(axis=0)
    return result


_register(
    ProfileMethod(
        "entropy",
        "Shannon entropy (bits) of a `bins`-bin histogram over [min, max]; 0 for a constant neuron",
        _one,
        _entropy,
        scalar=True,
        defaults=(("bins", 20),),
    )
)


# --- clustering --------------------------------------------------------------------------------------


def _kmeans_1d(a, p, c):
    k = p["n_clusters"]
    n, m = a.shape
    out = np.zeros((m, k))
    if n == 0 or m == 0:
        return out
    ordered = np.sort(a, axis=0)
    distinct = 1 + (np.diff(ordered, axis=0) > 0).sum(axis=0)
    few = distinct <= k
    for j in np.flatnonzero(few):
        values = np.unique(a[:, j])
        out[j, : len(values)] = values
        out[j, len(values) :] = values[-1]
    many = np.flatnonzero(~few)
    if many.size:
        x = a[:, many]  # [n, m']
        centres = np.quantile(x, np.linspace(0.0, 1.0, k), axis=0).T  # [m', k]
        assign = None
        for _ in range(KMEANS_MAX_ITERATIONS):
            new_assign = np.argmin(np.abs(x[:, :, None] - centres[None, :, :]), axis=2)  # [n, m']
            if assign is not None and np.array_equal(new_assign, assign):
                break
            assign = new_assign
            onehot = assign[:, :, None] == np.arange(k)[None, None, :]  # [n, m', k]
            counts = onehot.sum(axis=0)
            sums = (onehot * x[:, :, None]).sum(axis=0)
            centres = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        out[many] = np.sort(centres, axis=1)
    return out


_register(
    ProfileMethod(
        "clustering",
        "sorted 1-D k-means centres (quantile init, Lloyd); padded with the last centre if too few values",
        lambda p, n, m, c=None: p["n_clusters"],
        _kmeans_1d,
        defaults=(("n_clusters", 2),),
    )
)


# --- fourier -----------------------------------------------------------------------------------------


def _fourier(a, p, c):
    k = p["n_frequencies"]
    n, m = a.shape
    out = np.zeros((m, k))
    if n == 0:
        return out
    mags = np.abs(np.fft.rfft(a, axis=0))[1 : k + 1] / n  # [<=k, m]
    out[:, : mags.shape[0]] = mags.T
    return out


_register(
    ProfileMethod(
        "fourier",
        "|rfft(a)[k]| / n for k = 1..n_frequencies; 0 where the probe set has fewer frequencies",
        lambda p, n, m, c=None: p["n_frequencies"],
        _fourier,
        defaults=(("n_frequencies", 1),),
    )
)


# --- pattern_wise ------------------------------------------------------------------------------------


def group_order(probe_groups) -> list[str]:
    """The probe set's groups: pattern names in PATTERN_NAMES order, then "negative" (if present)."""
    present = set(probe_groups)
    unknown = present - set(PATTERN_NAMES) - {NEGATIVE}
    if unknown:
        raise ValueError(f"unknown probe groups: {', '.join(sorted(unknown))}")
    return [name for name in PATTERN_NAMES if name in present] + ([NEGATIVE] if NEGATIVE in present else [])


def _pattern_wise(a, p, c):
    groups = np.asarray(c.probe_groups, dtype=object)
    if len(groups) != a.shape[0]:
        raise ValueError(f"{len(groups)} probe groups for {a.shape[0]} examples")
    order = group_order(c.probe_groups)
    out = np.zeros((a.shape[1], len(order)))
    for i, name in enumerate(order):
        out[:, i] = a[groups == name].mean(axis=0)
    return out


def _pattern_wise_length(p, n, m, c=None) -> int:
    if c is None:
        raise ValueError("pattern_wise needs the probe groups to know its length")
    return len(group_order(c.probe_groups))


_register(
    ProfileMethod(
        "pattern_wise",
        "mean(a) per probe group: patterns in PATTERN_NAMES order, then 'negative'",
        _pattern_wise_length,
        _pattern_wise,
    )
)


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
