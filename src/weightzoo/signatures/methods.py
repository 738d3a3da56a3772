"""The profile methods, one registry: each method's name, its parameters with their defaults, its length
(values per neuron, fixed by the parameters and the layer) and its computation. The table of what each
method gives is in `weightzoo.signatures`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from weightzoo.data.patterns import PATTERN_NAMES

NEGATIVE = "negative"
KMEANS_MAX_ITERATIONS = 100


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
