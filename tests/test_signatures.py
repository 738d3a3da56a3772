"""Profile methods against direct numpy computations, the seed's row layout, and the batched forward pass."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from weightzoo.config import PROFILE_METHOD_DEFAULTS
from weightzoo.data.patterns import PATTERN_NAMES
from weightzoo.engine.model import ACTIVATIONS, ModelSpec, build_model, encode_inputs, init_weights
from weightzoo.signatures import (
    PROFILE_METHODS,
    ProfileContext,
    group_order,
    layer_activations,
    method_length,
    profile_layer,
    signature,
    signature_vector,
)

# 6 examples × 3 neurons: a varied one, a constant one, one with two distinct values.
ACTS = np.array(
    [
        [0.5, 2.0, 0.0],
        [-1.0, 2.0, 0.0],
        [3.0, 2.0, 1.0],
        [0.0, 2.0, 1.0],
        [2.5, 2.0, 0.0],
        [1.0, 2.0, 1.0],
    ]
)
P1, P2 = PATTERN_NAMES[0], PATTERN_NAMES[3]
GROUPS = ("negative", P2, P1, P2, "negative", P1)
CTX = ProfileContext(GROUPS)


def run(name, params=None, acts=ACTS, ctx=CTX):
    return profile_layer(acts, {name: params or dict(PROFILE_METHOD_DEFAULTS[name])}, ctx)[name]


def test_registry_covers_the_config_methods():
    assert set(PROFILE_METHODS) == set(PROFILE_METHOD_DEFAULTS)
    for name, method in PROFILE_METHODS.items():
        assert dict(method.defaults) == PROFILE_METHOD_DEFAULTS[name]
        assert method.formula and "\n" not in method.formula


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown profile method"):
        profile_layer(ACTS, {"median": {}}, CTX)
    with pytest.raises(ValueError, match="unknown profile method"):
        signature({"0": ACTS}, {"mean": {}, "nope": {}}, GROUPS, {})


def test_simple_statistics():
    np.testing.assert_allclose(run("mean")[:, 0], ACTS.mean(axis=0))
    np.testing.assert_allclose(run("std")[:, 0], ACTS.std(axis=0, ddof=0))
    np.testing.assert_allclose(run("max")[:, 0], ACTS.max(axis=0))
    np.testing.assert_allclose(run("min")[:, 0], ACTS.min(axis=0))
    assert run("std")[1, 0] == 0.0


def test_sparsity_threshold():
    np.testing.assert_allclose(run("sparsity")[:, 0], [1 / 6, 0.0, 0.5])
    np.testing.assert_allclose(run("sparsity", {"threshold": 1.0})[:, 0], [4 / 6, 0.0, 1.0])
    np.testing.assert_allclose(run("sparsity", {"threshold": 0.5})[:, 0], [2 / 6, 0.0, 0.5])


def _ref_loadings(matrix, components, divisor):
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    out = np.zeros((matrix.shape[1], components))
    for c in range(min(components, len(s))):
        if s[c] <= s[0] * max(matrix.shape) * np.finfo(float).eps:
            continue
        v = vt[c] * np.sign(vt[c][np.argmax(np.abs(vt[c]))])
        out[:, c] = v * s[c] / divisor
    return out


def test_pca_matches_covariance_eigendecomposition():
    got = run("pca", {"components": 3})
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, _ref_loadings(ACTS - ACTS.mean(0), 3, math.sqrt(5)), atol=1e-12)
    # Covariance-scaled loadings: L Lᵀ reproduces the sample covariance (the full-rank part of it).
    cov = np.cov(ACTS, rowvar=False)
    np.testing.assert_allclose(got @ got.T, cov, atol=1e-12)
    # The constant neuron loads on nothing; the centered matrix has rank 2, so component 3 is padding.
    np.testing.assert_allclose(got[1], 0.0, atol=1e-12)
    np.testing.assert_array_equal(got[:, 2], 0.0)
    # Sign rule: the largest-|value| entry of each axis is positive.
    for c in range(2):
        assert got[np.argmax(np.abs(got[:, c])), c] > 0


def test_svd_matches_numpy():
    got = run("svd", {"components": 2})
    np.testing.assert_allclose(got, _ref_loadings(ACTS, 2, math.sqrt(6)), atol=1e-12)
    # With all components, L Lᵀ = AᵀA / n.
    full = run("svd", {"components": 3})
    np.testing.assert_allclose(full @ full.T, ACTS.T @ ACTS / 6, atol=1e-12)


@pytest.mark.parametrize("name", ["pca", "svd"])
def test_narrow_layer_pads_components_with_zeros(name):
    narrow = ACTS[:, :2]  # two neurons: at most two components
    got = run(name, {"components": 5}, acts=narrow)
    assert got.shape == (2, 5)
    np.testing.assert_array_equal(got[:, 2:], 0.0)
    assert np.abs(got[:, 0]).max() > 0
    assert method_length(name, {"components": 5}, 6, 2) == 5
    # Fewer examples than neurons limits it too.
    few = run(name, {"components": 4}, acts=ACTS[:2])
    assert few.shape == (3, 4)
    np.testing.assert_array_equal(few[:, 2:], 0.0)


def _ref_entropy(a, bins):
    if a.max() == a.min():
        return 0.0
    counts, _ = np.histogram(a, bins=bins, range=(a.min(), a.max()))
    p = counts[counts > 0] / len(a)
    return float(-(p * np.log2(p)).sum())


def test_entropy():
    got = run("entropy", {"bins": 4})[:, 0]
    np.testing.assert_allclose(got, [_ref_entropy(ACTS[:, j], 4) for j in range(3)])
    assert got[1] == 0.0  # constant
    assert got[2] == pytest.approx(1.0)  # two equally likely values
    # neuron 0 with 4 bins over [-1, 3]: {-1}, {0, 0.5}, {1}, {2.5, 3} → probabilities 1/6, 2/6, 1/6, 2/6
    p = np.array([1, 2, 1, 2]) / 6
    assert got[0] == pytest.approx(-(p * np.log2(p)).sum())


def _ref_kmeans(a, k):
    values = np.unique(a)
    if len(values) <= k:
        return np.concatenate([values, np.full(k - len(values), values[-1])])
    centres = np.quantile(a, np.linspace(0, 1, k))
    assign = None
    for _ in range(100):
        new = np.array([int(np.argmin(np.abs(x - centres))) for x in a])
        if assign is not None and (new == assign).all():
            break
        assign = new
        for c in range(k):
            if (assign == c).any():
                centres[c] = a[assign == c].mean()
    return np.sort(centres)


def test_clustering():
    got = run("clustering", {"n_clusters": 2})
    for j in range(3):
        np.testing.assert_allclose(got[j], _ref_kmeans(ACTS[:, j], 2))
    # neuron 0: {-1, 0, 0.5, 1} and {2.5, 3}
    np.testing.assert_allclose(got[0], [0.125, 2.75])
    np.testing.assert_array_equal(got[1], [2.0, 2.0])  # constant: its value, repeated
    np.testing.assert_array_equal(got[2], [0.0, 1.0])


def test_clustering_pads_when_fewer_distinct_values_than_clusters():
    got = run("clustering", {"n_clusters": 4})
    assert got.shape == (3, 4)
    np.testing.assert_array_equal(got[1], [2.0] * 4)
    np.testing.assert_array_equal(got[2], [0.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(got[0], _ref_kmeans(ACTS[:, 0], 4))


def test_fourier():
    got = run("fourier", {"n_frequencies": 2})
    ref = np.abs(np.fft.rfft(ACTS, axis=0))[1:3].T / 6
    np.testing.assert_allclose(got, ref, atol=1e-12)
    np.testing.assert_allclose(got[1], 0.0, atol=1e-12)  # constant neuron
    # 6 examples have 3 non-constant frequencies; the rest are zeros.
    many = run("fourier", {"n_frequencies": 5})
    assert many.shape == (3, 5)
    np.testing.assert_allclose(many[:, :3], np.abs(np.fft.rfft(ACTS, axis=0))[1:4].T / 6, atol=1e-12)
    np.testing.assert_array_equal(many[:, 3:], 0.0)


def test_pattern_wise_order_and_values():
    order = group_order(GROUPS)
    assert order == [P1, P2, "negative"]  # PATTERN_NAMES order, then negative, whatever the file order
    got = run("pattern_wise")
    groups = np.array(GROUPS)
    ref = np.stack([ACTS[groups == g].mean(axis=0) for g in order], axis=1)
    np.testing.assert_allclose(got, ref)
    assert method_length("pattern_wise", {}, 6, 3, CTX) == 3
    with pytest.raises(ValueError, match="unknown probe groups"):
        group_order(("negative", "no_such_pattern"))


ALL_METHODS = {name: dict(params) for name, params in PROFILE_METHOD_DEFAULTS.items()}


def test_signature_layout_matches_compat():
    methods = {**ALL_METHODS, "pca": {"components": 4}}
    narrow = ACTS[:, :2]
    logit = ACTS[:, :1] * 3
    sig = signature({"4": logit, "0": ACTS, "2": narrow}, methods, GROUPS, {"num_layers": 2})
    sig = json.loads(json.dumps(sig))  # plain JSON types only
    assert sig["model_config"] == {"num_layers": 2}
    layers = sig["neuron_activations"]
    assert list(layers) == ["0", "2", "4"]
    for key, acts in {"0": ACTS, "2": narrow, "4": logit}.items():
        info = layers[key]["layer_info"]
        assert info == {"num_neurons": acts.shape[1], "num_examples": 6, "profile_methods": list(methods)}
        profiles = layers[key]["neuron_profiles"]
        assert list(profiles) == [str(j) for j in range(acts.shape[1])]
        for neuron in profiles.values():
            assert list(neuron) == list(methods)
            for name in ("mean", "std", "max", "min", "sparsity", "entropy"):
                assert isinstance(neuron[name], float)
            lengths = {"pca": 4, "svd": 2, "clustering": 2, "fourier": 1, "pattern_wise": 3}
            for name, length in lengths.items():
                assert isinstance(neuron[name], list) and len(neuron[name]) == length
    vector = signature_vector(sig, methods)
    per_neuron = 6 + 4 + 2 + 2 + 1 + 3
    assert len(vector) == per_neuron * (3 + 2 + 1)
    assert vector[0] == pytest.approx(ACTS[:, 0].mean())
    assert vector[per_neuron] == pytest.approx(ACTS[:, 1].mean())  # neuron order within a layer
    assert vector[-per_neuron] == pytest.approx(logit.mean())  # layers in network order


def test_signature_vector_uses_the_given_method_order():
    sig = signature({"0": ACTS}, {"mean": {}, "max": {}}, GROUPS, {})
    assert signature_vector(sig, ["max", "mean"])[:2] == [3.0, ACTS[:, 0].mean()]


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@settings(max_examples=100, deadline=None)
@given(
    acts=st.tuples(st.integers(1, 9), st.integers(1, 5)).flatmap(
        lambda shape: arrays(np.float64, shape, elements=finite | st.sampled_from([0.0, 1.0, -1.0]))
    ),
    components=st.integers(1, 6),
    bins=st.integers(2, 12),
    clusters=st.integers(1, 5),
    freqs=st.integers(1, 6),
)
def test_random_matrices(acts, components, bins, clusters, freqs):
    n, m = acts.shape
    groups = tuple(["negative", P1][i % 2] for i in range(n))
    methods = {
        **ALL_METHODS,
        "pca": {"components": components},
        "svd": {"components": components},
        "entropy": {"bins": bins},
        "clustering": {"n_clusters": clusters},
        "fourier": {"n_frequencies": freqs},
    }
    ctx = ProfileContext(groups)
    got = profile_layer(acts, methods, ctx)
    for name, params in methods.items():
        assert got[name].shape == (m, method_length(name, params, n, m, ctx))
        assert np.isfinite(got[name]).all()
    entropy = got["entropy"][:, 0]
    assert (entropy >= 0).all() and (entropy <= math.log2(bins) + 1e-9).all()
    np.testing.assert_allclose(entropy, [_ref_entropy(acts[:, j], bins) for j in range(m)], atol=1e-12)
    centres = got["clustering"]
    assert (np.diff(centres, axis=1) >= 0).all()
    assert (centres >= acts.min(axis=0)[:, None] - 1e-9).all()
    assert (centres <= acts.max(axis=0)[:, None] + 1e-9).all()
    for j in range(m):
        np.testing.assert_allclose(centres[j], _ref_kmeans(acts[:, j], clusters), rtol=1e-12, atol=1e-9)
    g = np.array(groups)
    ref = np.stack([acts[g == name].mean(axis=0) for name in group_order(groups)], axis=1)
    np.testing.assert_allclose(got["pattern_wise"], ref)
    np.testing.assert_allclose(
        got["fourier"][:, : n // 2], np.abs(np.fft.rfft(acts, axis=0))[1 : freqs + 1].T / n
    )
    sig = signature({"0": acts}, methods, groups, {})
    assert len(signature_vector(sig, methods)) == m * sum(got[k].shape[1] for k in methods)


# --- batched forward pass ----------------------------------------------------------------------------


def _reference_activations(spec, weights, sequences):
    model = build_model(spec, weights, dtype=torch.float64).eval()
    recorded = {}
    hooks = []
    modules = list(model.network)
    for layer, index in enumerate(spec.linear_indices):
        target = modules[index + 1] if layer < spec.num_layers else modules[index]

        def hook(_module, _inputs, output, key=str(index)):
            recorded[key] = output.detach().numpy().copy()

        hooks.append(target.register_forward_hook(hook))
    with torch.no_grad():
        model(encode_inputs(sequences, spec, dtype=torch.float64))
    for h in hooks:
        h.remove()
    return recorded


def test_layer_activations_match_single_models():
    rng = np.random.default_rng(0)
    sequences = rng.integers(0, 4, size=(10, 5))
    specs = []
    for activation in ACTIVATIONS:
        for width, layers, encoding in [
            (3, 2, "index"),
            (7, 2, "index"),
            (5, 1, "one_hot"),
            (4, 2, "one_hot"),
        ]:
            specs.append(ModelSpec(4, 5, layers, width, activation, input_encoding=encoding))
    specs.append(ModelSpec(4, 5, 2, 6, "relu", dropout_rate=0.1))  # Linear at 0, 3, 6
    generator = torch.Generator().manual_seed(1)
    weights = [init_weights(spec, generator) for spec in specs]
    got = layer_activations(specs, weights, sequences)
    assert len(got) == len(specs)
    for spec, w, acts in zip(specs, weights, got, strict=True):
        ref = _reference_activations(spec, w, sequences)
        assert list(acts) == [str(i) for i in spec.linear_indices]
        for key, value in ref.items():
            assert acts[key].dtype == np.float64
            expected_width = 1 if key == str(spec.linear_indices[-1]) else spec.neurons_per_layer
            assert acts[key].shape == (10, expected_width)
            np.testing.assert_allclose(acts[key], value, rtol=0, atol=1e-10)
