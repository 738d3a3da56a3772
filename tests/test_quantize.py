"""Quantization and precision rounding: the definitions in quantize.py's docstring, per tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from weightzoo.judge.quantize import METHODS, PRECISIONS, apply_precision_and_quantization, quantize_tensor

LEVELS = {"int8": 127, "int4": 7}

values = st.floats(-100, 100, width=32, allow_subnormal=False)
arrays = hnp.arrays(
    np.float32, hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=24), elements=values
)
tensors = arrays.map(torch.from_numpy)


@settings(max_examples=80, deadline=None)
@given(w=tensors, method=st.sampled_from(["int8", "int4"]))
def test_integer_methods_use_max_abs_over_levels(w, method):
    levels = LEVELS[method]
    out, scale = quantize_tensor(w, method)
    assert out.shape == w.shape and out.dtype == torch.float32
    peak = float(w.abs().max())
    assert scale == pytest.approx(peak / levels, rel=1e-12)
    if peak == 0:
        assert scale == 0 and not out.any()
        return
    q = torch.round(out.double() / scale)
    assert torch.allclose(out.double(), q * scale, rtol=1e-6, atol=0)  # out == q * scale, q integer
    assert q.abs().max() <= levels
    assert len(torch.unique(out)) <= 2 * levels + 1
    # q is the nearest level: the error is at most half a step.
    assert (w.double() - out.double()).abs().max() <= scale / 2 * (1 + 1e-5)
    # The largest magnitude is represented exactly at the end level.
    assert float(out.abs().max()) == pytest.approx(peak, rel=1e-6)


@settings(max_examples=80, deadline=None)
@given(w=tensors)
def test_ternary_keeps_large_entries_as_signed_scale(w):
    out, scale = quantize_tensor(w, "ternary")
    magnitude = w.double().abs()
    threshold = 0.7 * float(magnitude.mean())
    distinct = set(torch.unique(out).tolist())
    assert len(distinct) <= 3
    s = float(torch.tensor(scale, dtype=torch.float32))
    assert distinct <= {-s, 0.0, s}
    nonzero = out != 0
    if scale == 0:
        assert not nonzero.any() and float(magnitude.max()) == 0
        return
    # Entries clearly above the threshold are kept, with their sign; those clearly below become 0.
    assert nonzero[magnitude > threshold * (1 + 1e-5)].all()
    assert not nonzero[magnitude < threshold * (1 - 1e-5)].any()
    assert torch.equal(torch.sign(out[nonzero]), torch.sign(w[nonzero]))
    assert scale == pytest.approx(float(magnitude[nonzero].mean()), rel=1e-5)


@settings(max_examples=80, deadline=None)
@given(w=tensors)
def test_binary_is_plus_or_minus_the_mean_magnitude(w):
    out, scale = quantize_tensor(w, "binary")
    assert scale == pytest.approx(float(w.double().abs().mean()), rel=1e-5)
    s = float(torch.tensor(scale, dtype=torch.float32))
    assert set(torch.unique(out).tolist()) <= {-s, s}
    if scale > 0:
        assert torch.equal(out > 0, w >= 0)  # sign(0) = +1


@pytest.mark.parametrize("method", METHODS)
def test_zeros_stay_zeros(method):
    w = torch.zeros(4, 3)
    out, scale = quantize_tensor(w, method)
    assert torch.equal(out, w)
    assert scale == (1.0 if method == "none" else 0.0)


def test_binary_maps_an_exact_zero_to_plus_scale():
    out, scale = quantize_tensor(torch.tensor([0.0, -2.0, 1.0]), "binary")
    assert scale == 1.0 and out.tolist() == [1.0, -1.0, 1.0]


def test_small_examples_by_hand():
    w = torch.tensor([0.6, -1.0, 0.25, 0.0])
    out, scale = quantize_tensor(w, "int4")
    assert scale == pytest.approx(1 / 7)
    assert torch.allclose(out, torch.tensor([4, -7, 2, 0]) / 7)  # 4.2 -> 4, 1.75 -> 2
    out, scale = quantize_tensor(w, "ternary")  # mean|w| = 0.4625, threshold 0.32375: keeps 0.6, -1
    assert scale == pytest.approx(0.8)
    assert torch.allclose(out, torch.tensor([0.8, -0.8, 0.0, 0.0]))


@settings(max_examples=40, deadline=None)
@given(w=tensors)
def test_none_returns_the_input_unchanged_as_a_copy(w):
    out, scale = quantize_tensor(w, "none")
    assert scale == 1.0 and torch.equal(out, w)
    out.add_(1)
    assert not torch.equal(out, w)


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="unknown quantization"):
        quantize_tensor(torch.ones(2), "int2")


@settings(max_examples=60, deadline=None)
@given(
    ws=st.lists(tensors, min_size=1, max_size=4),
    precision=st.sampled_from(list(PRECISIONS)),
    method=st.sampled_from(METHODS),
)
def test_precision_then_quantization_applies_the_same_rule_to_every_tensor(ws, precision, method):
    weights = {f"network.{2 * i}.weight": w for i, w in enumerate(ws)}
    out, scales = apply_precision_and_quantization(weights, precision, method)
    assert out.keys() == weights.keys() == scales.keys()
    dtype = PRECISIONS[precision]
    for name, w in weights.items():
        stored = out[name]
        assert stored.dtype == torch.float32 and stored.shape == w.shape
        # Every stored value is representable in the precision.
        assert torch.equal(stored.to(dtype).to(torch.float32), stored)
        want, scale = quantize_tensor(w.to(dtype).to(torch.float32), method)
        assert torch.equal(stored, want.to(dtype).to(torch.float32))
        assert scales[name] == scale
        if method in LEVELS:
            assert len(torch.unique(stored)) <= 2 * LEVELS[method] + 1
        elif method == "ternary":
            assert len(torch.unique(stored)) <= 3
        elif method == "binary":
            assert len(torch.unique(stored)) <= 2
        elif precision == "float32":
            assert torch.equal(stored, w)
    assert all(not w.data_ptr() == out[n].data_ptr() for n, w in weights.items())
